"""Partner Center's MFA rule for App+User calls (401, code 900421) and `ValidateMfa` / `isMfaCompliant`.

The tests that read `isMfaCompliant` run twice (fixture `mfa_answer`): with the answer in the JSON body (the
default) and in a response header (`pc_mfa_compliant_in="header"`)."""

from __future__ import annotations

import requests

from tests.simulator.helpers import PC_DEFAULT, admin, redeem, token_request, user_named


def _pc_token(sim, login: str = "admin") -> str:
    refresh = sim.control.issue_refresh_token(user_named(sim, login).upn)
    response = redeem(sim, refresh)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def _get(sim, token: str | None, path: str = "/v1/customers?size=1", **headers: str) -> requests.Response:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.get(
        f"{sim.partner_center_url}{path}", headers={"Accept": "application/json", **headers}, timeout=10
    )


def test_an_app_user_call_without_mfa_gets_401_with_code_900421(sim, mfa_answer):
    response = _get(sim, _pc_token(sim, "nomfa"))
    assert response.status_code == 401
    body = response.json()
    assert body == {
        "code": "900421",
        "description": "Authentication failed. MFA required.",
        "data": [],
        "source": "PartnerFD",
    }
    assert mfa_answer(response) is None  # not asked for
    asked = _get(sim, _pc_token(sim, "nomfa"), "/v1/profiles/organization", ValidateMfa="true")
    assert asked.status_code == 401 and asked.json()["code"] == "900421"
    assert mfa_answer(asked) == "false"
    [entry] = sim.control.log(service="partner_center", path="profiles", status=401)
    assert entry["detail"]["error_code"] == "900421"
    assert entry["detail"]["mfa_compliant"] is False
    assert entry["request_headers"]["ValidateMfa"] == "true"


def test_is_mfa_compliant_is_a_field_of_the_json_answer_by_default(sim):
    assert sim.control.settings()["pc_mfa_compliant_in"] == "body"
    response = _get(sim, _pc_token(sim), ValidateMfa="true")
    assert response.json()["isMfaCompliant"] is True and "isMfaCompliant" not in response.headers
    assert response.json()["items"]  # the answer itself is unchanged
    sim.control.set_settings(pc_mfa_compliant_in="header")
    response = _get(sim, _pc_token(sim), ValidateMfa="true")
    assert "isMfaCompliant" not in response.json() and response.headers["isMfaCompliant"] == "true"
    assert sim.control.log(service="partner_center")[-1]["response_headers"]["isMfaCompliant"] == "true"


def test_validate_mfa_reports_compliance_on_every_answer(sim, mfa_answer):
    token = _pc_token(sim)
    for name, value in (("ValidateMfa", "true"), ("validatemfa", "TRUE"), ("VALIDATEMFA", "True")):
        response = _get(sim, token, **{name: value})
        assert response.status_code == 200, response.text
        assert mfa_answer(response) == "true"
    assert mfa_answer(_get(sim, token)) is None
    assert mfa_answer(_get(sim, token, ValidateMfa="false")) is None
    missing = _get(sim, token, "/v1/customers/00000000-0000-0000-0000-000000000000", ValidateMfa="true")
    assert missing.status_code == 404 and mfa_answer(missing) == "true"
    # an answer without a JSON object (the ApplicationConsent's DELETE) says it in the header
    customer = sim.world.partners[0].customers[0].tenant_id
    sim.control.add_consent(customer)
    deleted = requests.delete(
        f"{sim.partner_center_url}/v1/customers/{customer}/applicationconsents/{sim.env['CPV_CLIENT_ID']}",
        headers={"Authorization": f"Bearer {token}", "ValidateMfa": "true"},
        timeout=10,
    )
    assert deleted.status_code == 200 and not deleted.content
    assert deleted.headers["isMfaCompliant"] == "true"


def test_before_enforcement_a_token_without_mfa_is_served(sim, mfa_answer):
    sim.control.set_settings(pc_require_mfa=False)
    token = _pc_token(sim, "nomfa")
    response = _get(sim, token, ValidateMfa="true")
    assert response.status_code == 200, response.text
    assert mfa_answer(response) == "false"
    assert mfa_answer(_get(sim, _pc_token(sim), ValidateMfa="true")) == "true"


def test_is_mfa_compliant_also_on_403_and_429(sim, mfa_answer):
    refused = _get(sim, _pc_token(sim, "globaladmin"), ValidateMfa="true")  # MFA but no Admin Agent
    assert refused.status_code == 403 and mfa_answer(refused) == "true"
    sim.control.set_pc_rate_limit(0.1, burst=1)
    token = _pc_token(sim)
    assert _get(sim, token, ValidateMfa="true").status_code == 200
    throttled = _get(sim, token, ValidateMfa="true")
    assert throttled.status_code == 429
    assert mfa_answer(throttled) == "true" and throttled.headers["Retry-After"]


def test_no_is_mfa_compliant_when_the_token_could_not_be_read(sim, mfa_answer):
    assert mfa_answer(_get(sim, None, ValidateMfa="true")) is None
    token = _pc_token(sim)
    forged = token[:-8] + ("A" * 8 if not token.endswith("A" * 8) else "B" * 8)
    response = _get(sim, forged, ValidateMfa="true")
    assert response.status_code == 401 and mfa_answer(response) is None


def test_the_mfa_check_comes_before_the_admin_agent_check(sim, mfa_answer):
    user = user_named(sim, "user")  # neither Global Administrator nor Admin Agent
    sim.control.update_user(user.oid, mfa_registered=False)
    response = _get(sim, _pc_token(sim, "user"), ValidateMfa="true")
    assert response.status_code == 401 and response.json()["code"] == "900421"
    sim.control.update_user(user.oid, mfa_registered=True)
    response = _get(sim, _pc_token(sim, "user"), ValidateMfa="true")
    assert response.status_code == 403 and mfa_answer(response) == "true"


def test_an_app_only_token_is_not_app_user(sim, mfa_answer):
    env = sim.env
    response = token_request(
        sim,
        env["CPV_VENDOR_TENANT_ID"],
        grant_type="client_credentials",
        client_id=env["CPV_CLIENT_ID"],
        client_secret=env["CPV_CLIENT_SECRET"],
        scope=PC_DEFAULT,
    )
    refused = _get(sim, response.json()["access_token"], ValidateMfa="true")
    assert refused.status_code == 403
    assert mfa_answer(refused) == "false"


def test_error_codes_are_strings(sim):
    no_token = _get(sim, None)
    assert no_token.status_code == 401 and no_token.json()["code"] == "401"
    agentless = _get(sim, _pc_token(sim, "globaladmin"))
    assert agentless.status_code == 403 and isinstance(agentless.json()["code"], str)
    assert admin(sim).admin_agent

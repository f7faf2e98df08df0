"""Entra ID behaviours that FIDELITY.md lists and the flow tests do not already pin."""

from __future__ import annotations

import hashlib
import time
from urllib.parse import parse_qs, urlencode, urlparse

import jwt
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests.simulator.helpers import (
    PC_SCOPE,
    REDIRECT_URI,
    admin,
    assert_entra_error,
    redeem,
    sign_in,
    token_request,
)


def _authorize_url(sim, **overrides: str | None) -> str:
    params: dict[str, str | None] = {
        "client_id": sim.env["CPV_CLIENT_ID"],
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "scope": f"{PC_SCOPE} openid offline_access",
        "state": "s-9",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
        "response_mode": "query",
    }
    params.update(overrides)
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{sim.authority_host}/organizations/oauth2/v2.0/authorize?{query}"


def test_instance_discovery_names_this_host(sim):
    body = requests.get(
        f"{sim.authority_host}/common/discovery/instance",
        params={
            "api-version": "1.1",
            "authorization_endpoint": f"{sim.authority_host}/organizations/oauth2/v2.0/authorize",
        },
        timeout=10,
    ).json()
    host = sim.authority_host.split("://", 1)[1]
    assert body["tenant_discovery_endpoint"] == (
        f"{sim.authority_host}/organizations/v2.0/.well-known/openid-configuration"
    )
    assert body["metadata"][0]["aliases"] == [host]


def test_an_unknown_client_at_authorize_gets_an_error_page(sim):
    response = requests.get(
        _authorize_url(sim, client_id="00000000-0000-0000-0000-000000000009"), allow_redirects=False, timeout=10
    )
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "AADSTS700016" in response.text


def test_only_the_code_response_type(sim):
    response = requests.get(_authorize_url(sim, response_type="token"), allow_redirects=False, timeout=10)
    assert response.status_code == 302
    params = parse_qs(urlparse(response.headers["Location"]).query)
    assert params["error"] == ["invalid_request"] and params["state"] == ["s-9"]


def test_the_fragment_response_mode(sim):
    result = sign_in(_authorize_url(sim, response_mode="fragment"), user=admin(sim).upn)
    location = result.response.headers["Location"]
    assert location.startswith(f"{REDIRECT_URI}#")
    assert result.params["code"].startswith("0.SIMCANARY-code.") and result.params["state"] == "s-9"


def test_a_scope_may_name_the_simulators_own_url_for_a_service(sim):
    refresh = sim.control.issue_refresh_token(admin(sim).upn)
    response = redeem(sim, refresh, scope=f"{sim.partner_center_url}/.default")
    assert response.status_code == 200, response.text
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert claims["aud"] == "https://api.partnercenter.microsoft.com"


def _client_assertion(sim, **claims) -> str:
    pem = open(sim.env["CPV_CLIENT_CERTIFICATE"]).read()
    cert = x509.load_pem_x509_certificate(pem[pem.index("-----BEGIN CERTIFICATE-----") :].encode())
    x5t = jwt.utils.base64url_encode(cert.fingerprint(hashes.SHA1())).decode()  # noqa: S303 - x5t is SHA-1
    now = int(time.time())
    body = {
        "iss": sim.env["CPV_CLIENT_ID"],
        "sub": sim.env["CPV_CLIENT_ID"],
        "aud": f"{sim.authority_host}/organizations/oauth2/v2.0/token",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": str(now),
    }
    body.update(claims)
    return jwt.encode(body, pem, algorithm="RS256", headers={"x5t": x5t})


def _refresh_form(sim, refresh: str, **extra: str) -> dict[str, str]:
    form = {
        "grant_type": "refresh_token",
        "client_id": sim.env["CPV_CLIENT_ID"],
        "client_secret": sim.env["CPV_CLIENT_SECRET"],
        "refresh_token": refresh,
        "scope": "https://api.partnercenter.microsoft.com/.default",
    }
    form.update(extra)
    return {k: v for k, v in form.items() if v}


def test_token_endpoint_request_errors(sim):
    refresh = sim.control.issue_refresh_token(admin(sim).upn)
    missing_grant = token_request(sim, "organizations", **_refresh_form(sim, refresh, grant_type=""))
    assert_entra_error(missing_grant, 900144, "invalid_request")
    password = token_request(sim, "organizations", **_refresh_form(sim, refresh, grant_type="password"))
    assert_entra_error(password, 70003, "unsupported_grant_type")
    no_credential = token_request(sim, "organizations", **_refresh_form(sim, refresh, client_secret=""))
    assert_entra_error(no_credential, 7000218, "invalid_client", status=401)
    unknown_resource = token_request(
        sim, "organizations", **_refresh_form(sim, refresh, scope="https://unknown.example/.default")
    )
    assert_entra_error(unknown_resource, 70011, "invalid_scope")


def test_a_disabled_user_cannot_redeem(sim):
    user = admin(sim)
    refresh = sim.control.issue_refresh_token(user.upn)
    sim.control.update_user(user.oid, enabled=False)
    assert_entra_error(redeem(sim, refresh), 50057, "invalid_grant")


def test_a_code_is_bound_to_its_tenant(sim):
    verifier = "v" * 50
    challenge = jwt.utils.base64url_encode(hashlib.sha256(verifier.encode()).digest()).decode()
    code = sign_in(_authorize_url(sim, code_challenge=challenge), user=admin(sim).upn).params["code"]
    other_tenant = sim.world.partners[1].tenant_id
    response = token_request(
        sim,
        other_tenant,
        grant_type="authorization_code",
        client_id=sim.env["CPV_CLIENT_ID"],
        client_secret=sim.env["CPV_CLIENT_SECRET"],
        code=code,
        code_verifier=verifier,
        redirect_uri=REDIRECT_URI,
        scope=f"{PC_SCOPE} openid offline_access",
    )
    assert_entra_error(response, 700005, "invalid_grant")


def test_client_assertions_are_checked(sim):
    refresh = sim.control.issue_refresh_token(admin(sim).upn)

    def with_assertion(assertion: str):
        form = _refresh_form(sim, refresh, client_secret="")
        form["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        form["client_assertion"] = assertion
        return token_request(sim, "organizations", **form)

    good = with_assertion(_client_assertion(sim))
    assert good.status_code == 200, good.text
    assert jwt.decode(good.json()["access_token"], options={"verify_signature": False})["appidacr"] == "2"
    wrong_issuer = with_assertion(_client_assertion(sim, iss="someone-else", sub="someone-else"))
    assert_entra_error(wrong_issuer, 700021, "invalid_client", status=401)
    expired = with_assertion(_client_assertion(sim, iat=1, nbf=1, exp=2))
    assert_entra_error(expired, 700024, "invalid_client", status=401)
    wrong_audience = with_assertion(_client_assertion(sim, aud="https://elsewhere.example/token"))
    assert_entra_error(wrong_audience, 700027, "invalid_client", status=401)


def test_the_logout_endpoint_shows_a_page(sim):
    config = requests.get(
        f"{sim.authority_host}/organizations/v2.0/.well-known/openid-configuration", timeout=10
    ).json()
    page = requests.get(config["end_session_endpoint"], timeout=10)
    assert page.status_code == 200 and "signed out" in page.text

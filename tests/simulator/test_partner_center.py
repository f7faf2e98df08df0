from __future__ import annotations

from urllib.parse import urljoin

import pytest
import requests

from tests.simulator.helpers import GRAPH_DEFAULT, PC_DEFAULT, admin, assert_entra_error, redeem, user_named

GRAPH_APP = "00000003-0000-0000-c000-000000000000"


def _pc_token(sim, user=None, scope: str = PC_DEFAULT) -> str:
    refresh = sim.control.issue_refresh_token((user or admin(sim)).upn)
    response = redeem(sim, refresh, scope=scope)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def _session(token: str) -> requests.Session:
    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json"})
    return session


def _consent_body(sim) -> dict:
    return {
        "applicationId": sim.env["CPV_CLIENT_ID"],
        "displayName": "Contoso Control Panel",
        "applicationGrants": [
            {
                "enterpriseApplicationId": GRAPH_APP,
                "scope": "Domain.ReadWrite.All,User.ReadWrite.All,Directory.Read.All",
            }
        ],
    }


def _all_customers(sim, session: requests.Session, size: int) -> tuple[list[dict], int]:
    url = f"{sim.partner_center_url}/v1/customers?size={size}"
    headers: dict[str, str] = {}
    items, pages = [], 0
    while True:
        response = session.get(url, headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        body = response.json()
        pages += 1
        items += body["items"]
        assert body["attributes"]["objectType"] == "Collection"
        nxt = body["links"].get("next")
        if not nxt:
            return items, pages
        assert nxt["method"] == "GET"
        url = urljoin(sim.partner_center_url + "/", nxt["uri"])
        headers = {h["key"]: h["value"] for h in nxt["headers"]}
        assert "MS-ContinuationToken" in headers


def test_paging_over_2500_customers_is_complete(sim):
    partner = sim.world.partners[0]
    sim.control.add_customers(partner.tenant_id, count=2500 - len(partner.customers))
    items, pages = _all_customers(sim, _session(_pc_token(sim)), 300)
    ids = [item["id"] for item in items]
    assert len(ids) == 2500 == len(set(ids))
    assert pages == 9
    first = items[0]
    assert first["companyProfile"]["tenantId"] == first["id"]
    assert {"domain", "companyName"} <= set(first["companyProfile"])
    assert first["relationshipToPartner"]


def test_the_relative_next_link_style(sim):
    sim.control.set_settings(pc_next_link="relative")
    session = _session(_pc_token(sim))
    body = session.get(f"{sim.partner_center_url}/v1/customers?size=2", timeout=10).json()
    assert body["links"]["next"]["uri"] == "/customers?size=2"
    items, _ = _all_customers(sim, session, 2)
    assert len(items) == len(sim.world.partners[0].customers)


def test_customers_added_and_removed_through_the_control_surface(sim):
    partner = sim.world.partners[0]
    removed = partner.customers[0].tenant_id
    added = sim.control.add_customers(partner.tenant_id, names=["Brand New Customer Ltd"])
    sim.control.remove_customer(partner.tenant_id, removed)
    items, _ = _all_customers(sim, _session(_pc_token(sim)), 100)
    names = [i["companyProfile"]["companyName"] for i in items]
    assert "Brand New Customer Ltd" in names
    assert added[0]["tenant_id"] in [i["id"] for i in items]
    assert removed not in [i["id"] for i in items]


def test_application_consent_create_exists_delete(sim):
    customer = sim.world.partners[0].customers[0].tenant_id
    session = _session(_pc_token(sim))
    url = f"{sim.partner_center_url}/v1/customers/{customer}/applicationconsents"
    created = session.post(url, json=_consent_body(sim), timeout=10)
    assert created.status_code == 201, created.text
    consents = sim.control.consents(customer)
    assert consents[sim.env["CPV_CLIENT_ID"]]["grants"][0]["enterpriseApplicationId"] == GRAPH_APP

    again = session.post(url, json=_consent_body(sim), timeout=10)
    assert again.status_code == 409
    assert set(again.json()) == {"code", "description", "data", "source"}

    sim.control.set_settings(pc_consent_exists="400")
    again = session.post(url, json=_consent_body(sim), timeout=10)
    assert again.status_code == 400
    assert "Permission entry already exists" in again.json()["description"]

    # the customer's tenant now issues tokens to the CPV app
    refresh = sim.control.issue_refresh_token(admin(sim).upn)
    assert redeem(sim, refresh, customer, GRAPH_DEFAULT).status_code == 200

    # the Control Panel Vendor API page documents 200 (and 201) for the DELETE, and 404
    deleted = session.delete(f"{url}/{sim.env['CPV_CLIENT_ID']}", timeout=10)
    assert deleted.status_code == 200
    gone = session.delete(f"{url}/{sim.env['CPV_CLIENT_ID']}", timeout=10)
    assert gone.status_code == 404 and set(gone.json()) >= {"code", "description", "data", "source"}
    assert sim.control.consents(customer) == {}
    assert_entra_error(redeem(sim, refresh, customer, GRAPH_DEFAULT), 90099, "invalid_grant")


def test_application_consent_validation_and_unknown_customer(sim):
    session = _session(_pc_token(sim))
    customer = sim.world.partners[0].customers[0].tenant_id
    bad = session.post(
        f"{sim.partner_center_url}/v1/customers/{customer}/applicationconsents",
        json={"applicationId": "x"},
        timeout=10,
    )
    assert bad.status_code == 400
    other = sim.world.partners[1].customers[0].tenant_id
    missing = session.post(
        f"{sim.partner_center_url}/v1/customers/{other}/applicationconsents",
        json=_consent_body(sim),
        timeout=10,
    )
    assert missing.status_code == 404


def test_the_verification_calls_prove_the_admin_agent_role(sim):
    session = _session(_pc_token(sim))
    profile = session.get(f"{sim.partner_center_url}/v1/profiles/organization", timeout=10)
    assert profile.status_code == 200
    assert profile.json()["id"] == sim.world.partners[0].tenant_id
    assert session.get(f"{sim.partner_center_url}/v1/customers?size=1", timeout=10).status_code == 200

    not_agent = _session(_pc_token(sim, user_named(sim, "globaladmin")))
    refused = not_agent.get(f"{sim.partner_center_url}/v1/profiles/organization", timeout=10)
    assert refused.status_code == 403
    assert set(refused.json()) == {"code", "description", "data", "source"}


def test_tokens_are_checked(sim):
    url = f"{sim.partner_center_url}/v1/customers?size=1"
    no_token = requests.get(url, timeout=10)
    assert no_token.status_code == 401
    assert set(no_token.json()) == {"code", "description", "data", "source"}
    graph = _session(_pc_token(sim, scope=GRAPH_DEFAULT)).get(url, timeout=10)
    assert graph.status_code == 401
    forged = _pc_token(sim)
    forged = forged[:-8] + ("A" * 8 if not forged.endswith("A" * 8) else "B" * 8)
    assert _session(forged).get(url, timeout=10).status_code == 401
    no_mfa = _session(_pc_token(sim, user_named(sim, "nomfa"))).get(url, timeout=10)
    assert no_mfa.status_code == 401
    assert "mfa" in no_mfa.json()["description"].lower()
    token = _pc_token(sim)
    sim.control.advance_clock(3601)
    assert _session(token).get(url, timeout=10).status_code == 401


def test_the_throttle_per_application_answers_429_with_retry_after(sim):
    # a bucket of 3 refilled at one request per 10 s: deterministic however slow the machine is
    sim.control.set_pc_rate_limit(0.1, burst=3)
    session = _session(_pc_token(sim))
    statuses = [session.get(f"{sim.partner_center_url}/v1/customers?size=1", timeout=10).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    throttled = sim.control.log(service="partner_center", status=429)
    assert len(throttled) == 2
    assert 1 <= int(throttled[0]["response_headers"]["Retry-After"]) <= 10
    assert throttled[0]["detail"]["app_id"] == sim.env["CPV_CLIENT_ID"]
    # another application has its own bucket
    sandbox = sim.control.issue_refresh_token(admin(sim).upn, client_id=sim.env["CPV_SANDBOX_CLIENT_ID"])
    response = redeem(
        sim, sandbox, client_id=sim.env["CPV_SANDBOX_CLIENT_ID"], client_secret=sim.env["CPV_SANDBOX_CLIENT_SECRET"]
    )
    assert response.status_code == 200, response.text
    other = _session(response.json()["access_token"])
    assert other.get(f"{sim.partner_center_url}/v1/customers?size=1", timeout=10).status_code == 200
    sim.control.set_pc_rate_limit(None)
    assert session.get(f"{sim.partner_center_url}/v1/customers?size=1", timeout=10).status_code == 200


def test_request_ids_are_logged_and_echoed(sim):
    session = _session(_pc_token(sim))
    response = session.get(
        f"{sim.partner_center_url}/v1/customers?size=1",
        headers={"MS-RequestId": "req-1", "MS-CorrelationId": "corr-1"},
        timeout=10,
    )
    assert response.headers["MS-RequestId"] == "req-1"
    [entry] = sim.control.log(service="partner_center")
    assert entry["request_headers"]["MS-RequestId"] == "req-1"
    assert entry["request_headers"]["MS-CorrelationId"] == "corr-1"
    assert entry["detail"]["app_id"] == sim.env["CPV_CLIENT_ID"]


@pytest.mark.parametrize("status", [500, 503])
def test_faults_on_partner_center(sim, status):
    session = _session(_pc_token(sim))
    sim.control.inject_fault(
        "partner_center",
        status=status,
        method="POST",
        path="applicationconsents$",
        body={"code": status, "description": "boom"},
    )
    customer = sim.world.partners[0].customers[0].tenant_id
    url = f"{sim.partner_center_url}/v1/customers/{customer}/applicationconsents"
    assert session.post(url, json=_consent_body(sim), timeout=10).status_code == status
    assert session.post(url, json=_consent_body(sim), timeout=10).status_code == 201


def test_one_customer_by_id(sim):
    session = _session(_pc_token(sim))
    customer = sim.world.partners[0].customers[0]
    found = session.get(f"{sim.partner_center_url}/v1/customers/{customer.tenant_id}", timeout=10)
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["id"] == body["companyProfile"]["tenantId"] == customer.tenant_id
    assert body["companyProfile"]["companyName"] == customer.company_name
    other = sim.world.partners[1].customers[0].tenant_id
    missing = session.get(f"{sim.partner_center_url}/v1/customers/{other}", timeout=10)
    assert missing.status_code == 404
    assert set(missing.json()) == {"code", "description", "data", "source"}

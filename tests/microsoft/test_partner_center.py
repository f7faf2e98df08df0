"""microsoft/partner_center.py against the simulator's Partner Center, with tokens from the real msal flow."""

from __future__ import annotations

from typing import Any

import pytest

from microsoft import identity, partner_center
from tests.simulated import partner_user, sim_app, sim_cloud

PC_SCOPE = "https://api.partnercenter.microsoft.com/user_impersonation"
GRAPH_APP = "00000003-0000-0000-c000-000000000000"


def client_for(sim, user: Any, *, partner: int = 0) -> partner_center.PartnerCenterClient:  # type: ignore[no-untyped-def]
    refresh_token = sim.control.issue_refresh_token(user.upn, client_id=sim.env["CPV_CLIENT_ID"])
    token = identity.refresh_token_redeem(
        cloud=sim_cloud(sim),
        app=sim_app(sim),
        tenant=str(sim.world.partners[partner].tenant_id),
        refresh_token=refresh_token,
        scopes=[PC_SCOPE],
    )
    return partner_center.PartnerCenterClient(base_url=sim.partner_center_url, access_token=token.access_token)


@pytest.fixture
def admin_client(sim) -> partner_center.PartnerCenterClient:  # type: ignore[no-untyped-def]
    return client_for(sim, partner_user(sim, global_admin=True, admin_agent=True, mfa_registered=True))


def consent_body(sim) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return {
        "applicationId": sim.env["CPV_CLIENT_ID"],
        "displayName": "Control Panel Vendor",
        "applicationGrants": [{"enterpriseApplicationId": GRAPH_APP, "scope": "Directory.Read.All"}],
    }


def test_the_organization_profile_proves_an_admin_agent(sim, admin_client) -> None:  # type: ignore[no-untyped-def]
    profile = admin_client.organization_profile()

    assert profile["tenantId"] == str(sim.world.partners[0].tenant_id)
    entry = sim.control.log(service="partner_center")[-1]
    assert entry["request_headers"]["MS-CorrelationId"] == admin_client.correlation_id


def test_a_user_without_admin_agent_is_forbidden(sim) -> None:  # type: ignore[no-untyped-def]
    client = client_for(sim, partner_user(sim, global_admin=True, admin_agent=False, mfa_registered=True))

    with pytest.raises(partner_center.Forbidden, match="Admin Agent") as caught:
        client.organization_profile()

    assert caught.value.status == 403 and caught.value.permanent


def test_a_token_without_mfa_is_refused_as_mfa_required_with_the_verdict(sim) -> None:  # type: ignore[no-untyped-def]
    client = client_for(sim, partner_user(sim, global_admin=True, admin_agent=True, mfa_registered=False))

    with pytest.raises(partner_center.MfaRequired) as refused:
        client.organization_profile()

    assert (refused.value.status, refused.value.code) == (401, "900421")
    assert isinstance(refused.value, partner_center.Unauthorized)
    assert client.mfa_compliant is False
    [call] = sim.control.log(service="partner_center")
    assert call["request_headers"]["ValidateMfa"] == "true"


def test_a_token_with_mfa_is_reported_compliant(sim, admin_client) -> None:  # type: ignore[no-untyped-def]
    admin_client.organization_profile()

    assert admin_client.mfa_compliant is True


def test_a_continuation_header_cannot_replace_the_authorization(sim, admin_client) -> None:  # type: ignore[no-untyped-def]
    # links.next headers are merged in first: the client's own bearer token and MFA request always win.
    response = admin_client.request("GET", "/profiles/organization", headers={"Authorization": "Bearer forged"})

    assert response.status_code == 200


def test_a_next_link_passes_on_its_continuation_token_and_nothing_else() -> None:
    link = {
        "uri": "/v1/customers?size=300",
        "headers": [
            {"key": "authorization", "value": "Bearer forged"},
            {"key": "MS-CorrelationId", "value": "someone-else"},
            {"key": "ValidateMfa", "value": "false"},
            {"key": "ms-continuationtoken", "value": "page-2"},
        ],
    }

    assert partner_center.continuation_headers(link) == {"MS-ContinuationToken": "page-2"}
    assert partner_center.continuation_headers({"uri": "/v1/customers"}) == {}
    assert (
        partner_center.continuation_headers({"headers": [{"key": "MS-ContinuationToken", "value": "a\r\nX: y"}]}) == {}
    )


def test_every_customer_comes_back_across_pages(sim, admin_client) -> None:  # type: ignore[no-untyped-def]
    tenant = str(sim.world.partners[0].tenant_id)
    sim.control.add_customers(tenant, 2500 - len(sim.world.partners[0].customers))

    customers = list(admin_client.customers(page_size=300))

    assert len(customers) == 2500
    assert len({c.tenant_id for c in customers}) == 2500
    pages = [e for e in sim.control.log(service="partner_center") if "/customers" in e["path"]]
    assert len(pages) == 9
    assert all(e["request_headers"].get("MS-ContinuationToken") for e in pages[1:])


def test_application_consent_is_created_once_and_an_existing_one_is_success(sim, admin_client) -> None:  # type: ignore[no-untyped-def]
    customer = str(sim.world.partners[0].customers[0].tenant_id)

    created = admin_client.application_consent_create(customer_tenant_id=customer, body=consent_body(sim))
    again = admin_client.application_consent_create(customer_tenant_id=customer, body=consent_body(sim))

    assert (created, again) == (True, False)
    consents = sim.control.consents(customer)
    assert list(consents) == [sim.env["CPV_CLIENT_ID"]]


def test_an_existing_consent_reported_as_an_error_text_is_success_too(sim, admin_client) -> None:  # type: ignore[no-untyped-def]
    sim.control.set_settings(pc_consent_exists="400")
    customer = str(sim.world.partners[0].customers[1].tenant_id)
    admin_client.application_consent_create(customer_tenant_id=customer, body=consent_body(sim))

    assert admin_client.application_consent_create(customer_tenant_id=customer, body=consent_body(sim)) is False


def test_a_consent_is_deleted_and_a_missing_one_is_reported(sim, admin_client) -> None:  # type: ignore[no-untyped-def]
    customer = str(sim.world.partners[0].customers[2].tenant_id)
    admin_client.application_consent_create(customer_tenant_id=customer, body=consent_body(sim))
    app_id = sim.env["CPV_CLIENT_ID"]

    assert admin_client.application_consent_delete(customer_tenant_id=customer, application_id=app_id) is True
    assert admin_client.application_consent_delete(customer_tenant_id=customer, application_id=app_id) is False


def test_a_throttled_call_says_how_long_to_wait(sim, admin_client) -> None:  # type: ignore[no-untyped-def]
    sim.control.inject_fault(
        "partner_center", status=429, path=r".*/profiles/organization", headers={"Retry-After": "7"}
    )

    with pytest.raises(partner_center.Throttled) as caught:
        admin_client.organization_profile()

    assert caught.value.retry_after == 7 and not caught.value.permanent


def test_a_server_error_is_transient_and_the_request_id_is_kept_for_the_retry(sim, admin_client) -> None:  # type: ignore[no-untyped-def]
    sim.control.inject_fault("partner_center", status=500, path=r".*/applicationconsents")
    customer = str(sim.world.partners[0].customers[3].tenant_id)

    with pytest.raises(partner_center.Transient) as caught:
        admin_client.application_consent_create(customer_tenant_id=customer, body=consent_body(sim), request_id="r-1")
    admin_client.application_consent_create(customer_tenant_id=customer, body=consent_body(sim), request_id="r-1")

    posts = [e for e in sim.control.log(service="partner_center") if e["method"] == "POST"]
    assert caught.value.request_id == "r-1"
    assert [e["request_headers"]["MS-RequestId"] for e in posts] == ["r-1", "r-1"]


def test_the_token_never_reaches_a_repr_or_an_error(sim, admin_client) -> None:  # type: ignore[no-untyped-def]
    sim.control.inject_fault("partner_center", status=400, path=r".*/profiles/organization")

    with pytest.raises(partner_center.PartnerCenterError) as caught:
        admin_client.organization_profile()

    assert sim.control.find_leaks(repr(admin_client) + str(caught.value)) == []

"""Proof in each customer tenant: Partner Center's ApplicationConsent makes the vendor app's service principal and
its oauth2PermissionGrants there, Graph reads them back as Graph documents them, and a partner user's token for
that tenant (msal, the partner's refresh token, the customer's authority) carries the grant's scopes."""

from __future__ import annotations

import base64
import json
import uuid

import msal
import pytest
import requests

from simulator.control_client import ControlError
from simulator.directory import grant_id
from simulator.world import CONSENT_SHOWCASE, World
from tests.simulator.helpers import GRAPH_DEFAULT, PC_DEFAULT, admin, assert_entra_error, cpv_app, redeem

GRAPH_APP = "00000003-0000-0000-c000-000000000000"
EXCHANGE_APP = "00000002-0000-0ff1-ce00-000000000000"
SHAREPOINT_APP = "00000003-0000-0ff1-ce00-000000000000"
SCOPES = "Domain.ReadWrite.All,User.ReadWrite.All,Directory.Read.All"


def _customer(sim, index: int = 0) -> str:
    return str(sim.world.partners[0].customers[index].tenant_id)


def _pc_consent(sim, customer: str, grants: list[dict[str, str]] | None = None) -> requests.Response:
    """The partner's admin calls Partner Center's ApplicationConsent for the CPV app."""
    refresh = sim.control.issue_refresh_token(admin(sim).upn)
    token = redeem(sim, refresh, scope=PC_DEFAULT).json()["access_token"]
    return requests.post(
        f"{sim.partner_center_url}/v1/customers/{customer}/applicationconsents",
        json={
            "applicationId": sim.env["CPV_CLIENT_ID"],
            "displayName": "Contoso Control Panel",
            "applicationGrants": grants or [{"enterpriseApplicationId": GRAPH_APP, "scope": SCOPES}],
        },
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def _pc_delete(sim, customer: str) -> requests.Response:
    refresh = sim.control.issue_refresh_token(admin(sim).upn)
    token = redeem(sim, refresh, scope=PC_DEFAULT).json()["access_token"]
    return requests.delete(
        f"{sim.partner_center_url}/v1/customers/{customer}/applicationconsents/{sim.env['CPV_CLIENT_ID']}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def _customer_token(sim, customer: str, scopes: list[str] | None = None) -> dict:
    """msal, the customer tenant as authority, redeeming the partner admin's refresh token."""
    refresh = sim.control.issue_refresh_token(admin(sim).upn)
    return cpv_app(sim, customer).acquire_token_by_refresh_token(refresh, scopes or [GRAPH_DEFAULT])


def _claims(token: str) -> dict:
    return json.loads(msal.oauth2cli.oidc.decode_part(token.split(".")[1]))


def _graph(sim, path: str, token: str) -> requests.Response:
    url = path if path.startswith("https://") else f"{sim.graph_url}{path}"
    return requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def _consented_token(sim, customer: str) -> str:
    assert _pc_consent(sim, customer).status_code == 201
    result = _customer_token(sim, customer)
    assert "access_token" in result, result
    return str(result["access_token"])


# ----- ApplicationConsent -> service principal and grants -----
def test_application_consent_creates_the_service_principal_and_one_grant_per_resource(sim):
    customer = _customer(sim)
    grants = [
        {"enterpriseApplicationId": GRAPH_APP, "scope": SCOPES},
        {"enterpriseApplicationId": EXCHANGE_APP, "scope": "Exchange.Manage"},
    ]
    assert _pc_consent(sim, customer, grants).status_code == 201
    directory = sim.control.directory(customer)
    by_app = {sp["appId"]: sp for sp in directory["service_principals"]}
    vendor = by_app[sim.env["CPV_CLIENT_ID"]]
    assert vendor["appOwnerOrganizationId"] == sim.world.vendor.tenant_id
    assert vendor["displayName"] == sim.world.cpv_app.display_name
    mine = sorted(directory["oauth2_permission_grants"], key=lambda g: g["scope"])
    assert [(g["resourceId"], g["scope"]) for g in mine] == [
        (by_app[GRAPH_APP]["id"], "Domain.ReadWrite.All User.ReadWrite.All Directory.Read.All"),
        (by_app[EXCHANGE_APP]["id"], "Exchange.Manage"),
    ]
    for grant in mine:
        assert grant["clientId"] == vendor["id"]
        assert grant["consentType"] == "AllPrincipals" and grant["principalId"] is None
        assert grant["id"] == grant_id(vendor["id"], grant["resourceId"])

    # DELETE removes the service principal and its grants; the app is no longer authorized there
    assert _pc_delete(sim, customer).status_code == 200
    after = sim.control.directory(customer)
    assert sim.env["CPV_CLIENT_ID"] not in [sp["appId"] for sp in after["service_principals"]]
    assert after["oauth2_permission_grants"] == []
    assert _pc_delete(sim, customer).status_code == 404
    assert_entra_error(
        redeem(sim, sim.control.issue_refresh_token(admin(sim).upn), customer, GRAPH_DEFAULT), 90099, "invalid_grant"
    )


def test_the_grant_id_follows_graphs_example():
    # oauth2permissiongrant-list.md: clientId 263a5b01-03e5-408e-8557-bab681df104c, resourceId
    # 1804a6f8-e623-4520-8f40-ba1b0c11c42d -> id AVs6JuUDjkCFV7q2gd8QTPimBBgj5iBFj0C6GwwRxC0
    assert (
        grant_id("263a5b01-03e5-408e-8557-bab681df104c", "1804a6f8-e623-4520-8f40-ba1b0c11c42d")
        == "AVs6JuUDjkCFV7q2gd8QTPimBBgj5iBFj0C6GwwRxC0"
    )


def test_a_consent_naming_a_workload_the_tenant_lacks_is_refused_and_creates_nothing(sim):
    customer = _customer(sim)
    assert sim.control.remove_workload(customer, "exchange") is True
    grants = [
        {"enterpriseApplicationId": GRAPH_APP, "scope": SCOPES},
        {"enterpriseApplicationId": EXCHANGE_APP, "scope": "Exchange.Manage"},
    ]
    response = _pc_consent(sim, customer, grants)
    assert response.status_code == 400 and EXCHANGE_APP in response.json()["description"]
    assert sim.env["CPV_CLIENT_ID"] not in [sp["appId"] for sp in sim.control.directory(customer)["service_principals"]]
    assert _pc_consent(sim, customer).status_code == 201


def test_a_consent_naming_a_missing_workload_makes_it_when_partner_center_creates(sim):
    """The other reading of Partner Center (pc_consent_missing_resource="create"): the missing resource's service
    principal is made, as Entra's consent makes a first-party one, then the grants."""
    customer = _customer(sim)
    assert sim.control.remove_workload(customer, "exchange") is True
    sim.control.set_settings(pc_consent_missing_resource="create")
    grants = [
        {"enterpriseApplicationId": GRAPH_APP, "scope": SCOPES},
        {"enterpriseApplicationId": EXCHANGE_APP, "scope": "Exchange.Manage"},
    ]
    assert _pc_consent(sim, customer, grants).status_code == 201
    directory = sim.control.directory(customer)
    by_app = {sp["appId"]: sp for sp in directory["service_principals"]}
    assert by_app[EXCHANGE_APP]["displayName"] == "Office 365 Exchange Online"
    assert by_app[EXCHANGE_APP]["appOwnerOrganizationId"] == "f8cdef31-a31e-4b4a-93e4-5f571e91255a"
    vendor = by_app[sim.env["CPV_CLIENT_ID"]]
    assert sorted(g["resourceId"] for g in directory["oauth2_permission_grants"] if g["clientId"] == vendor["id"]) == (
        sorted([by_app[GRAPH_APP]["id"], by_app[EXCHANGE_APP]["id"]])
    )
    # an application Entra does not know is still refused: there is nothing to make its service principal from
    unknown = [{"enterpriseApplicationId": str(uuid.uuid4()), "scope": "X.Read"}]
    assert _pc_delete(sim, customer).status_code == 200
    assert _pc_consent(sim, customer, unknown).status_code == 400
    with pytest.raises(ControlError):
        sim.control.set_settings(pc_consent_missing_resource="maybe")


def test_exists_follows_the_service_principal(sim):
    customer = _customer(sim)
    assert _pc_consent(sim, customer).status_code == 201
    assert _pc_consent(sim, customer).status_code == 409
    # the app's service principal deleted in the tenant: Partner Center makes it again, with a new object id
    before = sim.control.directory(customer)
    old = next(sp["id"] for sp in before["service_principals"] if sp["appId"] == sim.env["CPV_CLIENT_ID"])
    assert sim.control.delete_service_principal(customer) is True
    assert _pc_consent(sim, customer).status_code == 201
    after = sim.control.directory(customer)
    new = next(sp["id"] for sp in after["service_principals"] if sp["appId"] == sim.env["CPV_CLIENT_ID"])
    assert new != old


# ----- Graph in the customer tenant -----
def test_service_principals_by_app_id_by_filter_and_by_id(sim):
    customer = _customer(sim)
    token = _consented_token(sim, customer)
    app_id = sim.env["CPV_CLIENT_ID"]

    one = _graph(sim, f"/v1.0/servicePrincipals(appId='{app_id}')", token)
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["@odata.context"] == f"{sim.graph_url}/v1.0/$metadata#servicePrincipals/$entity"
    assert body["appId"] == app_id and body["servicePrincipalType"] == "Application"
    # v1.0's servicePrincipal has no publisherName (beta's has); the SDK's v1.0 model would not know it
    assert "publisherName" not in body
    # the key as a client percent-encodes it
    encoded = _graph(sim, f"/v1.0/servicePrincipals(appId=%27{app_id}%27)", token)
    assert encoded.status_code == 200 and encoded.json()["id"] == body["id"]

    listed = _graph(sim, f"/v1.0/servicePrincipals?$filter=appId eq '{app_id}'", token)
    assert listed.status_code == 200
    assert listed.json()["@odata.context"] == f"{sim.graph_url}/v1.0/$metadata#servicePrincipals"
    assert [sp["id"] for sp in listed.json()["value"]] == [body["id"]]
    graph = _graph(sim, f"/v1.0/servicePrincipals?$filter=appId eq '{GRAPH_APP}'", token).json()["value"]
    assert [sp["displayName"] for sp in graph] == ["Microsoft Graph"]

    by_id = _graph(sim, f"/v1.0/servicePrincipals/{body['id']}", token)
    assert by_id.status_code == 200 and by_id.json()["appId"] == app_id


def test_permission_grants_filtered_on_the_client(sim):
    customer = _customer(sim)
    token = _consented_token(sim, customer)
    client = _graph(sim, f"/v1.0/servicePrincipals(appId='{sim.env['CPV_CLIENT_ID']}')", token).json()["id"]
    graph_sp = _graph(sim, f"/v1.0/servicePrincipals(appId='{GRAPH_APP}')", token).json()["id"]
    response = _graph(sim, f"/v1.0/oauth2PermissionGrants?$filter=clientId eq '{client}'", token)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["@odata.context"] == f"{sim.graph_url}/v1.0/$metadata#oauth2PermissionGrants"
    (grant,) = body["value"]
    assert grant == {
        "clientId": client,
        "consentType": "AllPrincipals",
        "id": grant_id(client, graph_sp),
        "principalId": None,
        "resourceId": graph_sp,
        "scope": "Domain.ReadWrite.All User.ReadWrite.All Directory.Read.All",
    }
    other = _graph(sim, f"/v1.0/oauth2PermissionGrants?$filter=clientId eq '{uuid.uuid4()}'", token)
    assert other.status_code == 200 and other.json()["value"] == []
    bad = _graph(sim, "/v1.0/oauth2PermissionGrants?$filter=startswith(scope,'User')", token)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "Request_UnsupportedQuery"


def test_paging_with_a_small_page_size(sim):
    customer = _customer(sim)
    token = _consented_token(sim, customer)
    sim.control.set_settings(graph_page_size=2)
    seen: list[str] = []
    url = "/v1.0/servicePrincipals"
    pages = 0
    while url:
        response = _graph(sim, url, token)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["value"]) <= 2
        seen += [sp["appId"] for sp in body["value"]]
        url = body.get("@odata.nextLink")
        pages += 1
    # Graph, Exchange Online, SharePoint Online, Azure Service Management and the vendor's app
    assert pages == 3 and len(seen) == 5 and len(set(seen)) == 5
    assert {GRAPH_APP, EXCHANGE_APP, SHAREPOINT_APP, sim.env["CPV_CLIENT_ID"]} <= set(seen)
    # $top overrides the page size, and the next link keeps the filter
    first = _graph(sim, f"/v1.0/servicePrincipals?$top=1&$filter=appId eq '{GRAPH_APP}'", token).json()
    assert len(first["value"]) == 1 and "@odata.nextLink" not in first
    top = _graph(sim, "/v1.0/servicePrincipals?$top=4", token).json()
    assert len(top["value"]) == 4 and "$top=4" in top["@odata.nextLink"]
    assert _graph(sim, "/v1.0/servicePrincipals?$top=1000", token).status_code == 400
    with pytest.raises(ControlError):
        sim.control.set_settings(graph_page_size=0)


def test_not_found_answers_request_resource_not_found(sim):
    customer = _customer(sim)
    token = _consented_token(sim, customer)
    missing = str(uuid.uuid4())
    for path in (f"/v1.0/servicePrincipals(appId='{missing}')", f"/v1.0/servicePrincipals/{missing}"):
        response = _graph(sim, path, token)
        assert response.status_code == 404, response.text
        error = response.json()["error"]
        assert error["code"] == "Request_ResourceNotFound" and missing in error["message"]
        assert set(error["innerError"]) >= {"date", "request-id", "client-request-id"}
    # a workload the tenant is not licensed for: its resource service principal is not there
    sim.control.remove_workload(customer, "exchange")
    assert _graph(sim, f"/v1.0/servicePrincipals(appId='{EXCHANGE_APP}')", token).status_code == 404
    listed = _graph(sim, f"/v1.0/servicePrincipals?$filter=appId eq '{EXCHANGE_APP}'", token)
    assert listed.status_code == 200 and listed.json()["value"] == []
    sim.control.add_workload(customer, "exchange")
    assert _graph(sim, f"/v1.0/servicePrincipals(appId='{EXCHANGE_APP}')", token).status_code == 200
    with pytest.raises(ControlError):
        sim.control.remove_workload(customer, "graph")


def test_throttling_answers_429_with_retry_after_for_n_requests(sim):
    customer = _customer(sim)
    token = _consented_token(sim, customer)
    other = _consented_token(sim, _customer(sim, 1))
    sim.control.throttle_graph(customer, 2, retry_after=7)
    path = f"/v1.0/servicePrincipals(appId='{GRAPH_APP}')"
    for _ in range(2):
        response = _graph(sim, path, token)
        assert response.status_code == 429 and response.headers["Retry-After"] == "7"
        error = response.json()["error"]
        assert error["code"] == "TooManyRequests" and error["innerError"]["status"] == "429"
        # another customer's tenant is not throttled
        assert _graph(sim, path, other).status_code == 200
    assert _graph(sim, path, token).status_code == 200
    sim.control.throttle_graph(customer, 5)
    sim.control.clear_graph_throttle(customer)
    assert _graph(sim, path, token).status_code == 200


def test_each_endpoint_needs_its_permission(sim):
    customer = _customer(sim)
    # a consent granting only User.Read on Graph: neither list may be read
    grants = [{"enterpriseApplicationId": GRAPH_APP, "scope": "User.Read"}]
    assert _pc_consent(sim, customer, grants).status_code == 201
    token = _customer_token(sim, customer)["access_token"]
    for path in (
        "/v1.0/servicePrincipals",
        f"/v1.0/servicePrincipals(appId='{GRAPH_APP}')",
        f"/v1.0/servicePrincipals/{uuid.uuid4()}",
        "/v1.0/oauth2PermissionGrants",
    ):
        response = _graph(sim, path, token)
        assert response.status_code == 403, (path, response.text)
        assert response.json()["error"]["code"] == "Authorization_RequestDenied"
    # Application.Read.All reads service principals, not grants (Directory.Read.All is the grants' least)
    sim.control.add_consent(customer, grants=[{"enterpriseApplicationId": GRAPH_APP, "scope": "Application.Read.All"}])
    token = _customer_token(sim, customer)["access_token"]
    assert _graph(sim, "/v1.0/servicePrincipals", token).status_code == 200
    assert _graph(sim, "/v1.0/oauth2PermissionGrants", token).status_code == 403


# ----- the customer-tenant token -----
def test_the_token_carries_the_grant_and_follows_drift(sim):
    customer = _customer(sim)
    token = _consented_token(sim, customer)
    claims = _claims(token)
    assert claims["tid"] == customer
    assert claims["scp"].split() == ["Domain.ReadWrite.All", "User.ReadWrite.All", "Directory.Read.All"]

    # drift: an administrator narrows the grant's scope; the next token carries what is left
    assert sim.control.narrow_grant(customer, ["Directory.Read.All"], resource_app_id=GRAPH_APP) == 1
    narrowed = _customer_token(sim, customer)
    assert _claims(narrowed["access_token"])["scp"].split() == ["Domain.ReadWrite.All", "User.ReadWrite.All"]
    # ... and Graph refuses the grants list to it now (Directory.Read.All is gone)
    assert _graph(sim, "/v1.0/oauth2PermissionGrants", narrowed["access_token"]).status_code == 403

    # drift: the grants deleted, the service principal kept: consent required (AADSTS65001)
    assert sim.control.delete_grants(customer) == 1
    result = _customer_token(sim, customer)
    assert result.get("error") == "invalid_grant" and 65001 in result["error_codes"], result
    assert result.get("suberror") == "consent_required"

    # drift: the service principal deleted: not authorized in the tenant (AADSTS90099)
    assert sim.control.delete_service_principal(customer) is True
    result = _customer_token(sim, customer)
    assert result.get("error") == "invalid_grant" and 90099 in result["error_codes"], result


def test_not_consented_is_90099_and_a_resource_without_a_grant_is_65001(sim):
    customer = _customer(sim)
    result = _customer_token(sim, customer)
    assert 90099 in result["error_codes"], result
    assert _pc_consent(sim, customer).status_code == 201
    # consented for Graph only: Azure Service Management's service principal is there, with no grant
    result = _customer_token(sim, customer, ["https://management.azure.com/.default"])
    assert 65001 in result["error_codes"], result
    # an explicit scope the grant does not hold
    body = redeem(
        sim, sim.control.issue_refresh_token(admin(sim).upn), customer, "https://graph.microsoft.com/Mail.Read"
    )
    assert_entra_error(body, 65001, "invalid_grant")


def test_a_resource_the_tenant_lacks_is_500011(sim):
    """The resource's service principal is not in the customer tenant: AADSTS500011 `invalid_resource` ("The
    resource principal named {name} wasn't found in the tenant named {tenant}"), not 65001."""
    customer = _customer(sim)
    assert _pc_consent(sim, customer).status_code == 201
    assert sim.control.remove_workload(customer, "azure") is True
    refresh = sim.control.issue_refresh_token(admin(sim).upn)
    body = assert_entra_error(
        redeem(sim, refresh, customer, "https://management.azure.com/.default"), 500011, "invalid_resource"
    )
    named = f"The resource principal named https://management.azure.com was not found in the tenant named {customer}"
    assert named in body["error_description"]
    assert "suberror" not in body
    # Partner Center's service principal is not in customer tenants either (msal returns the same error)
    result = _customer_token(sim, customer, [PC_DEFAULT])
    assert result.get("error") == "invalid_resource" and 500011 in result["error_codes"], result
    # the workload back: its service principal is there without a grant, so consent is required
    sim.control.add_workload(customer, "azure")
    result = _customer_token(sim, customer, ["https://management.azure.com/.default"])
    assert 65001 in result["error_codes"], result


def test_explicit_scopes_are_compared_without_regard_to_case(sim):
    customer = _customer(sim)
    assert _pc_consent(sim, customer).status_code == 201
    refresh = sim.control.issue_refresh_token(admin(sim).upn)
    body = redeem(sim, refresh, customer, "https://graph.microsoft.com/user.readwrite.all").json()
    assert "access_token" in body, body
    # the token carries the grant's spelling
    assert "User.ReadWrite.All" in _claims(body["access_token"])["scp"].split()


def test_a_partner_user_without_gdap_there_is_still_50020(sim):
    partner = sim.world.partners[0]
    customer = _customer(sim)
    assert _pc_consent(sim, customer).status_code == 201
    sim.control.gdap_state(partner.tenant_id, customer, "none")
    result = _customer_token(sim, customer)
    assert 50020 in result["error_codes"], result


def test_app_only_tokens_name_the_service_principal(sim):
    customer = _customer(sim)
    assert _pc_consent(sim, customer).status_code == 201
    app = cpv_app(sim, customer)
    result = app.acquire_token_for_client([GRAPH_DEFAULT])
    assert "access_token" in result, result
    sp = next(
        s for s in sim.control.directory(customer)["service_principals"] if s["appId"] == sim.env["CPV_CLIENT_ID"]
    )
    assert _claims(result["access_token"])["oid"] == sp["id"]
    sim.control.delete_service_principal(customer)
    assert "access_token" not in cpv_app(sim, customer).acquire_token_for_client([GRAPH_DEFAULT])


# ----- presets, the showcase and the world -----
def test_consent_state_presets(sim):
    customer = _customer(sim)
    sim.control.consent_state(customer, "drifted")
    result = _customer_token(sim, customer)
    assert _claims(result["access_token"])["scp"].split() == ["Domain.ReadWrite.All", "User.ReadWrite.All"]
    assert sim.env["CPV_CLIENT_ID"] in sim.control.consents(customer)
    sim.control.consent_state(customer, "no_exchange")
    assert "exchange" not in sim.control.directory(customer)["workloads"]
    sim.control.consent_state(customer, "grants_deleted")
    assert 65001 in _customer_token(sim, customer)["error_codes"]
    sim.control.consent_state(customer, "none")
    assert 90099 in _customer_token(sim, customer)["error_codes"]
    assert sim.control.consents(customer) == {}
    with pytest.raises(ControlError):
        sim.control.consent_state(customer, "no_such_state")


def test_the_showcase_adds_consented_drifted_and_unlicensed_customers():
    plain = World.generate(seed=1, partners=2, customers_per_partner=2)
    world = World.generate(seed=1, partners=2, customers_per_partner=2, consent_showcase=True)
    names = [c.company_name for c in world.partners[0].customers]
    assert names[2:] == [f"Consent showcase: {state}" for state in CONSENT_SHOWCASE]
    # no other id moves
    assert [c.tenant_id for c in world.partners[0].customers[:2]] == [c.tenant_id for c in plain.partners[0].customers]
    app_id = world.cpv_app.client_id
    consented, drifted, unlicensed = (world.directory(c.tenant_id) for c in world.partners[0].customers[2:])
    assert consented.scopes_for(app_id, GRAPH_APP) == [
        "Domain.ReadWrite.All",
        "User.ReadWrite.All",
        "Directory.Read.All",
    ]
    assert drifted.scopes_for(app_id, GRAPH_APP) == ["Domain.ReadWrite.All", "User.ReadWrite.All"]
    assert unlicensed.by_app_id(EXCHANGE_APP) is None and unlicensed.by_app_id(app_id) is not None
    again = World.from_dict(json.loads(world.to_json()))
    assert again.to_dict() == world.to_dict()
    assert not plain.directories


def test_the_showcase_in_a_running_simulator(tmp_path):
    from simulator.testing import SimulatorProcess

    with SimulatorProcess(consent_showcase=True, state_dir=tmp_path) as running:
        world = running.world
        customer = next(c for c in world.partners[0].customers if c.company_name == "Consent showcase: drifted")
        assert running.env["CPV_CLIENT_ID"] in running.control.consents(customer.tenant_id)
        refresh = running.control.issue_refresh_token(world.partners[0].users[0].upn)
        response = requests.post(
            f"{running.authority_host}/{customer.tenant_id}/oauth2/v2.0/token",
            data={
                "grant_type": "refresh_token",
                "client_id": running.env["CPV_CLIENT_ID"],
                "client_secret": running.env["CPV_CLIENT_SECRET"],
                "refresh_token": refresh,
                "scope": GRAPH_DEFAULT,
            },
            verify=str(running.ca_bundle),
            timeout=10,
        )
        assert response.status_code == 200, response.text
        claims = json.loads(base64.urlsafe_b64decode(response.json()["access_token"].split(".")[1] + "=="))
        assert "Directory.Read.All" not in claims["scp"].split()


def test_the_state_file_keeps_the_directories_and_an_older_file_gets_its_consents_back():
    from simulator.state import Simulator

    world = World.generate(seed=2, partners=1, customers_per_partner=2)
    customer = world.partners[0].customers[0].tenant_id
    app_id = world.cpv_app.client_id
    world.set_consent_state(customer, "drifted", now=1_800_000_000.0)
    world.directory(customer).remove_workload("sharepoint")
    data = Simulator(world).snapshot()
    again = World.from_dict(json.loads(json.dumps(data))["world"])
    assert again.directory(customer).scopes_for(app_id, GRAPH_APP) == ["Domain.ReadWrite.All", "User.ReadWrite.All"]
    assert again.directory(customer).by_app_id(SHAREPOINT_APP) is None
    assert data["app_consents"][customer][app_id]["grants"] == [
        {"enterpriseApplicationId": GRAPH_APP, "scope": "Domain.ReadWrite.All,User.ReadWrite.All"}
    ]

    # a file written before customer tenants held directories: Partner Center's records make them
    old = json.loads(json.dumps(data))
    del old["world"]["directories"]
    restored = Simulator(World.from_dict(old["world"]))
    restored.restore(old)
    directory = restored.world.directory(customer)
    assert directory is not None and directory.by_app_id(app_id) is not None
    assert directory.scopes_for(app_id, GRAPH_APP) == ["Domain.ReadWrite.All", "User.ReadWrite.All"]

"""Microsoft Graph: `/me`, `/organization`, the signed-in user's memberships, their permissions and paging."""

from __future__ import annotations

import uuid

import pytest
import requests

from tests.simulator.helpers import (
    GRAPH_DEFAULT,
    PC_DEFAULT,
    STATIC_CONSENT,
    admin,
    admin_consents,
    redeem,
    token_request,
    user_named,
)

GLOBAL_ADMIN = "62e90394-69f5-4237-9190-012177145e10"
GRAPH = "https://graph.microsoft.com"
PC = "https://api.partnercenter.microsoft.com"
ROLE = "#microsoft.graph.directoryRole"
GROUP = "#microsoft.graph.group"
# an OData cast on a membership list is an advanced query (aad-advanced-queries.md)
ADVANCED = {"ConsistencyLevel": "eventual"}
# the security group the generated GDAP relationships assign their roles to: admin@ and agent@ are its members
GDAP_GROUP = "GDAP Cloud Application Administrators"


def _graph_token(sim, login: str = "admin", tenant: str = "organizations", scope: str = GRAPH_DEFAULT) -> str:
    """A Graph token of `login` once the partner's administrator consented to the registration's list for the
    organisation (the sign-ins after it add nothing: `.default` with a grant in place)."""
    admin_consents(sim)
    refresh = sim.control.issue_refresh_token(user_named(sim, login).upn, scope=STATIC_CONSENT)
    response = redeem(sim, refresh, tenant, scope)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def _get(sim, path: str, token: str, **headers: str) -> requests.Response:
    url = path if path.startswith("https://") else f"{sim.graph_url}{path}"
    return requests.get(url, headers={"Authorization": f"Bearer {token}", **headers}, timeout=10)


def _with_graph_permissions(sim, *permissions: str) -> None:
    """The registration lists these Graph permissions, and the first partner's grants are gone, so that its
    administrator's next consent grants exactly them (with the initial consent's User.Read)."""
    sim.control.update_app(
        sim.env["CPV_CLIENT_ID"], delegated_permissions={PC: ["user_impersonation"], GRAPH: list(permissions)}
    )
    sim.control.revoke_grants(sim.world.partners[0].tenant_id)


def _assert_graph_error(response: requests.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}
    return error


ROLES_AND_GROUPS = ("User.Read", "RoleManagement.Read.Directory", "GroupMember.Read.All")


@pytest.mark.parametrize("relationship", ["memberOf", "transitiveMemberOf"])
def test_the_admin_is_a_global_administrator_and_in_admin_agents(sim, relationship):
    partner = sim.world.partners[0]
    _with_graph_permissions(sim, *ROLES_AND_GROUPS)
    response = _get(sim, f"/v1.0/me/{relationship}", _graph_token(sim))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["@odata.context"].endswith("/v1.0/$metadata#directoryObjects")
    assert "@odata.nextLink" not in body
    role, group, gdap_group = body["value"]
    assert gdap_group["displayName"] == GDAP_GROUP and gdap_group["id"] != group["id"]
    assert role == {
        "@odata.type": ROLE,
        "id": role["id"],
        "deletedDateTime": None,
        "description": (
            "Can manage all aspects of Microsoft Entra ID and Microsoft services that use Microsoft Entra identities."
        ),
        "displayName": "Global Administrator",
        "roleTemplateId": GLOBAL_ADMIN,
    }
    # the id is the activated role's object id in this tenant: stable, and not the template id
    uuid.UUID(role["id"])
    assert role["id"] != GLOBAL_ADMIN
    other = _get(sim, f"/v1.0/me/{relationship}", _graph_token(sim, "globaladmin")).json()["value"][0]
    assert other["id"] == role["id"]
    refresh = admin_consents(sim, 1)
    token = redeem(sim, refresh, scope=GRAPH_DEFAULT).json()["access_token"]
    assert _get(sim, f"/v1.0/me/{relationship}", token).json()["value"][0]["id"] != role["id"]
    assert group["@odata.type"] == GROUP
    assert group["displayName"] == "AdminAgents"
    assert group["securityEnabled"] is True and group["mailEnabled"] is False
    assert partner.tenant_id not in (role["id"], group["id"])


@pytest.mark.parametrize(
    ("login", "types"),
    [("globaladmin", [ROLE]), ("agent", [GROUP, GROUP]), ("nomfa", [ROLE, GROUP]), ("user", [])],
)
def test_memberships_follow_the_user_and_the_member_role_is_not_listed(sim, login, types):
    body = _get(sim, "/v1.0/me/transitiveMemberOf", _graph_token(sim, login)).json()
    assert [item["@odata.type"] for item in body["value"]] == types
    assert all(item.get("roleTemplateId") != "b79fbf4d-3ef9-4689-8143-76b194e85509" for item in body["value"])


def test_the_seeded_registration_reads_roles_and_groups(sim):
    """The control panel's registration has RoleManagement.Read.Directory and GroupMember.Read.All."""
    role, group, gdap_group = _get(sim, "/v1.0/me/transitiveMemberOf", _graph_token(sim)).json()["value"]
    assert role["roleTemplateId"] == GLOBAL_ADMIN and role["displayName"] == "Global Administrator"
    assert group["@odata.type"] == GROUP and group["displayName"] == "AdminAgents"
    assert gdap_group["@odata.type"] == GROUP and gdap_group["displayName"] == GDAP_GROUP


def test_the_odata_casts(sim):
    _with_graph_permissions(sim, *ROLES_AND_GROUPS)
    token = _graph_token(sim)
    roles = _get(sim, "/v1.0/me/transitiveMemberOf/microsoft.graph.directoryRole?$count=true", token, **ADVANCED)
    roles = roles.json()
    assert roles["@odata.context"].endswith("/v1.0/$metadata#directoryRoles")
    assert [r["roleTemplateId"] for r in roles["value"]] == [GLOBAL_ADMIN]
    assert "@odata.type" not in roles["value"][0] and roles["@odata.count"] == 1
    groups = _get(sim, "/v1.0/me/memberOf/microsoft.graph.group?$count=true", token, **ADVANCED).json()
    assert groups["@odata.context"].endswith("/v1.0/$metadata#groups")
    assert [g["displayName"] for g in groups["value"]] == ["AdminAgents", GDAP_GROUP]
    unknown = _get(sim, "/v1.0/me/memberOf/microsoft.graph.device?$count=true", token, **ADVANCED)
    _assert_graph_error(unknown, 400, "BadRequest")


@pytest.mark.parametrize("relationship", ["memberOf", "transitiveMemberOf"])
@pytest.mark.parametrize(
    ("query", "headers"),
    [("", {}), ("?$count=true", {}), ("", ADVANCED), ("?$count=false", ADVANCED)],
)
def test_a_cast_without_the_advanced_query_parameters_is_refused(sim, relationship, query, headers):
    token = _graph_token(sim)
    path = f"/v1.0/me/{relationship}/microsoft.graph.directoryRole{query}"
    error = _assert_graph_error(_get(sim, path, token, **headers), 400, "Request_UnsupportedQuery")
    assert "ConsistencyLevel:eventual" in error["message"] and "$count=true" in error["message"]
    # without the cast, the list needs neither
    assert _get(sim, f"/v1.0/me/{relationship}", token).status_code == 200


def test_select_is_honoured(sim):
    _with_graph_permissions(sim, *ROLES_AND_GROUPS)
    token = _graph_token(sim)
    body = _get(
        sim,
        "/v1.0/me/transitiveMemberOf/microsoft.graph.directoryRole?$select=id,roleTemplateId&$count=true",
        token,
        **ADVANCED,
    ).json()
    assert body["@odata.context"].endswith("#directoryRoles(id,roleTemplateId)")
    assert list(body["value"][0]) == ["id", "roleTemplateId"]
    mixed = _get(sim, "/v1.0/me/memberOf?$select=displayName", token).json()["value"]
    assert mixed == [
        {"@odata.type": ROLE, "displayName": "Global Administrator"},
        {"@odata.type": GROUP, "displayName": "AdminAgents"},
        {"@odata.type": GROUP, "displayName": GDAP_GROUP},
    ]


def test_limited_information_without_a_permission_that_reads_roles_or_groups(sim):
    _with_graph_permissions(sim, "User.Read")
    token = _graph_token(sim)
    role, group, _ = _get(sim, "/v1.0/me/memberOf", token).json()["value"]
    assert role["@odata.type"] == ROLE and role["id"]
    assert {k: v for k, v in role.items() if k not in ("@odata.type", "id")} == {
        "deletedDateTime": None,
        "description": None,
        "displayName": None,
        "roleTemplateId": None,
    }
    assert group["@odata.type"] == GROUP and group["id"]
    assert group["displayName"] is None and group["groupTypes"] == []
    cast = _get(
        sim,
        "/v1.0/me/transitiveMemberOf/microsoft.graph.directoryRole?$select=id,roleTemplateId&$count=true",
        token,
        **ADVANCED,
    )
    assert cast.json()["value"] == [{"id": role["id"], "roleTemplateId": None}]
    # a role-reading permission makes the roles whole; groups stay limited without a group-reading one
    _with_graph_permissions(sim, "User.Read", "RoleManagement.Read.Directory")
    role, group, _ = _get(sim, "/v1.0/me/memberOf", _graph_token(sim)).json()["value"]
    assert role["roleTemplateId"] == GLOBAL_ADMIN and group["displayName"] is None
    _with_graph_permissions(sim, "GroupMember.Read.All")
    role, group, _ = _get(sim, "/v1.0/me/memberOf", _graph_token(sim)).json()["value"]
    assert role["roleTemplateId"] is None and group["displayName"] == "AdminAgents"


@pytest.mark.parametrize("permission", ["Directory.Read.All", "Directory.ReadWrite.All", "Directory.AccessAsUser.All"])
def test_directory_permissions_read_everything(sim, permission):
    _with_graph_permissions(sim, permission)
    role, group, gdap_group = _get(sim, "/v1.0/me/transitiveMemberOf", _graph_token(sim)).json()["value"]
    assert role["roleTemplateId"] == GLOBAL_ADMIN and group["displayName"] == "AdminAgents"
    assert gdap_group["displayName"] == GDAP_GROUP


def test_a_token_without_a_membership_permission_gets_403(sim):
    _with_graph_permissions(sim, "Mail.Read")
    admin_consents(sim)
    refresh = sim.control.issue_refresh_token(user_named(sim, "admin").upn, scope=STATIC_CONSENT)
    # An administrator narrows the grant to Mail.Read (the first consent had added User.Read): a token's scp is every
    # permission granted for the resource, so only then does it hold no membership permission.
    sim.control.revoke_grants(sim.world.partners[0].tenant_id, permissions=["User.Read", "openid", "profile", "email"])
    response = redeem(sim, refresh, "organizations", "https://graph.microsoft.com/Mail.Read")
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    for path in ("/v1.0/me/memberOf", "/v1.0/me/transitiveMemberOf/microsoft.graph.directoryRole?$count=true"):
        response = _get(sim, path, token, **{"client-request-id": "cr-1"}, **ADVANCED)
        error = _assert_graph_error(response, 403, "Authorization_RequestDenied")
        assert error["message"] == "Insufficient privileges to complete the operation."
        assert error["innerError"]["client-request-id"] == "cr-1"
        assert response.headers["request-id"] == error["innerError"]["request-id"]


def test_an_app_only_token_on_me_gets_400(sim):
    env = sim.env
    response = token_request(
        sim,
        env["CPV_VENDOR_TENANT_ID"],
        grant_type="client_credentials",
        client_id=env["CPV_CLIENT_ID"],
        client_secret=env["CPV_CLIENT_SECRET"],
        scope=GRAPH_DEFAULT,
    )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    for path in ("/v1.0/me", "/v1.0/me/memberOf", "/v1.0/me/transitiveMemberOf/microsoft.graph.directoryRole"):
        error = _assert_graph_error(_get(sim, path, token, **ADVANCED), 400, "BadRequest")
        assert error["message"] == "/me request is only valid with delegated authentication flow."


def test_paging_with_top_and_next_link(sim):
    token = _graph_token(sim)
    first = _get(sim, "/v1.0/me/transitiveMemberOf?$top=1", token).json()
    assert [item["@odata.type"] for item in first["value"]] == [ROLE]
    assert first["@odata.nextLink"].startswith(f"{sim.graph_url}/v1.0/me/transitiveMemberOf?")
    assert "$skiptoken=" in first["@odata.nextLink"]
    second = _get(sim, first["@odata.nextLink"], token).json()
    assert [item["@odata.type"] for item in second["value"]] == [GROUP]
    third = _get(sim, second["@odata.nextLink"], token).json()
    assert [item["@odata.type"] for item in third["value"]] == [GROUP]
    assert "@odata.nextLink" not in third
    # the default page (100) holds everything; $top is 1..999
    assert "@odata.nextLink" not in _get(sim, "/v1.0/me/memberOf", token).json()
    assert _get(sim, "/v1.0/me/memberOf?$top=999", token).status_code == 200
    for top in ("0", "1000"):
        _assert_graph_error(_get(sim, f"/v1.0/me/memberOf?$top={top}", token), 400, "Request_UnsupportedQuery")
    _assert_graph_error(_get(sim, "/v1.0/me/memberOf?$skiptoken=garbage", token), 400, "Directory_ExpiredPageToken")


def test_paging_through_many_memberships(sim):
    """Enough groups for several pages: a client that follows @odata.nextLink (and sends the cast's headers again)
    sees every one once."""
    user = admin(sim)
    names = [f"Support tier {n}" for n in range(1, 8)]
    sim.control.set_user_groups(user.oid, names)
    _with_graph_permissions(sim, *ROLES_AND_GROUPS)
    token = _graph_token(sim)
    seen, url, pages = [], "/v1.0/me/transitiveMemberOf/microsoft.graph.group?$count=true&$top=3", 0
    while url:
        body = _get(sim, url, token, **ADVANCED).json()
        assert body["@odata.count"] == 9
        seen += [group["displayName"] for group in body["value"]]
        url, pages = body.get("@odata.nextLink"), pages + 1
        if url:
            # the next page is refused without the advanced query's header
            _assert_graph_error(_get(sim, url, token), 400, "Request_UnsupportedQuery")
    assert pages == 3 and seen == ["AdminAgents", *names, GDAP_GROUP]
    everything = _get(sim, "/v1.0/me/memberOf", token).json()["value"]
    assert [item["@odata.type"] for item in everything] == [ROLE] + [GROUP] * 9
    assert len({item["id"] for item in everything}) == 10


def test_count_needs_consistency_level_eventual(sim):
    token = _graph_token(sim)
    plain = _get(sim, "/v1.0/me/transitiveMemberOf?$count=true", token).json()
    assert "@odata.count" not in plain
    advanced = _get(sim, "/v1.0/me/transitiveMemberOf?$count=true", token, ConsistencyLevel="eventual").json()
    assert advanced["@odata.count"] == 3


def test_tokens_are_checked(sim):
    path = "/v1.0/me/transitiveMemberOf"
    assert _assert_graph_error(requests.get(f"{sim.graph_url}{path}", timeout=10), 401, "InvalidAuthenticationToken")
    pc_token = _graph_token(sim, scope=PC_DEFAULT)
    _assert_graph_error(_get(sim, path, pc_token), 401, "InvalidAuthenticationToken")
    token = _graph_token(sim)
    sim.control.advance_clock(3601)
    _assert_graph_error(_get(sim, path, token), 401, "InvalidAuthenticationToken")


def test_a_customer_tenant_token_does_not_find_the_partner_user(sim):
    customer = sim.world.partners[0].customers[0].tenant_id
    sim.control.add_consent(customer)
    token = _graph_token(sim, tenant=customer)
    _assert_graph_error(_get(sim, "/v1.0/me/memberOf", token), 404, "Request_ResourceNotFound")


def test_faults_on_graph(sim):
    token = _graph_token(sim)
    sim.control.inject_fault(
        "graph", status=503, path="transitiveMemberOf", headers={"Retry-After": "2"}, body={"error": {"code": "x"}}
    )
    failed = _get(sim, "/v1.0/me/transitiveMemberOf", token)
    assert failed.status_code == 503 and failed.headers["Retry-After"] == "2"
    assert _get(sim, "/v1.0/me/transitiveMemberOf", token).status_code == 200
    entries = sim.control.log(service="graph", path="transitiveMemberOf")
    assert [e["status"] for e in entries] == [503, 200]
    assert entries[1]["detail"]["user"] == admin(sim).oid


def test_me_and_organization(sim):
    token = _graph_token(sim)
    me = _get(sim, "/v1.0/me", token).json()
    assert me["id"] == admin(sim).oid and me["userPrincipalName"] == admin(sim).upn
    organization = _get(sim, "/v1.0/organization", token).json()["value"][0]
    assert organization["id"] == sim.world.partners[0].tenant_id
    assert organization["verifiedDomains"][0]["name"] == sim.world.partners[0].domain

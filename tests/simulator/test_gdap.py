"""GDAP in the partner tenant: Graph's delegatedAdminRelationships and checkMemberGroups, Partner Center's
ApplicationConsent and Entra's customer-tenant tokens, as the relationships, assignments and groups decide."""

from __future__ import annotations

import pytest
import requests

from simulator import graph as graph_module
from simulator.control_client import ControlError
from simulator.state import Simulator
from simulator.world import GDAP_STATES, World
from tests.simulator.helpers import GRAPH_DEFAULT, PC_DEFAULT, admin, assert_entra_error, redeem, user_named

GRAPH = "https://graph.microsoft.com"
GRAPH_APP = "00000003-0000-0000-c000-000000000000"
RELATIONSHIPS = "/v1.0/tenantRelationships/delegatedAdminRelationships"
CLOUD_APP_ADMIN = "158c047a-c907-4556-b7ef-446551a6b5f7"
PRIVILEGED_ROLE_ADMIN = "e8611ab8-c189-46e8-94e1-60213ab1f814"
DIRECTORY_READERS = "88d8e3e3-8f55-4a1e-953a-9b9898b8876b"
GDAP_GROUP = "GDAP Cloud Application Administrators"
DENYING = (
    "none",
    "approval_pending",
    "no_consent_role",
    "role_unassigned",
    "assignment_pending",
    "user_not_in_group",
    "expired",
    "terminated",
)
ALLOWING = ("active", "expiring", "expiring_global_admin", "mlt")


def _token(sim, resource_scope: str, login: str = "admin", scope: str | None = None) -> str:
    refresh = sim.control.issue_refresh_token(user_named(sim, login).upn, scope=scope)
    response = redeem(sim, refresh, scope=resource_scope)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def _graph_token(sim, login: str = "admin") -> str:
    # the registration's whole list, consented by the partner's administrator
    sim.control.issue_refresh_token(admin(sim).upn, scope=f"{GRAPH_DEFAULT} openid profile offline_access")
    return _token(sim, GRAPH_DEFAULT, login, scope=f"{GRAPH_DEFAULT} openid profile offline_access")


def _get(sim, path: str, token: str) -> requests.Response:
    url = path if path.startswith("https://") else f"{sim.graph_url}{path}"
    return requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def _check(sim, token: str, ids: list[str]) -> requests.Response:
    return requests.post(
        f"{sim.graph_url}/v1.0/me/checkMemberGroups",
        json={"groupIds": ids},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def _consent(sim, customer: str, login: str = "admin") -> requests.Response:
    token = _token(sim, PC_DEFAULT, login)
    return requests.post(
        f"{sim.partner_center_url}/v1/customers/{customer}/applicationconsents",
        json={
            "applicationId": sim.env["CPV_CLIENT_ID"],
            "displayName": "Contoso Control Panel",
            "applicationGrants": [{"enterpriseApplicationId": GRAPH_APP, "scope": "Directory.Read.All"}],
        },
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


# ----- the world -----
def test_generated_customers_have_a_working_relationship_and_the_world_round_trips():
    world = World.generate(seed=3, partners=2, customers_per_partner=3)
    partner = world.partners[0]
    group = next(g for g in partner.security_groups if g.display_name == GDAP_GROUP)
    assert {u.upn.split("@")[0] for u in partner.users if u.oid in group.members} == {"admin", "agent"}
    assert [r.customer_tenant_id for r in partner.relationships] == [c.tenant_id for c in partner.customers]
    relationship = partner.relationships[0]
    assert (relationship.status, relationship.duration, relationship.auto_extend) == ("active", "P730D", "P180D")
    assert relationship.roles == [CLOUD_APP_ADMIN, DIRECTORY_READERS]
    assert [(a.group_id, a.status) for a in relationship.assignments] == [(group.id, "active")]
    assert World.from_dict(world.to_dict()).to_dict() == world.to_dict()
    # without the showcase, the same customers as before GDAP was modelled
    assert [len(p.customers) for p in world.partners] == [3, 3]


def test_a_world_written_before_gdap_gets_working_relationships():
    data = World.generate(seed=3, partners=1, customers_per_partner=2).to_dict()
    for partner in data["partners"]:
        del partner["relationships"], partner["security_groups"]
    partner = World.from_dict(data).partners[0]
    assert len(partner.relationships) == 2 and partner.security_groups[0].display_name == GDAP_GROUP


def test_the_state_file_keeps_relationships_assignments_and_groups():
    world = World.generate(seed=2, partners=1, customers_per_partner=2)
    partner = world.partners[0]
    world.set_gdap_state(partner, partner.customers[0], "user_not_in_group", now=1_800_000_000.0)
    again = World.from_dict(Simulator(world).snapshot()["world"])
    assert again.to_dict() == world.to_dict()
    assert [g.display_name for g in again.partners[0].security_groups][-1].endswith("(no members)")


def test_the_showcase_adds_a_customer_per_state_to_the_first_partner():
    world = World.generate(seed=1, partners=2, customers_per_partner=2, gdap_showcase=True)
    names = [c.company_name for c in world.partners[0].customers]
    assert names[2:] == ["GDAP showcase: " + state.replace("_", " ") for state in GDAP_STATES]
    assert len(world.partners[1].customers) == 2
    mlt = next(r for r in world.partners[0].relationships if r.display_name.startswith("MLT_"))
    assert len(mlt.roles) == 9 and mlt.duration == "P365D"


# ----- Graph: delegatedAdminRelationships -----
def test_the_partners_relationships_in_graphs_shape(sim):
    partner = sim.world.partners[0]
    token = _graph_token(sim)
    body = _get(sim, RELATIONSHIPS, token).json()
    assert body["@odata.context"].endswith("/v1.0/tenantRelationships/$metadata#delegatedAdminRelationships")
    assert "@odata.nextLink" not in body
    first = body["value"][0]
    assert first["@odata.type"] == "#microsoft.graph.delegatedAdminRelationship"
    assert first["@odata.etag"].startswith('W/"')
    left, right = first["id"][:36], first["id"][37:]
    assert right == partner.tenant_id and len(left) == 36
    assert first["customer"] == {
        "tenantId": partner.customers[0].tenant_id,
        "displayName": partner.customers[0].company_name,
    }
    assert first["accessDetails"] == {
        "unifiedRoles": [{"roleDefinitionId": CLOUD_APP_ADMIN}, {"roleDefinitionId": DIRECTORY_READERS}]
    }
    assert (first["status"], first["duration"], first["autoExtendDuration"]) == ("active", "P730D", "P180D")
    assert first["endDateTime"].endswith("Z") and first["endDateTime"] > first["activatedDateTime"]
    one = _get(sim, f"{RELATIONSHIPS}/{first['id']}", token).json()
    assert one["@odata.context"].endswith("#delegatedAdminRelationships/$entity") and one["id"] == first["id"]
    assignments = _get(sim, f"{RELATIONSHIPS}/{first['id']}/accessAssignments", token).json()
    assert assignments["@odata.context"].endswith("/tenantRelationships/$metadata#accessAssignments")
    (assignment,) = assignments["value"]
    assert assignment["@odata.type"] == "#microsoft.graph.delegatedAdminAccessAssignment"
    assert assignment["status"] == "active"
    assert assignment["accessContainer"]["accessContainerType"] == "securityGroup"
    group = next(g for g in sim.control.gdap_security_groups(partner.tenant_id) if g["display_name"] == GDAP_GROUP)
    assert assignment["accessContainer"]["accessContainerId"] == group["id"]
    missing = _get(sim, f"{RELATIONSHIPS}/00000000-0000-0000-0000-000000000000-{partner.tenant_id}", token)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "Request_ResourceNotFound"


def test_paging_over_more_than_300_relationships(sim):
    partner = sim.world.partners[0]
    sim.control.add_customers(partner.tenant_id, 310)
    token = _graph_token(sim)
    for query, pages in (("", 4), ("?$top=300", 2)):
        seen, url, count = [], RELATIONSHIPS + query, 0
        while url:
            body = _get(sim, url, token).json()
            seen += [item["id"] for item in body["value"]]
            url, count = body.get("@odata.nextLink"), count + 1
        assert count == pages and len(seen) == len(set(seen)) == 315
    too_many = _get(sim, f"{RELATIONSHIPS}?$top=301", token)
    assert too_many.status_code == 400 and too_many.json()["error"]["code"] == "BadRequest"


def test_filters_on_status_and_customer(sim):
    partner = sim.world.partners[0]
    customers = [c.tenant_id for c in partner.customers]
    sim.control.gdap_state(partner.tenant_id, customers[1], "expired")
    sim.control.gdap_state(partner.tenant_id, customers[2], "approval_pending")
    token = _graph_token(sim)

    def statuses(expression: str) -> list[tuple[str, str]]:
        response = _get(sim, f"{RELATIONSHIPS}?$filter={expression}", token)
        assert response.status_code == 200, response.text
        return [(r["customer"]["tenantId"], r["status"]) for r in response.json()["value"]]

    assert len(statuses("status eq 'active'")) == 3
    assert statuses("status in ('expired','approvalPending')") == [
        (customers[1], "expired"),
        (customers[2], "approvalPending"),
    ]
    assert statuses(f"customer/tenantId eq '{customers[1]}'") == [(customers[1], "expired")]
    assert statuses(f"customer/tenantId eq '{customers[1]}' and status eq 'active'") == []
    bad = _get(sim, f"{RELATIONSHIPS}?$filter=displayName eq 'x'", token)
    assert bad.status_code == 400
    pending = sim.control.gdap_state(partner.tenant_id, customers[3], "assignment_pending")["relationships"][0]
    path = f"{RELATIONSHIPS}/{pending['id']}/accessAssignments"
    assert [a["status"] for a in _get(sim, path + "?$filter=status eq 'pending'", token).json()["value"]] == ["pending"]
    assert _get(sim, path + "?$filter=status eq 'active'", token).json()["value"] == []


def test_reading_relationships_needs_a_delegated_admin_relationship_permission(sim):
    token = _token(sim, f"{GRAPH}/User.Read", scope=f"{GRAPH}/User.Read openid profile offline_access")
    for path in (RELATIONSHIPS, f"{RELATIONSHIPS}/x-y/accessAssignments"):
        response = _get(sim, path, token)
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "Authorization_RequestDenied"


def test_only_admin_agents_see_relationships(sim):
    token = _graph_token(sim, "globaladmin")
    body = _get(sim, RELATIONSHIPS, token).json()
    assert body["value"] == []


# ----- Graph: checkMemberGroups and memberships -----
def test_check_member_groups_is_transitive_and_takes_at_most_20_ids(sim):
    partner = sim.world.partners[0]
    sim.control.add_customers(partner.tenant_id, 20)
    customers = [c["tenant_id"] for c in sim.control.world()["partners"][0]["customers"]][-20:]
    own = []
    for customer in customers:
        answer = sim.control.gdap_state(partner.tenant_id, customer, "active", group="own")
        own.append(answer["relationships"][0]["accessAssignments"][0]["accessContainer"]["accessContainerId"])
    assert len(set(own)) == 20
    token = _graph_token(sim)
    response = _check(sim, token, own)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["@odata.context"].endswith("/v1.0/$metadata#Collection(Edm.String)")
    assert body["value"] == own
    stranger = "00000000-0000-0000-0000-000000000001"
    too_many = _check(sim, token, [*own, stranger])
    assert too_many.status_code == 400 and too_many.json()["error"]["code"] == "Request_BadRequest"
    admin_agents = sim.control.gdap_relationships(partner.tenant_id)  # the world's view, for the AdminAgents id
    assert admin_agents
    memberships = _get(sim, "/v1.0/me/memberOf?$top=999", token).json()["value"]
    names = [g["displayName"] for g in memberships if g["@odata.type"] == "#microsoft.graph.group"]
    assert "AdminAgents" in names and GDAP_GROUP in names and len(names) == 22
    ids = [g["id"] for g in memberships if g["displayName"] in ("AdminAgents", GDAP_GROUP)]
    assert _check(sim, token, [*ids, stranger]).json()["value"] == ids


def test_check_member_groups_for_the_signed_in_user_needs_user_read_or_a_group_reading_permission(sim):
    token = _token(sim, f"{GRAPH}/User.Read", scope=f"{GRAPH}/User.Read openid profile offline_access")
    assert _check(sim, token, ["00000000-0000-0000-0000-000000000001"]).status_code == 200
    # The simulated sign-in grants User.Read with every Graph token, so the refusal is checked on the rule itself:
    # User.ReadBasic.All or User.Read.All needs a group-reading permission beside it.
    assert not graph_module._can_check_member_groups({"User.ReadBasic.All"})
    assert not graph_module._can_check_member_groups({"GroupMember.Read.All"})
    assert graph_module._can_check_member_groups({"User.ReadBasic.All", "GroupMember.Read.All"})
    assert graph_module._can_check_member_groups({"Directory.Read.All"})


# ----- Partner Center: ApplicationConsent -----
@pytest.mark.parametrize("state", DENYING)
def test_application_consent_is_refused_where_gdap_denies_it(sim, state):
    partner = sim.world.partners[0]
    customer = partner.customers[0].tenant_id
    sim.control.gdap_state(partner.tenant_id, customer, state)
    response = _consent(sim, customer)
    assert response.status_code == 403, response.text
    body = response.json()
    assert set(body) >= {"code", "description", "data", "source"} and "GDAP" in body["description"]
    assert sim.control.consents(customer) == {}


@pytest.mark.parametrize("state", ALLOWING)
def test_application_consent_is_accepted_where_gdap_allows_it(sim, state):
    partner = sim.world.partners[0]
    customer = partner.customers[0].tenant_id
    sim.control.gdap_state(partner.tenant_id, customer, state)
    response = _consent(sim, customer)
    assert response.status_code == 201, response.text


def test_privileged_role_administrator_consents_too(sim):
    partner = sim.world.partners[0]
    customer = partner.customers[0].tenant_id
    group = next(g for g in sim.control.gdap_security_groups(partner.tenant_id) if g["display_name"] == GDAP_GROUP)
    relationship = sim.world.partners[0].relationships[0]
    relationship.roles = [PRIVILEGED_ROLE_ADMIN]
    relationship.assignments[0].roles = [PRIVILEGED_ROLE_ADMIN]
    assert relationship.assignments[0].group_id == group["id"]
    assert _consent(sim, customer).status_code == 201


def test_an_expiring_relationship_stops_consent_once_it_expires(sim):
    partner = sim.world.partners[0]
    customer = partner.customers[0].tenant_id
    expiring = sim.control.gdap_state(partner.tenant_id, customer, "expiring_global_admin")["relationships"][0]
    assert expiring["autoExtendDuration"] == "PT0S"
    sim.control.advance_days(11)
    assert _consent(sim, customer).status_code == 403
    after = [r for r in sim.control.gdap_relationships(partner.tenant_id) if r["customer"]["tenantId"] == customer]
    assert [r["status"] for r in after] == ["expired"]
    # a generated relationship extends itself by 180 days instead
    other = partner.customers[1].tenant_id
    sim.control.advance_days(800)
    assert _consent(sim, other).status_code == 201


def test_the_user_must_be_in_the_assigned_group(sim):
    partner = sim.world.partners[0]
    customer = partner.customers[0].tenant_id
    answer = sim.control.gdap_state(partner.tenant_id, customer, "user_not_in_group")
    group = answer["relationships"][0]["accessAssignments"][0]["accessContainer"]["accessContainerId"]
    assert _consent(sim, customer).status_code == 403
    sim.control.gdap_group_members(partner.tenant_id, group, [admin(sim).upn])
    assert _consent(sim, customer).status_code == 201
    with pytest.raises(ControlError):
        sim.control.gdap_state(partner.tenant_id, customer, "no_such_state")


# ----- Entra: customer-tenant tokens -----
def test_a_customer_tenant_token_needs_a_gdap_role(sim):
    partner = sim.world.partners[0]
    customer = partner.customers[0].tenant_id
    sim.control.add_consent(customer)
    refresh = sim.control.issue_refresh_token(admin(sim).upn)
    assert redeem(sim, refresh, customer, GRAPH_DEFAULT).status_code == 200
    sim.control.gdap_state(partner.tenant_id, customer, "none")
    body = assert_entra_error(redeem(sim, refresh, customer, GRAPH_DEFAULT), 50020, "invalid_grant")
    assert "does not exist in tenant" in body["error_description"]
    # any role will do for a token (what the token may then do is the role's business)
    sim.control.gdap_state(partner.tenant_id, customer, "no_consent_role")
    assert redeem(sim, refresh, customer, GRAPH_DEFAULT).status_code == 200
    # and 90099 is still the answer where the app is not consented
    sim.control.remove_consent(customer, sim.env["CPV_CLIENT_ID"])
    assert_entra_error(redeem(sim, refresh, customer, GRAPH_DEFAULT), 90099, "invalid_grant")

"""The simulator's GDAP, servicePrincipal and oauth2PermissionGrant answers parse with Microsoft's own Graph models
(msgraph-sdk, through kiota's JSON parse node), with no property left over: a property named otherwise than in
Graph's schema would land in `additional_data`."""

from __future__ import annotations

import json

import requests
from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory
from msgraph.generated.models.delegated_admin_access_assignment import DelegatedAdminAccessAssignment
from msgraph.generated.models.delegated_admin_access_assignment_status import DelegatedAdminAccessAssignmentStatus
from msgraph.generated.models.delegated_admin_relationship import DelegatedAdminRelationship
from msgraph.generated.models.delegated_admin_relationship_status import DelegatedAdminRelationshipStatus
from msgraph.generated.models.o_auth2_permission_grant import OAuth2PermissionGrant
from msgraph.generated.models.service_principal import ServicePrincipal

from tests.simulator.helpers import GRAPH_DEFAULT, admin, redeem

RELATIONSHIPS = "/v1.0/tenantRelationships/delegatedAdminRelationships"
CLOUD_APP_ADMIN = "158c047a-c907-4556-b7ef-446551a6b5f7"
# every item carries an ETag ("Each delegatedAdminRelationship object contains an @odata.etag property"), which
# the generated models do not declare
ANNOTATIONS = {"@odata.etag"}


def _values(sim, path: str, token: str) -> bytes:
    response = requests.get(f"{sim.graph_url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200, response.text
    return json.dumps(response.json()["value"]).encode()


def test_relationships_and_assignments_parse_with_the_sdks_models(sim):
    partner = sim.world.partners[0]
    sim.control.gdap_state(partner.tenant_id, partner.customers[1].tenant_id, "expiring")
    consent = f"{GRAPH_DEFAULT} openid profile offline_access"
    refresh = sim.control.issue_refresh_token(admin(sim).upn, scope=consent)
    token = redeem(sim, refresh, scope=GRAPH_DEFAULT).json()["access_token"]
    factory = JsonParseNodeFactory()

    node = factory.get_root_parse_node("application/json", _values(sim, RELATIONSHIPS, token))
    relationships = node.get_collection_of_object_values(DelegatedAdminRelationship)
    assert relationships and len(relationships) == len(partner.customers)
    for relationship in relationships:
        assert set(relationship.additional_data) <= ANNOTATIONS, relationship.additional_data
        assert relationship.customer is not None and not relationship.customer.additional_data
        assert relationship.access_details is not None and relationship.access_details.unified_roles
        assert relationship.created_date_time is not None and relationship.last_modified_date_time is not None
    first = relationships[0]
    assert first.odata_type == "#microsoft.graph.delegatedAdminRelationship"
    assert first.customer.tenant_id == partner.customers[0].tenant_id
    assert first.access_details.unified_roles[0].role_definition_id == CLOUD_APP_ADMIN
    assert first.status == DelegatedAdminRelationshipStatus.Active
    assert first.end_date_time is not None and first.end_date_time > first.activated_date_time
    assert first.auto_extend_duration is not None and first.auto_extend_duration.days == 180
    expiring = relationships[-1]
    assert expiring.customer.tenant_id == partner.customers[1].tenant_id
    assert expiring.auto_extend_duration is not None and expiring.auto_extend_duration.total_seconds() == 0

    path = f"{RELATIONSHIPS}/{first.id}/accessAssignments"
    node = factory.get_root_parse_node("application/json", _values(sim, path, token))
    assignments = node.get_collection_of_object_values(DelegatedAdminAccessAssignment)
    (assignment,) = assignments
    assert set(assignment.additional_data) <= ANNOTATIONS, assignment.additional_data
    assert assignment.status == DelegatedAdminAccessAssignmentStatus.Active
    container = assignment.access_container
    assert container is not None and not container.additional_data
    assert container.access_container_id == partner.relationships[0].assignments[0].group_id
    assert assignment.access_details.unified_roles[0].role_definition_id == CLOUD_APP_ADMIN


def _get(sim, path: str, token: str) -> dict:
    response = requests.get(f"{sim.graph_url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_service_principals_and_grants_parse_with_the_sdks_models(sim):
    customer = sim.world.partners[0].customers[0].tenant_id
    sim.control.add_consent(customer)
    refresh = sim.control.issue_refresh_token(admin(sim).upn)
    token = redeem(sim, refresh, customer, GRAPH_DEFAULT).json()["access_token"]
    factory = JsonParseNodeFactory()

    listed = _get(sim, "/v1.0/servicePrincipals", token)["value"]
    node = factory.get_root_parse_node("application/json", json.dumps(listed).encode())
    principals = node.get_collection_of_object_values(ServicePrincipal)
    assert len(principals) == len(listed) >= 2
    for principal in principals:
        assert not principal.additional_data, principal.additional_data
        assert principal.info is not None and not principal.info.additional_data
        assert principal.verified_publisher is not None and not principal.verified_publisher.additional_data
    vendor = next(p for p in principals if p.app_id == sim.env["CPV_CLIENT_ID"])
    assert vendor.app_owner_organization_id is not None
    assert str(vendor.app_owner_organization_id) == sim.world.vendor.tenant_id
    assert vendor.service_principal_type == "Application" and vendor.account_enabled is True

    one = _get(sim, f"/v1.0/servicePrincipals(appId='{sim.env['CPV_CLIENT_ID']}')", token)
    del one["@odata.context"]
    parsed = factory.get_root_parse_node("application/json", json.dumps(one).encode()).get_object_value(
        ServicePrincipal
    )
    assert not parsed.additional_data and parsed.id == vendor.id

    grants = _get(sim, f"/v1.0/oauth2PermissionGrants?$filter=clientId eq '{vendor.id}'", token)["value"]
    node = factory.get_root_parse_node("application/json", json.dumps(grants).encode())
    (grant,) = node.get_collection_of_object_values(OAuth2PermissionGrant)
    assert not grant.additional_data, grant.additional_data
    assert grant.client_id == vendor.id and grant.consent_type == "AllPrincipals" and grant.principal_id is None
    assert grant.scope == "Domain.ReadWrite.All User.ReadWrite.All Directory.Read.All"
    graph = next(p for p in principals if p.app_id == "00000003-0000-0000-c000-000000000000")
    assert grant.resource_id == graph.id

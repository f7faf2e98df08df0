"""The delegated permissions Microsoft's resources publish (their service principal's `oauth2PermissionScopes`), as
far as the simulator knows them: the permissions its world and the control panel use. See FIDELITY.md."""

from __future__ import annotations

from typing import Any

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
PARTNER_CENTER_APP_ID = "fa3d9a0c-3fb0-42cc-9193-47c7ecd2edbd"

# Microsoft Graph's delegated permissions by name, with their ids from Graph's table of permission ids
# (microsoftgraph/microsoft-graph-docs-contrib concepts/includes/permissions-ids.md, the "Delegated" rows). A subset:
# Graph publishes several hundred.
GRAPH_SCOPES: dict[str, str] = {
    "User.Read": "e1fe6dd8-ba31-4d61-89e7-88639da4683d",
    "User.Read.All": "a154be20-db9c-4678-8ab7-66f6cc099a59",
    "User.ReadWrite.All": "204e0828-b5ca-4ad8-b9f3-f32a958e7cc4",
    "Directory.Read.All": "06da0dbc-49e2-44d2-8312-53f166ab848a",
    "Directory.ReadWrite.All": "c5366453-9fb0-48a5-a156-24f0c49a4b84",
    "Directory.AccessAsUser.All": "0e263e50-5827-48a4-b97c-d940288653c7",
    "Domain.Read.All": "2f9ee017-59c1-4f1d-9472-bd5529a7b311",
    "Domain.ReadWrite.All": "0b5d694c-a244-4bde-86e6-eb5cd07730fe",
    "Group.Read.All": "5f8c59db-677d-491f-a6b8-5f174b11ec1d",
    "Group.ReadWrite.All": "4e46008b-f24c-477d-8fff-7bb4ec7aafe0",
    "GroupMember.Read.All": "bc024368-1153-4739-b217-4326f2e966d0",
    "RoleManagement.Read.Directory": "741c54c3-0c1e-44a1-818b-3f97ab4e8c83",
    "RoleManagement.ReadWrite.Directory": "d01b97e9-cbc0-49fe-810a-750afd5527a3",
    "DelegatedAdminRelationship.Read.All": "0c0064ea-477b-4130-82a5-4c2cc4ff68aa",
    "DelegatedAdminRelationship.ReadWrite.All": "885f682f-a990-4bad-a642-36736a74b0c7",
    "DelegatedPermissionGrant.ReadWrite.All": "41ce6ca6-6826-4807-84f1-1c82854f7ee5",
    "Application.Read.All": "c79f8feb-a9db-4090-85f9-90d820caa0eb",
    "Application.ReadWrite.All": "bdfbf15f-ee85-4955-8675-146e8e5296b5",
    "Organization.Read.All": "4908d5b9-3fb2-4b1e-9336-1888b7937185",
    "openid": "37f7f235-527c-4136-accd-4a02d197296e",
    "profile": "14dad69e-099b-42c9-810b-d002981feec1",
    "email": "64a6cdd6-aab1-4aaf-94b8-3cc8405e90d0",
    "offline_access": "7427e0e9-2fba-42fe-b0c0-848c9e6a8182",
}
PUBLISHED: dict[str, dict[str, str]] = {
    GRAPH_APP_ID: GRAPH_SCOPES,
    PARTNER_CENTER_APP_ID: {"user_impersonation": "1cebfa2a-fb4d-419e-b5f9-839b4383e05a"},
}


def scopes_json(app_id: str) -> list[dict[str, Any]]:
    """The `oauth2PermissionScopes` of the resource `app_id`'s service principal ([] for a resource not modelled)."""
    return [
        {
            "adminConsentDescription": None,
            "adminConsentDisplayName": None,
            "id": scope_id,
            "isEnabled": True,
            "type": "Admin" if name.endswith(".All") or "Directory" in name else "User",
            "userConsentDescription": None,
            "userConsentDisplayName": None,
            "value": name,
        }
        for name, scope_id in PUBLISHED.get(app_id.lower(), {}).items()
    ]

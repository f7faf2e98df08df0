"""The vendor's application objects in Microsoft Graph: `GET /v1.0/applications(appId='{appId}')` and
`GET /v1.0/applications/{id}`, read in the tenant the app is registered in. See FIDELITY.md ("Application
objects") for the sources."""

from __future__ import annotations

import base64
import datetime as dt
import re
import uuid
from typing import Any

from aiohttp import web
from cryptography import x509

from simulator.entra import SIM_KEY
from simulator.graph import _claims, _json, _not_found, graph_error
from simulator.requestlog import LOG_KEY
from simulator.state import Simulator
from simulator.world import GRAPH_RESOURCE, PARTNER_CENTER_RESOURCE, AppRegistration

# application-get-permissions.md: delegated Application.Read.All (least), Application.ReadWrite.All,
# Directory.Read.All; application Application.Read.All (least), Application.ReadWrite.OwnedBy,
# Application.ReadWrite.All.
DELEGATED_READ = frozenset({"Application.Read.All", "Application.ReadWrite.All", "Directory.Read.All"})
APPLICATION_READ = frozenset({"Application.Read.All", "Application.ReadWrite.OwnedBy", "Application.ReadWrite.All"})
_APP_ID_KEY = re.compile(r"^applications\(appId='([^']*)'\)$")
# Resource app ids (requiredResourceAccess names a resource by its appId).
RESOURCE_APP_IDS = {
    GRAPH_RESOURCE: "00000003-0000-0000-c000-000000000000",
    PARTNER_CENTER_RESOURCE: "fa3d9a0c-3fb0-42cc-9193-47c7ecd2edbd",
}
# The delegated permissions' ids, the same in every tenant: Graph's permissions reference, and Partner Center's
# "user_impersonation | 1cebfa2a-fb4d-419e-b5f9-839b4383e05a | Access Partner Center" table. A name not here gets
# an id derived from its name (GUESS: stable, and unlike any of Microsoft's).
SCOPE_IDS = {
    (PARTNER_CENTER_RESOURCE, "user_impersonation"): "1cebfa2a-fb4d-419e-b5f9-839b4383e05a",
    (GRAPH_RESOURCE, "User.Read"): "e1fe6dd8-ba31-4d61-89e7-88639da4683d",
    (GRAPH_RESOURCE, "RoleManagement.Read.Directory"): "741c54c3-0c1e-44a1-818b-3f97ab4e8c83",
    (GRAPH_RESOURCE, "DelegatedAdminRelationship.Read.All"): "0c0064ea-477b-4130-82a5-4c2cc4ff68aa",
    (GRAPH_RESOURCE, "GroupMember.Read.All"): "bc024368-1153-4739-b217-4326f2e966d0",
}


def scope_id(resource: str, name: str) -> str:
    return SCOPE_IDS.get((resource, name)) or str(uuid.uuid5(uuid.NAMESPACE_URL, f"{resource}/{name}"))


def object_id(app: AppRegistration) -> str:
    """The application object's id (distinct from its appId). GUESS: derived from the appId, stable."""
    return str(uuid.uuid5(uuid.NAMESPACE_OID, f"application:{app.client_id}"))


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def key_credentials_json(app: AppRegistration) -> list[dict[str, Any]]:
    """keyCredential: customKeyIdentifier "defaults to the thumbprint of the certificate" (Binary: base64 of the
    SHA-1 thumbprint), the certificate's validity as startDateTime/endDateTime, `key` null without `$select`."""
    shaped = []
    for cert in app.certificates:
        parsed = x509.load_pem_x509_certificate(cert.certificate_pem.encode())
        thumbprint = bytes.fromhex(cert.thumbprint)
        shaped.append(
            {
                "customKeyIdentifier": base64.b64encode(thumbprint).decode(),
                "displayName": parsed.subject.rfc4514_string(),
                "endDateTime": _iso(parsed.not_valid_after_utc),
                "key": None,
                "keyId": cert.key_id or str(uuid.uuid5(uuid.NAMESPACE_OID, cert.thumbprint_sha256)),
                "startDateTime": _iso(parsed.not_valid_before_utc),
                "type": "AsymmetricX509Cert",
                "usage": "Verify",
            }
        )
    return shaped


def application_json(sim: Simulator, app: AppRegistration) -> dict[str, Any]:
    """The application resource's properties the control panel reads (application.md), the rest as the get
    example shows them empty."""
    access = [
        {
            "resourceAppId": RESOURCE_APP_IDS.get(resource, resource),
            "resourceAccess": [{"id": scope_id(resource, name), "type": "Scope"} for name in names],
        }
        for resource, names in app.delegated_permissions.items()
    ]
    passwords = [
        {
            "customKeyIdentifier": None,
            "displayName": None,
            "endDateTime": _iso(dt.datetime.fromtimestamp(secret.expires_at, dt.UTC)),
            # "Contains the first three characters of the password."
            "hint": secret.value[:3],
            "keyId": secret.key_id,
            # "The generated password value is only returned during the initial POST request to addPassword."
            "secretText": None,
            "startDateTime": None,
        }
        for secret in app.secrets
    ]
    return {
        "@odata.context": f"{sim.urls.graph}/v1.0/$metadata#applications/$entity",
        "id": object_id(app),
        "deletedDateTime": None,
        "appId": app.client_id,
        "displayName": app.display_name,
        "groupMembershipClaims": app.group_membership_claims,
        "identifierUris": [],
        # signInAudience: AzureADMyOrg (single tenant) or AzureADMultipleOrgs (any Microsoft Entra tenant).
        "signInAudience": "AzureADMultipleOrgs" if app.multi_tenant else "AzureADMyOrg",
        "keyCredentials": key_credentials_json(app),
        "passwordCredentials": passwords,
        "requiredResourceAccess": access,
        "web": {
            "redirectUris": list(app.redirect_uris),
            "homePageUrl": None,
            "logoutUrl": None,
            "implicitGrantSettings": {"enableIdTokenIssuance": False, "enableAccessTokenIssuance": False},
        },
        "publicClient": {"redirectUris": []},
        "api": {"requestedAccessTokenVersion": None, "oauth2PermissionScopes": [], "preAuthorizedApplications": []},
        "appRoles": [],
        "tags": [],
    }


def _readable(request: web.Request) -> tuple[Simulator, list[AppRegistration]] | web.Response:
    """The applications the token may read: those registered in the token's tenant, once the token holds one of
    the permissions (a delegated `scp` or an application `roles`); else Graph's 401 or 403."""
    sim: Simulator = request.app[SIM_KEY]
    claims = _claims(request)
    if isinstance(claims, web.Response):
        return claims
    scopes = set(str(claims.get("scp", "")).split())
    roles = {str(role) for role in claims.get("roles") or []}
    if not (scopes & DELEGATED_READ or roles & APPLICATION_READ):
        return graph_error(
            request, 403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
        )
    # Application objects live in the tenant the app is registered in (the vendor's); elsewhere there are none.
    home = str(claims.get("tid", "")).lower() == sim.world.vendor.tenant_id.lower()
    return sim, sim.world.apps() if home else []


def _one(request: web.Request, sim: Simulator, app: AppRegistration) -> web.Response:
    request[LOG_KEY]["detail"]["items"] = 1
    return _json(request, application_json(sim, app))


async def handle_application_by_app_id(request: web.Request) -> web.Response:
    """`GET /applications(appId='{appId}')`."""
    found = _readable(request)
    if isinstance(found, web.Response):
        return found
    match = _APP_ID_KEY.match(request.match_info["key"])
    if match is None:
        return graph_error(
            request, 400, "BadRequest", f"Resource not found for the segment '{request.match_info['key']}'."
        )
    sim, apps = found
    app = next((a for a in apps if a.client_id.lower() == match.group(1).lower()), None)
    return _not_found(request, match.group(1)) if app is None else _one(request, sim, app)


async def handle_application(request: web.Request) -> web.Response:
    """`GET /applications/{id}` (the object id)."""
    found = _readable(request)
    if isinstance(found, web.Response):
        return found
    sim, apps = found
    key = request.match_info["object_id"].lower()
    app = next((a for a in apps if object_id(a) == key), None)
    return _not_found(request, key) if app is None else _one(request, sim, app)


def setup(app: web.Application) -> None:
    app.router.add_get(r"/v1.0/{key:applications\(.*\)}", handle_application_by_app_id)
    app.router.add_get("/v1.0/applications/{object_id}", handle_application)

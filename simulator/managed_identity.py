"""A host's managed identity endpoint, as Azure App Service serves it (IDENTITY_ENDPOINT and IDENTITY_HEADER), for the
user-assigned identities of the world, and the control calls that assign an identity and make an app registration
trust it (a federated identity credential). See FIDELITY.md ("A managed identity as the app's credential")."""

from __future__ import annotations

import hmac
import uuid
from typing import Any

from aiohttp import web

from simulator.clouds import GLOBAL, NATIONAL
from simulator.entra import SIM_KEY, _json, _uti
from simulator.state import Simulator
from simulator.world import FederatedIdentityCredential, ManagedIdentity

# overview-managed-identity.md (App Service): "Please use "2019-08-01" or later".
API_VERSION = "2019-08-01"
PATH = "/msi/token"
# workload-identity-federation-config-app-trust-managed-identity.md: the audience "depending on the target cloud".
EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
EXCHANGE_AUDIENCES = {
    GLOBAL: EXCHANGE_AUDIENCE,
    "usgov": "api://AzureADTokenExchangeUSGov",
    "china": "api://AzureADTokenExchangeChina",
}
# GUESS: how long a managed identity's token lasts (no page gives it for App Service).
LIFETIME = 24 * 3600


def identity_header(sim: Simulator) -> str:
    """The value of IDENTITY_HEADER this simulator's endpoint expects (one per simulator; a GUESS for its shape)."""
    return sim.identity_header


def _error(status: int, message: str) -> web.Response:
    # GUESS: the error body's shape (msal reads `statusCode` and `message` from it)
    return _json({"statusCode": status, "message": message}, status=status)


async def handle_token(request: web.Request) -> web.Response:
    """GET IDENTITY_ENDPOINT?resource=...&api-version=2019-08-01[&client_id=...] with X-IDENTITY-HEADER: the identity's
    token for `resource` (overview-managed-identity.md's request and response)."""
    sim: Simulator = request.app[SIM_KEY]
    if not hmac.compare_digest(request.headers.get("X-IDENTITY-HEADER", "").encode(), identity_header(sim).encode()):
        return _error(401, "The X-IDENTITY-HEADER header is missing or wrong.")
    if request.query.get("api-version") != API_VERSION:
        return _error(400, f"The api-version is not supported; use {API_VERSION}.")
    resource = request.query.get("resource", "")
    if not resource:
        return _error(400, "The resource parameter is required.")
    client_id = request.query.get("client_id", "").lower()
    principal_id = (request.query.get("principal_id") or request.query.get("object_id") or "").lower()
    identity = next(
        (
            m
            for m in sim.world.managed_identities
            if (client_id and m.client_id == client_id) or (principal_id and m.principal_id == principal_id)
        ),
        None,
    )
    if identity is None:
        # no system-assigned identity is modelled: a request naming none asks for one that does not exist
        return _error(400, "No managed identity is assigned to this host with the given identifier.")
    now = int(sim.clock.now())
    claims: dict[str, Any] = {
        # The federated identity credential's issuer is the tenant's v2.0 authority and its subject the identity's
        # object (principal) id, "checked against the issuer and subject claims provided in the Managed Identity
        # token" (workload-identity-federation-config-app-trust-managed-identity.md).
        "iss": f"{sim.authority}/{identity.tenant_id}/v2.0",
        "sub": identity.principal_id,
        "aud": resource,
        "oid": identity.principal_id,
        "tid": identity.tenant_id,
        "azp": identity.client_id,
        "iat": now,
        "nbf": now,
        "exp": now + LIFETIME,
        "ver": "2.0",
        "uti": _uti(),
    }
    token = sim.signer.sign(claims)
    sim.issued.add("access_token", token)
    return _json(
        {
            "access_token": token,
            "client_id": identity.client_id,
            "expires_on": str(claims["exp"]),
            "not_before": str(claims["nbf"]),
            "resource": resource,
            "token_type": "Bearer",
        }
    )


async def handle_create(request: web.Request) -> web.Response:
    """Control: assign a new user-assigned identity of the vendor's tenant to a host of `cloud` (global by default)
    and, for each app in `trust`, add a federated identity credential for it with that cloud's issuer and audience
    (`issuer`, `subject`, `audiences` override the right values, to make a wrong one). Returns the identity and the
    IDENTITY_ENDPOINT (that cloud's Entra listener) and IDENTITY_HEADER to reach it."""
    body = await request.json() if request.can_read_body else {}
    if not isinstance(body, dict):
        return web.json_response({"error": "a JSON object is expected"}, status=400)
    cloud = str(body.get("cloud") or GLOBAL)
    if cloud != GLOBAL and cloud not in NATIONAL:
        return web.json_response({"error": f"unknown cloud {cloud}"}, status=400)
    sim: Simulator = request.app[SIM_KEY].view(cloud)
    tenant_id = sim.world.vendor.tenant_id
    identity = ManagedIdentity(
        client_id=str(body.get("client_id") or uuid.uuid4()).lower(),
        principal_id=str(body.get("principal_id") or uuid.uuid4()).lower(),
        tenant_id=tenant_id,
    )
    trusted = []
    for app_id in body.get("trust", []):
        app = sim.world.app(str(app_id).lower())
        if app is None:
            return web.json_response({"error": f"no such app registration {app_id}"}, status=404)
        federated = FederatedIdentityCredential(
            name=str(body.get("name") or f"msi-{identity.client_id[:8]}"),
            issuer=str(body.get("issuer") or f"{sim.authority}/{tenant_id}/v2.0"),
            subject=str(body.get("subject") or identity.principal_id),
            audiences=[str(a) for a in body.get("audiences") or [EXCHANGE_AUDIENCES[cloud]]],
            id=str(uuid.uuid4()),
        )
        app.federated_credentials.append(federated)
        trusted.append(app.client_id)
    sim.world.managed_identities.append(identity)
    return web.json_response(
        {
            "client_id": identity.client_id,
            "principal_id": identity.principal_id,
            "tenant_id": identity.tenant_id,
            "trusted_by": trusted,
            "identity_endpoint": f"{sim.authority}{PATH}",
            "identity_header": identity_header(sim),
        }
    )


def setup(app: web.Application) -> None:
    app.router.add_get(PATH, handle_token)


def control_setup(app: web.Application, prefix: str) -> None:
    app.router.add_post(f"{prefix}/managed-identities", handle_create)

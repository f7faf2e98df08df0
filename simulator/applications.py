"""The vendor's application objects in Microsoft Graph: `GET /v1.0/applications(appId='{appId}')` and
`GET /v1.0/applications/{id}`, read in the tenant the app is registered in. See FIDELITY.md ("Application
objects") for the sources."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from typing import Any

import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from simulator.entra import SIM_KEY, _certificate_keys
from simulator.graph import _claims, _json, _not_found, app_id_key, graph_error
from simulator.published_scopes import GRAPH_APP_ID, PARTNER_CENTER_APP_ID, PUBLISHED
from simulator.requestlog import LOG_KEY
from simulator.state import Simulator
from simulator.world import GRAPH_RESOURCE, PARTNER_CENTER_RESOURCE, AppRegistration, ClientCertificate

# application-get-permissions.md: delegated Application.Read.All (least), Application.ReadWrite.All,
# Directory.Read.All; application Application.Read.All (least), Application.ReadWrite.OwnedBy,
# Application.ReadWrite.All.
DELEGATED_READ = frozenset({"Application.Read.All", "Application.ReadWrite.All", "Directory.Read.All"})
APPLICATION_READ = frozenset({"Application.Read.All", "Application.ReadWrite.OwnedBy", "Application.ReadWrite.All"})
# Resource app ids (requiredResourceAccess names a resource by its appId).
RESOURCE_APP_IDS = {
    GRAPH_RESOURCE: GRAPH_APP_ID,
    PARTNER_CENTER_RESOURCE: PARTNER_CENTER_APP_ID,
}


def scope_id(resource: str, name: str) -> str:
    """A delegated permission's id, the same in every tenant: the resource's published one (published_scopes.py),
    else one derived from its name (GUESS: stable, and unlike any of Microsoft's)."""
    published = PUBLISHED.get(RESOURCE_APP_IDS.get(resource, resource).lower(), {})
    return published.get(name) or str(uuid.uuid5(uuid.NAMESPACE_URL, f"{resource}/{name}"))


def object_id(app: AppRegistration) -> str:
    """The application object's id (distinct from its appId). GUESS: derived from the appId, stable."""
    return str(uuid.uuid5(uuid.NAMESPACE_OID, f"application:{app.client_id}"))


def key_id(cert: ClientCertificate) -> str:
    """A certificate's keyId: addKey's, or one derived from the thumbprint for a seeded certificate (GUESS)."""
    return cert.key_id or str(uuid.uuid5(uuid.NAMESPACE_OID, cert.thumbprint_sha256))


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def key_credentials_json(app: AppRegistration) -> list[dict[str, Any]]:
    """keyCredential: customKeyIdentifier "defaults to the thumbprint of the certificate" (Binary: base64 of the
    SHA-1 thumbprint), the certificate's validity as startDateTime/endDateTime, `key` null without `$select`."""
    shaped = []
    for cert in app.certificates:
        parsed = x509.load_pem_x509_certificate(cert.certificate_pem.encode())
        thumbprint = bytes.fromhex(cert.thumbprint)
        start, end = parsed.not_valid_before_utc, parsed.not_valid_after_utc
        if cert.valid_from is not None:
            start = max(start, dt.datetime.fromtimestamp(cert.valid_from, dt.UTC))
        if cert.valid_until is not None:
            end = min(end, dt.datetime.fromtimestamp(cert.valid_until, dt.UTC))
        shaped.append(
            {
                "customKeyIdentifier": base64.b64encode(thumbprint).decode(),
                "displayName": parsed.subject.rfc4514_string(),
                "endDateTime": _iso(end),
                "key": None,
                "keyId": key_id(cert),
                "startDateTime": _iso(start),
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


def _named(request: web.Request, apps: list[AppRegistration]) -> tuple[str, AppRegistration | None] | web.Response:
    """The application the path names among `apps`, by appId (`applications(appId='…')`) or object id, with the
    name as given (lower-cased); a malformed appId is Graph's error."""
    if "key" in request.match_info:
        key = app_id_key(request)
        if isinstance(key, web.Response):
            return key
        wanted = key.lower()
        return wanted, next((a for a in apps if a.client_id.lower() == wanted), None)
    wanted = request.match_info["object_id"].lower()
    return wanted, next((a for a in apps if object_id(a) == wanted), None)


def _one(request: web.Request, sim: Simulator, app: AppRegistration) -> web.Response:
    request[LOG_KEY]["detail"]["items"] = 1
    return _json(request, application_json(sim, app))


async def handle_application_by_app_id(request: web.Request) -> web.Response:
    """`GET /applications(appId='{appId}')`."""
    found = _readable(request)
    if isinstance(found, web.Response):
        return found
    wanted = app_id_key(request)
    if isinstance(wanted, web.Response):
        return wanted
    sim, apps = found
    app = next((a for a in apps if a.client_id.lower() == wanted.lower()), None)
    return _not_found(request, wanted) if app is None else _one(request, sim, app)


async def handle_application(request: web.Request) -> web.Response:
    """`GET /applications/{id}` (the object id)."""
    found = _readable(request)
    if isinstance(found, web.Response):
        return found
    sim, apps = found
    key = request.match_info["object_id"].lower()
    app = next((a for a in apps if object_id(a) == key), None)
    return _not_found(request, key) if app is None else _one(request, sim, app)


async def handle_federated_credentials(request: web.Request) -> web.Response:
    """`GET /applications/{id}/federatedIdentityCredentials` and `GET /applications(appId='{appId}')/
    federatedIdentityCredentials` (application-list-federatedidentitycredentials.md): the app's federated identity
    credentials (federatedidentitycredential.md's properties), read with the permissions its registration is read
    with."""
    found = _readable(request)
    if isinstance(found, web.Response):
        return found
    sim, apps = found
    named = _named(request, apps)
    if isinstance(named, web.Response):
        return named
    wanted, app = named
    if app is None:
        return _not_found(request, wanted)
    request[LOG_KEY]["detail"]["items"] = len(app.federated_credentials)
    return _json(
        request,
        {
            "@odata.context": f"{sim.urls.graph}/v1.0/$metadata#applications('{object_id(app)}')/"
            "federatedIdentityCredentials",
            "value": [
                {
                    "id": federated.id,
                    "name": federated.name,
                    "issuer": federated.issuer,
                    "subject": federated.subject,
                    "description": None,
                    "audiences": list(federated.audiences),
                }
                for federated in app.federated_credentials
            ],
        },
    )


def setup(app: web.Application) -> None:
    app.router.add_get(r"/v1.0/{key:applications\(.*\)}", handle_application_by_app_id)
    app.router.add_get("/v1.0/applications/{object_id}", handle_application)
    for path in (
        "/v1.0/applications/{object_id}/federatedIdentityCredentials",
        r"/v1.0/{key:applications\(appId='[^']*'\)}/federatedIdentityCredentials",
    ):
        app.router.add_get(path, handle_federated_credentials)
        app.router.add_get(path + "/", handle_federated_credentials)
    for action, handler in (("addKey", handle_add_key), ("removeKey", handle_remove_key)):
        app.router.add_post(f"/v1.0/applications/{{object_id}}/{action}", handler)
        app.router.add_post(rf"/v1.0/{{key:applications\(appId='[^']*'\)}}/{action}", handler)


# ----- addKey / removeKey: an application rolling its own certificates -----
# application-addkey.md: the proof's `aud` "needs to be `00000002-0000-0000-c000-000000000000`", its `iss` "the
# **id** of the application", `exp` "should be "nbf" + 10 mins"; signed "using the private key of one of the
# application's existing valid certificates".
PROOF_AUDIENCE = "00000002-0000-0000-c000-000000000000"
PROOF_LIFETIME = 600
WRITE_ROLES = frozenset({"Application.ReadWrite.OwnedBy", "Application.ReadWrite.All", "Directory.ReadWrite.All"})
WRITE_SCOPES = frozenset({"Application.ReadWrite.All", "Directory.ReadWrite.All"})


def _bad_request(request: web.Request, message: str) -> web.Response:
    # GUESS: the pages name no error for a malformed body; Graph's generic 400 is the simulator's choice
    return graph_error(request, 400, "Request_BadRequest", message)


def _bad_proof(request: web.Request, reason: str) -> web.Response:
    """A refused proof of possession: Authentication_MissingOrMalformed (application-rollkey-prooftoken.md names it
    for a padded proof; the simulator answers it for every refused proof). The status (401) is a GUESS; the
    message is the one reported for addKey; the simulator's reason goes to its request log only."""
    request[LOG_KEY]["detail"]["proof"] = reason
    return graph_error(request, 401, "Authentication_MissingOrMalformed", "Access Token missing or malformed.")


def _target(request: web.Request) -> tuple[Simulator, AppRegistration] | web.Response:
    """The application the call is made on, once the caller may change its keys: the application itself with an
    app-only token ("An application does not need any specific permission to roll its own keys"), or a token holding
    a write permission. A caller that is neither gets 403 whether or not the application exists, then an unknown
    application is a 404 (GUESS: the order of the two checks)."""
    sim: Simulator = request.app[SIM_KEY]
    claims = _claims(request)
    if isinstance(claims, web.Response):
        return claims
    home = str(claims.get("tid", "")).lower() == sim.world.vendor.tenant_id.lower()
    apps = sim.world.apps() if home else []
    named = _named(request, apps)
    if isinstance(named, web.Response):
        return named
    wanted, app = named
    # app-only: a token without a user (no `scp`); an App+User token of the application acts for its user
    app_only = "scp" not in claims
    itself = app is not None and app_only and str(claims.get("appid", "")).lower() == app.client_id.lower()
    scopes = set(str(claims.get("scp", "")).split())
    roles = {str(role) for role in claims.get("roles") or []}
    if not (itself or scopes & WRITE_SCOPES or roles & WRITE_ROLES):
        return graph_error(
            request, 403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
        )
    if app is None:
        return _not_found(request, wanted)
    return sim, app


def _padded(proof: str) -> bool:
    """Whether the JWT's header or payload carries base64 padding ("padding character '=' must not be included in
    the JWT header and payload")."""
    return any("=" in segment for segment in proof.split(".")[:2])


def _proof_error(sim: Simulator, app: AppRegistration, proof: Any) -> str | None:
    """Why the proof of possession fails, or None: an unpadded JWT signed by one of the app's certificates valid
    now (found by `x5t#S256` or `x5t`: GUESS), with `aud`, `iss` (the application's object id), and `nbf` and `exp`
    at most ten minutes apart (GUESS that both are required)."""
    if not isinstance(proof, str) or not proof:
        return "The proof of possession is missing."
    if _padded(proof):
        return "The proof of possession's header or payload carries '=' padding."
    now = sim.clock.now()
    try:
        header = jwt.get_unverified_header(proof)
    except jwt.PyJWTError:
        return "The proof of possession is not a JWT."
    sha256 = str(header.get("x5t#S256") or "").rstrip("=")
    sha1 = str(header.get("x5t") or "").rstrip("=")
    keys = [
        (public, valid_from, valid_until)
        for sha1_b64, sha256_b64, public, valid_from, valid_until in _certificate_keys(app)
        if (sha256 and sha256 == sha256_b64) or (not sha256 and sha1 and sha1 == sha1_b64)
    ]
    if not keys:
        return "The proof of possession is not signed by a certificate of the application."
    public, valid_from, valid_until = keys[0]
    if not valid_from <= now <= valid_until:
        return "The proof of possession is signed by a certificate that is not valid now."
    try:
        claims = jwt.decode(
            proof,
            public,
            algorithms=["RS256", "PS256"],
            audience=PROOF_AUDIENCE,
            issuer=object_id(app),
            options={"require": ["aud", "iss", "nbf", "exp"], "verify_exp": False, "verify_nbf": False},
        )
    except jwt.PyJWTError as exc:
        return f"The proof of possession is not valid ({exc.__class__.__name__})."
    nbf, exp = float(claims["nbf"]), float(claims["exp"])
    if nbf > now + 300 or exp < now - 300 or exp - nbf > PROOF_LIFETIME + 1:
        return "The proof of possession is outside its time range (exp must be nbf + 10 minutes)."
    return None


def _when(value: Any) -> float | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


async def _key_call(request: web.Request) -> tuple[Simulator, AppRegistration, dict[str, Any]] | web.Response:
    """The application a key call is made on and its JSON body, once the caller may change its keys and the proof
    of possession holds."""
    found = _target(request)
    if isinstance(found, web.Response):
        return found
    sim, app = found
    try:
        body = await request.json()
    except ValueError:
        return _bad_request(request, "The request body is not JSON.")
    if not isinstance(body, dict):
        return _bad_request(request, "The request body is not a JSON object.")
    problem = _proof_error(sim, app, body.get("proof"))
    return _bad_proof(request, problem) if problem is not None else (sim, app, body)


async def handle_add_key(request: web.Request) -> web.Response:
    """`POST /applications/{id}/addKey`: `keyCredential` (`type` AsymmetricX509Cert, `usage` Verify, `key` the
    certificate's DER in base64; optional `startDateTime`/`endDateTime`), `proof`; 200 with the new keyCredential."""
    found = await _key_call(request)
    if isinstance(found, web.Response):
        return found
    sim, app, body = found
    credential = body.get("keyCredential")
    if not isinstance(credential, dict):
        return _bad_request(request, "keyCredential is required.")
    if credential.get("type") != "AsymmetricX509Cert" or credential.get("usage") != "Verify":
        return _bad_request(request, "Only type AsymmetricX509Cert with usage Verify is supported.")
    try:
        der = base64.b64decode(str(credential.get("key") or ""), validate=True)
        parsed = x509.load_der_x509_certificate(der)
    except (binascii.Error, ValueError):
        return _bad_request(request, "keyCredential.key is not a base64 X.509 certificate.")
    pem = parsed.public_bytes(serialization.Encoding.PEM).decode()
    added = ClientCertificate(
        certificate_pem=pem,
        key_id=str(uuid.uuid4()),
        valid_from=_when(credential.get("startDateTime")),
        valid_until=_when(credential.get("endDateTime")),
    )
    app.certificates.append(added)
    request[LOG_KEY]["detail"]["key_id"] = added.key_id
    shaped = next(k for k in key_credentials_json(app) if k["keyId"] == added.key_id)
    context = f"{sim.urls.graph}/v1.0/$metadata#microsoft.graph.keyCredential"
    return _json(request, {"@odata.context": context, **shaped})


async def handle_remove_key(request: web.Request) -> web.Response:
    """`POST /applications/{id}/removeKey`: `keyId`, `proof`; 204."""
    found = await _key_call(request)
    if isinstance(found, web.Response):
        return found
    _, app, body = found
    wanted = str(body.get("keyId", "")).lower()
    kept = [c for c in app.certificates if key_id(c).lower() != wanted]
    if len(kept) == len(app.certificates):
        # GUESS: a keyId the application does not hold
        return _not_found(request, wanted)
    app.certificates[:] = kept
    request[LOG_KEY]["detail"]["key_id"] = wanted
    return web.Response(status=204)

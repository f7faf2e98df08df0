"""Simulated Microsoft Entra ID (v2.0 endpoints): discovery, JWKS, sign-in page, token endpoint."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import html
import json
import logging
import random
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from simulator import grants
from simulator.bearer import opaque_key
from simulator.clouds import CLOUDS, GLOBAL
from simulator.entra_errors import error_body
from simulator.requestlog import LOG_KEY
from simulator.state import (
    CODE_LIFETIME,
    REFRESH_TOKEN_INACTIVITY,
    RESOURCE_APP_IDS,
    CodeGrant,
    PendingAuthorization,
    RefreshGrant,
    Simulator,
)
from simulator.tokens import CANARY, TokenInvalid, b64url, b64url_decode, fingerprint, new_opaque
from simulator.world import (
    GLOBAL_ADMIN_ROLE_ID,
    GRAPH_RESOURCE,
    PARTNER_CENTER_RESOURCE,
    USER_ROLE_ID,
    VAULT_RESOURCE,
    AppRegistration,
    Home,
    Partner,
    User,
    Vendor,
)

logger = logging.getLogger(__name__)

SIM_KEY: web.AppKey[Simulator] = web.AppKey("simulator", Simulator)
GENERIC_TENANTS = frozenset({"common", "organizations"})
OIDC_SCOPES = grants.OIDC_SCOPES
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
PENDING_LIFETIME = 3600
ID_TOKEN_REUSE = 60
_PKCE_RE = re.compile(r"^[A-Za-z0-9_\-]{43,128}$")
_RESOURCE_NAMES = {
    PARTNER_CENTER_RESOURCE: "Microsoft Partner Center",
    GRAPH_RESOURCE: "Microsoft Graph",
    VAULT_RESOURCE: "Azure Key Vault",
}
_SCOPE_TEXT = {
    "openid": "Sign you in",
    "profile": "View your basic profile",
    "email": "View your email address",
    "offline_access": "Maintain access to data you have given it access to",
    "user_impersonation": "Access the service as you",
    "User.Read": "Sign you in and read your profile",
    "RoleManagement.Read.Directory": "Read role management data for your company's directory",
    "DelegatedAdminRelationship.Read.All": "Read Delegated Admin relationships with customers",
    "Directory.AccessAsUser.All": "Access the directory as you",
}


class EntraFailure(Exception):
    """An Entra error answer: AADSTS code plus the fields its message names."""

    def __init__(self, code: int, **fields: Any) -> None:
        super().__init__(f"AADSTS{code}")
        self.code = code
        self.fields = fields


@dataclass
class Unsigned:
    """Claims of a JWT to sign once the handler's synchronous work is done (see `_sign_pending`)."""

    claims: dict[str, Any]
    kind: str
    cache_key: tuple[Any, ...] | None = None
    now: float = 0.0


@dataclass
class Scopes:
    resources: dict[str, list[str]]
    oidc: set[str]
    raw: str


# ----- helpers -----
def _sim(request: web.Request) -> Simulator:
    return request.app[SIM_KEY]


def _detail(request: web.Request) -> dict[str, Any]:
    entry = request.get(LOG_KEY)
    return entry["detail"] if entry is not None else {}


def tenant_elsewhere(sim: Simulator, segment: str) -> str | None:
    """The cloud a tenant of another cloud than this one lives in, else None."""
    found = sim.world.tenant(segment.lower()) if segment.lower() not in GENERIC_TENANTS else None
    if found is None:
        return None
    cloud = sim.world.tenant_cloud(*found)
    return cloud if cloud != sim.cloud else None


def cross_cloud_failure(sim: Simulator, segment: str, *, confidential: bool) -> EntraFailure:
    """Entra's answer for a tenant it does not serve: a US Government tenant at the global authority is known there
    (AADSTS900432 for a confidential client's token request, AADSTS900439 for a sign-in); any other tenant of another
    cloud is not found (AADSTS90002: "Often, this is because a cross-cloud app was used against the wrong cloud";
    GUESS over AADSTS90038 NationalCloudTenantRedirection)."""
    if sim.cloud == GLOBAL and tenant_elsewhere(sim, segment) == "usgov":
        return EntraFailure(900432 if confidential else 900439)
    return EntraFailure(90002, tenant=segment)


def resolve_tenant(sim: Simulator, segment: str) -> tuple[str, str | None]:
    """("common"/"organizations"/"vendor"/"partner"/"customer", tenant id) or ("unknown", None)."""
    lowered = segment.lower()
    if lowered in GENERIC_TENANTS:
        return lowered, None
    found = sim.world.tenant(lowered)
    if found is None:
        return "unknown", None
    kind, obj = found
    if not sim.tenant_here(kind, obj):
        # "All the national clouds authenticate users separately in each environment": another cloud's tenant is
        # unknown here
        return "unknown", None
    return kind, obj.tenant_id


def _another_clouds_resource(sim: Simulator, identifier: str) -> bool:
    """Whether `identifier` is the resource identifier of Graph or Partner Center in another cloud than this one."""
    wanted = identifier.rstrip("/").lower()
    return (
        any(
            wanted in {own.lower() for own in cloud.resource_identifiers()}
            for name, cloud in CLOUDS.items()
            if name != sim.cloud
        )
        and sim.canonical_resource(wanted) is None
    )


def parse_scopes(sim: Simulator, raw: str, *, tenant: str = "common") -> Scopes:
    resources: dict[str, list[str]] = {}
    oidc: set[str] = set()
    for item in raw.split():
        if item.lower() in OIDC_SCOPES:
            oidc.add(item.lower())
            continue
        if "/" in item:
            resource_part, _, permission = item.rpartition("/")
            resource = sim.canonical_resource(resource_part)
            if resource is None and permission and _another_clouds_resource(sim, resource_part):
                # another cloud's Graph or Partner Center has no service principal in this cloud: "Any permission
                # scope value ... that contains the Microsoft Graph domain MUST use the domain of the Microsoft Graph
                # service root endpoint for the national cloud deployment"; the answer is Entra's for a resource it
                # does not know, "The resource principal named {name} was not found in the tenant named {tenant}"
                raise EntraFailure(500011, resource=resource_part, tenant=tenant)
            if resource is None or not permission:
                raise EntraFailure(70011, scope=item)
        else:
            resource, permission = GRAPH_RESOURCE, item
        perms = resources.setdefault(resource, [])
        if permission not in perms:
            perms.append(permission)
    if any(".default" in perms for perms in resources.values()) and any(
        p != ".default" for perms in resources.values() for p in perms
    ):
        # "Clients can't combine static (.default) consent and dynamic consent in a single request"
        raise EntraFailure(70011, scope=raw)
    return Scopes(resources=resources, oidc=oidc, raw=raw)


def _pairwise_sub(oid: str, client_id: str) -> str:
    return b64url(hashlib.sha256(f"{oid}:{client_id}".encode()).digest()[:24])


def _service_principal_oid(client_id: str, tid: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sp:{client_id}:{tid}"))


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=json.dumps(body, separators=(",", ":")),
        status=status,
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


def entra_error_response(
    request: web.Request, code: int, *, retry_after: str | None = None, **fields: Any
) -> web.Response:
    sim = _sim(request)
    correlation = request.headers.get("client-request-id")
    status, body = error_body(code, now=sim.clock.now(), correlation_id=correlation, authority=sim.authority, **fields)
    detail = _detail(request)
    detail["error"] = body["error"]
    detail["error_code"] = code
    headers = {
        "Cache-Control": "no-store, no-cache",
        "Pragma": "no-cache",
        "x-ms-request-id": body["trace_id"],
    }
    if correlation:
        headers["client-request-id"] = correlation
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    elif status in (429, 503):
        headers["Retry-After"] = "1"
    return _json(body, status=status, headers=headers)


# ----- discovery -----
def openid_configuration(sim: Simulator, segment: str, tid: str | None) -> dict[str, Any]:
    host = sim.authority
    base = tid or segment.lower()
    issuer = f"{host}/{tid}/v2.0" if tid else f"{host}/{{tenantid}}/v2.0"
    return {
        "token_endpoint": f"{host}/{base}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "jwks_uri": f"{host}/{base}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": issuer,
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": f"{sim.urls.graph}/oidc/userinfo",
        "authorization_endpoint": f"{host}/{base}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{host}/{base}/oauth2/v2.0/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{host}/{base}/oauth2/v2.0/logout",
        "claims_supported": [
            "sub",
            "iss",
            "cloud_instance_name",
            "cloud_instance_host_name",
            "cloud_graph_host_name",
            "msgraph_host",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "acr",
            "nonce",
            "preferred_username",
            "name",
            "tid",
            "ver",
            "at_hash",
            "c_hash",
            "email",
        ],
        "kerberos_endpoint": f"{host}/{base}/kerberos",
        "tenant_region_scope": sim.national.region_scope if tid else None,
        "cloud_instance_name": sim.national.instance_name,
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": sim.urls.graph.split("://", 1)[-1],
        "rbac_url": "https://pas.windows.net",
    }


async def handle_openid_configuration(request: web.Request) -> web.Response:
    sim = _sim(request)
    segment = request.match_info["tenant"]
    kind, tid = resolve_tenant(sim, segment)
    if kind == "unknown" and sim.cloud == GLOBAL and tenant_elsewhere(sim, segment) == "usgov":
        # b2b-government-national-clouds.md reads a US Government tenant's document at login.microsoftonline.com
        # ("tenant_region_scope":"USGOV"); that the rest is the global cloud's document (its endpoints, where a
        # confidential client then meets AADSTS900432) is a GUESS
        found = sim.world.tenant(segment.lower())
        document = openid_configuration(sim, segment, found[1].tenant_id if found else None)
        return _json({**document, "tenant_region_scope": CLOUDS["usgov"].region_scope})
    if kind == "unknown":
        return entra_error_response(request, 90002, tenant=segment)
    return _json(openid_configuration(sim, segment, tid))


async def handle_keys(request: web.Request) -> web.Response:
    sim = _sim(request)
    segment = request.match_info.get("tenant", "common")
    kind, tid = resolve_tenant(sim, segment)
    if kind == "unknown":
        return entra_error_response(request, 90002, tenant=segment)
    issuer = f"{sim.authority}/{tid}/v2.0" if tid else f"{sim.authority}/{{tenantid}}/v2.0"
    return _json(sim.signer.jwks(issuer), headers={"Cache-Control": "max-age=86400, private"})


async def handle_instance_discovery(request: web.Request) -> web.Response:
    sim = _sim(request)
    host = sim.authority.split("://", 1)[-1]
    endpoint = request.query.get("authorization_endpoint", f"{sim.authority}/common/oauth2/v2.0/authorize")
    tenant = endpoint.split("://", 1)[-1].split("/")[1] if "/" in endpoint.split("://", 1)[-1] else "common"
    return _json(
        {
            "tenant_discovery_endpoint": f"{sim.authority}/{tenant}/v2.0/.well-known/openid-configuration",
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
        }
    )


# ----- sign-in page -----
_PAGE_STYLE = (
    "body{font-family:Segoe UI,Helvetica,Arial,sans-serif;background:#f2f2f2;margin:0}"
    "main{max-width:440px;margin:40px auto;background:#fff;padding:36px 44px;"
    "box-shadow:0 2px 6px rgba(0,0,0,.2)}"
    "h1{font-size:24px;font-weight:600;margin:0 0 8px}p.sub{margin:0 0 16px;color:#444}"
    "fieldset{border:0;padding:0;margin:0 0 16px}legend{font-weight:600;margin-bottom:8px}"
    "label.acct{display:block;padding:8px;border:1px solid #ddd;margin:4px 0;cursor:pointer}"
    "label.acct small{display:block;color:#666}ul{padding-left:20px}"
    "button{padding:8px 20px;margin-right:8px;border:1px solid #0067b8;font-size:15px}"
    "button.primary{background:#0067b8;color:#fff}button.secondary{background:#fff;color:#0067b8}"
    ".error{color:#a80000}.sim{font-size:12px;color:#888;margin-top:24px}"
    "input[type=text]{width:100%;padding:6px;box-sizing:border-box}"
)


def _page(title: str, body: str, *, status: int = 200, script_nonce: str | None = None) -> web.Response:
    script_src = f"'nonce-{script_nonce}'" if script_nonce else "'none'"
    csp = (
        f"default-src 'none'; style-src 'unsafe-inline'; script-src {script_src}; form-action *; frame-ancestors 'none'"
    )
    document = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_PAGE_STYLE}</style></head><body><main>{body}"
        '<p class="sim">Simulated Microsoft sign-in (local test double).</p></main></body></html>'
    )
    return web.Response(
        text=document,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers={
            "Content-Security-Policy": csp,
            "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY",
            "Cache-Control": "no-store",
        },
    )


def error_page(request: web.Request, code: int, **fields: Any) -> web.Response:
    sim = _sim(request)
    _, body = error_body(code, now=sim.clock.now(), authority=sim.authority, **fields)
    detail = _detail(request)
    detail["error"] = body["error"]
    detail["error_code"] = code
    text = (
        "<h1>Sorry, but we're having trouble signing you in.</h1>"
        f'<p class="error" id="error-code">AADSTS{code}</p>'
        f'<p id="error-description">{html.escape(body["error_description"])}</p>'
    )
    return _page("Sign in error", text, status=400)


def _redirect_with(
    redirect_uri: str, response_mode: str, params: dict[str, str], *, title: str = "Working..."
) -> web.Response:
    if response_mode == "form_post":
        nonce = secrets.token_urlsafe(16)
        inputs = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in params.items()
        )
        body = (
            f"<h1>{html.escape(title)}</h1>"
            f'<form method="post" id="response" action="{html.escape(redirect_uri)}">'
            f"{inputs}<noscript><p>Script is disabled. Click Continue.</p></noscript>"
            '<button class="primary" type="submit">Continue</button></form>'
            f'<script nonce="{nonce}">document.getElementById("response").submit();</script>'
        )
        return _page(title, body, script_nonce=nonce)
    separator = "#" if response_mode == "fragment" else ("&" if "?" in redirect_uri else "?")
    return web.Response(
        status=302,
        headers={"Location": f"{redirect_uri}{separator}{urlencode(params)}", "Cache-Control": "no-store"},
    )


def _redirect_error(
    sim: Simulator,
    request: web.Request,
    redirect_uri: str,
    response_mode: str,
    state: str | None,
    code: int,
    **fields: Any,
) -> web.Response:
    _, body = error_body(code, now=sim.clock.now(), authority=sim.authority, **fields)
    detail = _detail(request)
    detail["error"] = body["error"]
    detail["error_code"] = code
    params = {
        "error": body["error"],
        "error_description": body["error_description"],
        "error_uri": body["error_uri"],
    }
    if state is not None:
        params["state"] = state
    return _redirect_with(redirect_uri, response_mode, params)


def _users_for(sim: Simulator, kind: str, tid: str | None) -> list[tuple[User, Home]]:
    if kind in GENERIC_TENANTS:
        # any work account of this cloud: the partners' users, then the vendor's own staff
        homes: list[Home] = [*sim.world.partners, sim.world.vendor]
        here = [h for h in homes if sim.tenant_here("vendor" if h is sim.world.vendor else "partner", h)]
        return [(u, home) for home in here for u in home.users if u.enabled]
    if kind == "partner" and tid:
        partner = sim.world.partner(tid)
        return [(u, partner) for u in partner.users if u.enabled] if partner else []
    if kind == "vendor":
        # the vendor's own tenant: its staff sign in to the vendor's apps (single-tenant sign-in)
        vendor = sim.world.vendor
        return [(u, vendor) for u in vendor.users if u.enabled]
    return []


def _permission_lines(consented: grants.Grants) -> list[str]:
    """The sign-in page's "Permissions requested": what accepting consents to, the OIDC scopes last."""
    lines = []
    for resource, names in consented.items():
        name = _RESOURCE_NAMES.get(resource, resource)
        restricted = grants.ADMIN_CONSENT_REQUIRED.get(resource, frozenset())
        for perm in sorted(names, key=str.lower):
            if resource == GRAPH_RESOURCE and perm in OIDC_SCOPES:
                continue
            note = " - only an administrator can consent" if perm in restricted else ""
            lines.append(f"{_SCOPE_TEXT.get(perm, perm)} ({name}: {perm}){note}")
    for scope in ("openid", "profile", "email", "offline_access"):
        if scope in consented.get(GRAPH_RESOURCE, set()):
            lines.append(f"{_SCOPE_TEXT[scope]} ({scope})")
    return lines


def _consent_plan(
    sim: Simulator, app: AppRegistration, scope_raw: str, prompt: str | None, tid: str | None
) -> tuple[grants.Grants, list[str], dict[str, set[str]]]:
    """What a sign-in of a user of tenant `tid` (None: not known yet) would consent to, the `.default` resources
    nothing covers, and what the tenant already granted the app."""
    scopes = parse_scopes(sim, scope_raw)
    existing = sim.entra.grants.get((tid, app.client_id), {}) if tid else {}
    consented, unlisted = grants.plan(
        registration=app.delegated_permissions,
        requested=scopes.resources,
        oidc=scopes.oidc,
        existing=existing,
        prompt_consent=prompt == "consent",
    )
    return consented, unlisted, existing


def consent_at_sign_in(
    sim: Simulator, *, app: AppRegistration, user: User, home: Home, scope_raw: str, prompt: str | None
) -> None:
    """Record what the user's acceptance consents to, in their home tenant, for the app.

    Raises EntraFailure: 650057 when `.default` names a resource that neither the registration lists nor any grant
    covers; 90094 when a user who is not an administrator would consent to an admin-restricted permission
    (nothing is recorded then)."""
    consented, unlisted, existing = _consent_plan(sim, app, scope_raw, prompt, home.tenant_id)
    if unlisted:
        raise EntraFailure(
            650057,
            client_id=app.client_id,
            app_name=app.display_name,
            resource=unlisted[0],
            resource_app_id=RESOURCE_APP_IDS.get(unlisted[0], unlisted[0]),
            registered=", ".join(RESOURCE_APP_IDS.get(r, r) for r in app.delegated_permissions),
        )
    if not user.global_admin:
        needed = grants.needing_an_administrator(consented, existing, prompt_consent=prompt == "consent")
        if needed:
            raise EntraFailure(90094, app_name=app.display_name, permissions=", ".join(needed))
    grants.record(sim.entra.grants.setdefault((home.tenant_id, app.client_id), {}), consented)


def _sign_in_page(
    sim: Simulator,
    request: web.Request,
    pending: PendingAuthorization,
    kind: str,
    *,
    message: str | None = None,
) -> web.Response:
    app = sim.app_here(pending.client_id)
    if app is None:
        return error_page(request, 700016, client_id=pending.client_id, tenant=pending.tenant)
    users = _users_for(sim, kind, pending.tid)
    consented, _, _ = _consent_plan(sim, app, pending.scope, pending.prompt, pending.tid)
    hint = (pending.login_hint or "").lower()
    accounts = []
    for index, (user, partner) in enumerate(users):
        checked = " checked" if user.upn.lower() == hint or (not hint and index == 0) else ""
        accounts.append(
            f'<label class="acct"><input type="radio" name="user" value="{html.escape(user.oid)}"'
            f' data-upn="{html.escape(user.upn)}"{checked} required> {html.escape(user.display_name)}'
            f"<small>{html.escape(user.upn)} &middot; {html.escape(partner.name)}</small></label>"
        )
    if not accounts:
        accounts.append("<p>No account of this organisation can sign in here.</p>")
    permissions = "".join(f"<li>{html.escape(line)}</li>" for line in _permission_lines(consented))
    action = f"/{html.escape(pending.tenant)}/oauth2/v2.0/authorize"
    error = f'<p class="error" role="alert">{html.escape(message)}</p>' if message else ""
    body = (
        "<h1>Sign in</h1>"
        f'<p class="sub">to continue to <strong id="app-name">{html.escape(app.display_name)}</strong></p>'
        f'{error}<form method="post" action="{action}">'
        f'<input type="hidden" name="txn" value="{html.escape(pending.txn)}">'
        f"<fieldset><legend>Pick an account</legend>{''.join(accounts)}</fieldset>"
        "<p><label>or type a user name<br>"
        '<input type="text" name="username" autocomplete="username"></label></p>'
        f"<section><h2>Permissions requested</h2><p><strong>{html.escape(app.display_name)}</strong>"
        f" (published by {html.escape(app.publisher)}) wants to:</p>"
        f'<ul id="permissions">{permissions}</ul></section>'
        '<button class="primary" type="submit" name="action" value="accept" id="accept">Accept</button>'
        '<button class="secondary" type="submit" name="action" value="cancel" id="cancel" formnovalidate>'
        "Cancel</button></form>"
    )
    return _page("Sign in to your account", body)


async def handle_authorize_get(request: web.Request) -> web.Response:
    sim = _sim(request)
    query = request.query
    segment = request.match_info["tenant"]
    detail = _detail(request)
    kind, tid = resolve_tenant(sim, segment)
    client_id = query.get("client_id", "")
    detail["client_id"] = client_id
    if kind == "unknown":
        # a sign-in: a US Government user at the public endpoint is AADSTS900439
        failure = cross_cloud_failure(sim, segment, confidential=False)
        return error_page(request, failure.code, **failure.fields)
    if not client_id:
        return error_page(request, 900144, param="client_id")
    app = sim.app_here(client_id)
    if app is None:
        return error_page(request, 700016, client_id=client_id, tenant=segment)
    redirect_uri = query.get("redirect_uri", "")
    if not redirect_uri or redirect_uri not in app.redirect_uris:
        # never redirect to an unregistered address: Entra shows an error page
        return error_page(request, 50011, redirect_uri=redirect_uri, client_id=client_id)
    state = query.get("state")
    response_mode = query.get("response_mode", "query")
    if response_mode not in ("query", "fragment", "form_post"):
        return _redirect_error(sim, request, redirect_uri, "query", state, 900144, param="response_mode")
    if query.get("response_type") != "code":
        return _redirect_error(sim, request, redirect_uri, response_mode, state, 900144, param="response_type (code)")
    scope = query.get("scope", "")
    if not scope.strip():
        return _redirect_error(sim, request, redirect_uri, response_mode, state, 900144, param="scope")
    try:
        parse_scopes(sim, scope, tenant=segment)
    except EntraFailure as failure:
        return _redirect_error(sim, request, redirect_uri, response_mode, state, failure.code, **failure.fields)
    challenge = query.get("code_challenge")
    method = query.get("code_challenge_method", "plain" if challenge else None)
    if challenge is None and sim.settings.require_pkce:
        return _redirect_error(
            sim,
            request,
            redirect_uri,
            response_mode,
            state,
            900144,
            param="code_challenge (PKCE is required)",
        )
    if challenge is not None and (method != "S256" or not _PKCE_RE.match(challenge)):
        return _redirect_error(
            sim,
            request,
            redirect_uri,
            response_mode,
            state,
            900144,
            param="code_challenge_method=S256 with a valid code_challenge ('plain' is refused)",
        )
    if query.get("prompt") == "none":
        return _redirect_error(sim, request, redirect_uri, response_mode, state, 50058)
    claims = query.get("claims")
    if claims is not None and requested_acrs(claims) is None:
        return _redirect_error(sim, request, redirect_uri, response_mode, state, 90100, param="claims")
    pending = PendingAuthorization(
        txn=secrets.token_urlsafe(24),
        tenant=segment,
        tid=tid,
        client_id=client_id,
        redirect_uri=redirect_uri,
        response_mode=response_mode,
        scope=scope,
        state=state,
        nonce=query.get("nonce"),
        code_challenge=challenge,
        login_hint=query.get("login_hint"),
        created_at=sim.clock.now(),
        prompt=query.get("prompt"),
        claims=claims,
    )
    sim.entra.pending[pending.txn] = pending
    return _sign_in_page(sim, request, pending, kind)


async def handle_authorize_post(request: web.Request) -> web.Response:
    sim = _sim(request)
    form = await request.post()
    txn = str(form.get("txn", ""))
    pending = sim.entra.pending.pop(txn, None)
    if pending is None or sim.clock.now() - pending.created_at > PENDING_LIFETIME:
        return error_page(request, 9002313)
    detail = _detail(request)
    detail["client_id"] = pending.client_id
    kind, _ = resolve_tenant(sim, pending.tenant)
    if form.get("action") != "accept":
        detail["decision"] = "cancel"
        return _redirect_error(sim, request, pending.redirect_uri, pending.response_mode, pending.state, 65004)
    username = str(form.get("username", "")).strip()
    allowed = {u.oid: (u, p) for u, p in _users_for(sim, kind, pending.tid)}
    chosen: tuple[User, Home] | None = None
    if username:
        found = sim.world.user(username)
        if found and found[0].oid in allowed:
            chosen = found
    else:
        chosen = allowed.get(str(form.get("user", "")))
    if chosen is None:
        sim.entra.pending[pending.txn] = pending
        return _sign_in_page(sim, request, pending, kind, message="We couldn't find an account with that user name.")
    user, partner = chosen
    detail["user"] = user.oid
    detail["tid"] = partner.tenant_id
    app = sim.app_here(pending.client_id)
    if app is None:
        return error_page(request, 700016, client_id=pending.client_id, tenant=pending.tenant)
    try:
        consent_at_sign_in(sim, app=app, user=user, home=partner, scope_raw=pending.scope, prompt=pending.prompt)
    except EntraFailure as failure:
        # Entra's consent page tells the user, and goes no further (application-consent-experience.md)
        detail["decision"] = "refused"
        return error_page(request, failure.code, **failure.fields)
    detail["decision"] = "accept"
    now = sim.clock.now()
    code = new_opaque("code")
    sim.issued.add("authorization_code", code)
    sim.entra.codes[code] = CodeGrant(
        id=sim.next_grant_id("code"),
        client_id=pending.client_id,
        redirect_uri=pending.redirect_uri,
        scope=pending.scope,
        nonce=pending.nonce,
        code_challenge=pending.code_challenge,
        user_oid=user.oid,
        tid=partner.tenant_id,
        amr=["pwd", "mfa"] if user.mfa_registered else ["pwd"],
        issued_at=now,
        expires_at=now + CODE_LIFETIME,
        claims=pending.claims,
    )
    params = {"code": code}
    if pending.state is not None:
        params["state"] = pending.state
    params["session_state"] = str(uuid.uuid4())
    return _redirect_with(pending.redirect_uri, pending.response_mode, params)


# ----- token endpoint -----
_cert_keys: dict[str, tuple[str, str, RSAPublicKey, float, float]] = {}


def _certificate_keys(app: AppRegistration) -> list[tuple[str, str, RSAPublicKey, float, float]]:
    """(sha1 b64url, sha256 b64url, public key, valid from, valid until) for each registered certificate, parsed
    once."""
    keys = []
    for cert in app.certificates:
        cached = _cert_keys.get(cert.certificate_pem)
        if cached is None:
            parsed = x509.load_pem_x509_certificate(cert.certificate_pem.encode())
            public = parsed.public_key()
            if not isinstance(public, RSAPublicKey):
                continue
            cached = (
                b64url(bytes.fromhex(cert.thumbprint)),
                b64url(bytes.fromhex(cert.thumbprint_sha256)),
                public,
                parsed.not_valid_before_utc.timestamp(),
                parsed.not_valid_after_utc.timestamp(),
            )
            _cert_keys[cert.certificate_pem] = cached
        # a keyCredential's own dates (addKey's startDateTime/endDateTime) narrow the certificate's
        valid_from = max(cached[3], cert.valid_from) if cert.valid_from is not None else cached[3]
        valid_until = min(cached[4], cert.valid_until) if cert.valid_until is not None else cached[4]
        keys.append((cached[0], cached[1], cached[2], valid_from, valid_until))
    return keys


_assertion_cache: dict[str, tuple[str, float]] = {}


def _verify_federated(sim: Simulator, assertion: str, claims: dict[str, Any], app: AppRegistration) -> None:
    """An assertion another issuer signed (a managed identity's token): accepted when one of the app's federated
    identity credentials names its issuer, subject and audience exactly, its signature is the issuer's and it has not
    expired. Raises EntraFailure: 70021 (no matching record), 700027 (signature), 700024 (lifetime)."""
    issuer = str(claims.get("iss", ""))
    subject = str(claims.get("sub", ""))
    audiences = claims.get("aud")
    audiences = [audiences] if isinstance(audiences, str) else [str(a) for a in audiences or []]
    # Exact, case-sensitive comparisons (workload-identity-federation-config-app-trust-managed-identity.md: the
    # subject is "case-sensitive" and must "exactly match"); the issuer and audience are compared the same way (GUESS).
    if not any(
        federated.issuer == issuer and federated.subject == subject and set(audiences) & set(federated.audiences)
        for federated in app.federated_credentials
    ):
        raise EntraFailure(70021, issuer=issuer, subject=subject, audience=",".join(audiences))
    # The simulator knows one issuer's keys: its own Entra ID's (a tenant's v2.0 authority) and only for the
    # identities of this cloud.
    if not (issuer.startswith(f"{sim.authority}/") and issuer.endswith("/v2.0")):
        raise EntraFailure(
            700027, client_id=app.client_id, reason="The issuer's signing keys are unknown.", thumbprint=""
        )
    try:
        sim.signer.verify(assertion)
    except TokenInvalid as exc:
        raise EntraFailure(
            700027, client_id=app.client_id, reason="Signature validation failed.", thumbprint=""
        ) from exc
    try:
        exp = float(claims["exp"])
    except (KeyError, TypeError, ValueError) as exc:
        raise EntraFailure(700024) from exc
    if exp < sim.clock.now():
        raise EntraFailure(700024)


def _unverified_claims(assertion: str) -> dict[str, Any]:
    try:
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    return claims if isinstance(claims, dict) else {}


def _names_app_certificate(assertion: str, app: AppRegistration) -> bool:
    """Whether the assertion's header names (x5t, x5t#S256) one of the app's certificates."""
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError:
        return False
    sha256 = str(header.get("x5t#S256") or "").rstrip("=")
    sha1 = str(header.get("x5t") or "").rstrip("=")
    return any((sha256 and sha256 == s256) or (sha1 and sha1 == s1) for s1, s256, *_ in _certificate_keys(app))


def _verify_assertion(sim: Simulator, assertion: str, app: AppRegistration, segment: str, tid: str | None) -> str:
    """Check a client assertion: "certificate" when the app's own certificate signed it, "federated" when it is an
    external token one of the app's federated identity credentials trusts. Raises EntraFailure."""
    # The client signs its assertion by its own clock, which in life is Entra's: a simulated clock moved ahead (tokens
    # growing old) must not age the assertion a client signs now, so its lifetime is checked by the earlier clock.
    now = min(sim.clock.now(), time.time())
    cached = _assertion_cache.get(assertion)
    if cached is None:
        # RFC 7523 client authentication: the app signs its own assertion with one of its certificates (iss and sub
        # its client id); an assertion from another issuer, not signed by one of them, is a federated identity
        # credential's token.
        unverified = _unverified_claims(assertion)
        if unverified.get("iss") not in (None, app.client_id) and not _names_app_certificate(assertion, app):
            _verify_federated(sim, assertion, unverified, app)
            return "federated"
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError as exc:
            raise EntraFailure(
                700027, client_id=app.client_id, reason="The assertion is malformed.", thumbprint=""
            ) from exc
        alg = header.get("alg")
        # msal pads its base64url thumbprints; JOSE says unpadded: accept both
        sha256 = str(header.get("x5t#S256") or "").rstrip("=")
        sha1 = str(header.get("x5t") or "").rstrip("=")
        thumb = sha256 or sha1 or ""
        key, valid = None, (0.0, 0.0)
        for sha1_b64, sha256_b64, public, valid_from, valid_until in _certificate_keys(app):
            if (sha256 and sha256 == sha256_b64) or (not sha256 and sha1 and sha1 == sha1_b64):
                key, valid = public, (valid_from, valid_until)
        printable = b64url_decode(thumb).hex().upper() if thumb else ""
        if key is None:
            raise EntraFailure(700027, client_id=app.client_id, reason="The key was not found.", thumbprint=printable)
        # A key credential is used between its startDateTime and endDateTime (keyCredential), the certificate's
        # validity for an uploaded certificate.
        if not valid[0] <= now <= valid[1]:
            # "The key used is expired." is Entra's; "The key used is not yet valid." is a GUESS (FIDELITY.md)
            raise EntraFailure(
                700027,
                variant="key_dates",
                client_id=app.client_id,
                reason="The key used is expired." if now > valid[1] else "The key used is not yet valid.",
                thumbprint=printable,
                start=_iso(valid[0]),
                end=_iso(valid[1]),
            )
        if alg not in ("RS256", "PS256"):
            raise EntraFailure(700027, client_id=app.client_id, reason=f"Unsupported algorithm {alg}.", thumbprint="")
        try:
            claims = jwt.decode(
                assertion,
                key,
                algorithms=[alg],
                options={"verify_exp": False, "verify_aud": False, "verify_iat": False, "verify_nbf": False},
            )
        except jwt.PyJWTError as exc:
            raise EntraFailure(
                700027, client_id=app.client_id, reason="Signature validation failed.", thumbprint=thumb
            ) from exc
        if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
            raise EntraFailure(700021, client_id=app.client_id)
        audiences = claims.get("aud")
        audiences = [audiences] if isinstance(audiences, str) else list(audiences or [])
        accepted = set()
        for tenant in {segment, segment.lower(), tid or segment}:
            accepted |= {
                f"{sim.authority}/{tenant}/oauth2/v2.0/token",
                f"{sim.authority}/{tenant}/oauth2/token",
                f"{sim.authority}/{tenant}/v2.0",
            }
        if not any(a in accepted for a in audiences):
            raise EntraFailure(
                700027,
                client_id=app.client_id,
                reason="The audience of the client assertion is not this token endpoint.",
                thumbprint=thumb,
            )
        try:
            exp = float(claims["exp"])
        except (KeyError, TypeError, ValueError) as exc:
            raise EntraFailure(700024) from exc
        nbf = float(claims.get("nbf", 0) or 0)
        if nbf > now + 300:
            raise EntraFailure(700024)
        if len(_assertion_cache) > 10_000:
            _assertion_cache.clear()
        _assertion_cache[assertion] = (app.client_id, exp)
        cached = (app.client_id, exp)
    if cached[0] != app.client_id:
        raise EntraFailure(700021, client_id=app.client_id)
    if cached[1] < now - 300:
        raise EntraFailure(700024)
    return "certificate"


def _authenticate_client(
    sim: Simulator,
    form: Any,
    app: AppRegistration,
    segment: str,
    tid: str | None,
    basic_secret: str | None,
) -> tuple[str, str]:
    """The `appidacr` value, '1' (secret) or '2' (a client assertion: a certificate's, or a federated identity
    credential's token, GUESS), and the credential's kind ("secret", "certificate", "federated"); raise EntraFailure
    otherwise."""
    assertion = form.get("client_assertion")
    secret = form.get("client_secret") or basic_secret
    if assertion:
        if form.get("client_assertion_type") != JWT_BEARER:
            raise EntraFailure(900144, param="client_assertion_type")
        return "2", _verify_assertion(sim, str(assertion), app, segment, tid)
    if secret:
        now = sim.clock.now()
        for registered in app.secrets:
            if hmac.compare_digest(registered.value.encode(), str(secret).encode()):
                if registered.expires_at < now:
                    raise EntraFailure(7000222, client_id=app.client_id)
                return "1", "secret"
        raise EntraFailure(7000215, client_id=app.client_id)
    raise EntraFailure(7000218)


def _basic_credentials(request: web.Request) -> tuple[str | None, str | None]:
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("basic "):
        return None, None
    from urllib.parse import unquote_plus

    try:
        decoded = base64.b64decode(header[6:].strip()).decode()
    except (ValueError, UnicodeDecodeError):
        return None, None
    client_id, _, secret = decoded.partition(":")
    return unquote_plus(client_id), unquote_plus(secret)


_uti_random = random.Random()


def _uti() -> str:
    # a unique token identifier, not a secret: no need for the (slow here) system random source
    return b64url(_uti_random.getrandbits(128).to_bytes(16, "big"))[:22]


def _v1_common(sim: Simulator, tid: str, now: float, lifetime: int) -> dict[str, Any]:
    """Claims every v1.0 access token carries (access-token-claims-reference.md), issued by this cloud."""
    return {
        "iss": sim.sts_issuer(tid),
        "iat": int(now),
        "nbf": int(now),
        "exp": int(now) + lifetime,
        "tid": tid,
        "ver": "1.0",
        "uti": _uti(),
        "xms_sim": CANARY,
    }


def _v2_common(sim: Simulator, tid: str, now: float, lifetime: int) -> dict[str, Any]:
    """Claims every v2.0 id_token carries (id-token-claims-reference.md)."""
    return {
        "iss": f"{sim.authority}/{tid}/v2.0",
        "iat": int(now),
        "nbf": int(now),
        "exp": int(now) + lifetime,
        "tid": tid,
        "ver": "2.0",
        "uti": _uti(),
        "xms_sim": CANARY,
    }


def directory_roles(user: User) -> list[str]:
    """The `wids` of a user in their home tenant: the member ("User") role always, Global Administrator if held."""
    return [GLOBAL_ADMIN_ROLE_ID, USER_ROLE_ID] if user.global_admin else [USER_ROLE_ID]


def _access_token_claims(
    sim: Simulator,
    now: float,
    *,
    app: AppRegistration,
    user: User,
    partner: Home,
    tid: str,
    resource: str,
    permissions: list[str],
    amr: list[str],
    acr: str,
) -> dict[str, Any]:
    """A delegated (App+User) v1.0 access token for one of Microsoft's resources.

    v1.0 has `appid`/`appidacr`, `amr`, `acr`, `upn` and `unique_name`; `azp`, `azpacr` and
    `preferred_username` exist only in v2.0 tokens (access-token-claims-reference.md).
    """
    claims = _v1_common(sim, tid, now, sim.settings.access_token_lifetime)
    claims.update(
        {
            "aud": sim.audience_for(resource),
            "acr": "1",
            "amr": list(amr),
            "appid": app.client_id,
            "appidacr": acr,
            "name": user.display_name,
            "oid": user.oid,
            "scp": " ".join(permissions),
            "sub": _pairwise_sub(user.oid, app.client_id),
            "unique_name": user.upn,
            "upn": user.upn,
        }
    )
    if resource == GRAPH_RESOURCE:
        # Graph opts into the optional claim for user tokens too (observed in Graph tokens)
        claims["idtyp"] = "user"
    if tid == partner.tenant_id:
        # Graph's tokens carry the user's roles (Microsoft's sample of one does); Partner Center's and Key Vault's
        # only with the setting on: no page says they do
        if resource == GRAPH_RESOURCE or sim.settings.access_token_wids:
            claims["wids"] = directory_roles(user)
    else:
        claims["idp"] = sim.sts_issuer(partner.tenant_id)
    return claims


def _issue_user_tokens(
    sim: Simulator,
    request: web.Request,
    *,
    app: AppRegistration,
    user: User,
    partner: Home,
    tid: str,
    resource: str,
    permissions: list[str],
    scopes: Scopes,
    amr: list[str],
    acr: str,
    acrs: dict[str, list[str]],
    nonce: str | None,
    want_refresh: bool,
    refresh_scope: str,
    parent: RefreshGrant | None,
    origin: str,
    client_info: bool,
) -> dict[str, Any]:
    now = sim.clock.now()
    settings = sim.settings
    access_claims = _access_token_claims(
        sim,
        now,
        app=app,
        user=user,
        partner=partner,
        tid=tid,
        resource=resource,
        permissions=permissions,
        amr=amr,
        acr=acr,
    )
    if acrs.get("access_token"):
        access_claims["acrs"] = acrs["access_token"]
    access_token = Unsigned(access_claims, "access_token")
    if resource == GRAPH_RESOURCE:
        granted_scope = " ".join(permissions + sorted(scopes.oidc - {"offline_access"}))
    else:
        granted_scope = " ".join(f"{resource}/{p}" for p in permissions)
    body: dict[str, Any] = {
        "token_type": "Bearer",
        "scope": granted_scope,
        "expires_in": settings.access_token_lifetime,
        "ext_expires_in": settings.access_token_lifetime,
        "access_token": access_token,
    }
    detail = _detail(request)
    if want_refresh:
        refresh = new_opaque("rt")
        sim.issued.add("refresh_token", refresh)
        grant = RefreshGrant(
            id=sim.next_grant_id("rt"),
            fingerprint=fingerprint(refresh),
            user_oid=user.oid,
            home_tid=partner.tenant_id,
            client_id=app.client_id,
            scope=refresh_scope,
            amr=list(amr),
            issued_at=now,
            origin=origin,
            parent=parent.id if parent else None,
        )
        sim.entra.refresh_tokens[refresh] = grant
        body["refresh_token"] = refresh
        body["refresh_token_expires_in"] = REFRESH_TOKEN_INACTIVITY
        detail["new_refresh_token"] = grant.id
    if "openid" in scopes.oidc:
        body["id_token"] = _id_token(
            sim, now, user, partner, tid, app, nonce, profile="profile" in scopes.oidc, acrs=acrs.get("id_token", [])
        )
    if client_info:
        body["client_info"] = b64url(
            json.dumps({"uid": user.oid, "utid": partner.tenant_id}, separators=(",", ":")).encode()
        )
    return body


def _id_token(
    sim: Simulator,
    now: float,
    user: User,
    partner: Home,
    tid: str,
    app: AppRegistration,
    nonce: str | None,
    *,
    profile: bool,
    acrs: list[str],
) -> str | Unsigned:
    """A v2.0 id_token: no `amr` (v1.0 only), `wids` only when the app's groupMembershipClaims asks for roles."""
    wids = app.wants_directory_roles and tid == partner.tenant_id
    # An id_token without a nonce (a refresh redemption) carries nothing that changes between two
    # redemptions a few seconds apart, so one signed within the last minute is handed out again:
    # it halves the RSA work of a redemption, the simulator's main cost. The key holds everything the
    # claims are made of.
    key = (
        user.oid,
        tid,
        app.client_id,
        profile,
        user.display_name if profile else None,
        user.upn if profile else None,
        tuple(directory_roles(user)) if wids else None,
        tuple(acrs),
    )
    if nonce is None:
        cached = sim.entra.id_token_cache.get(key)
        if cached is not None and 0 <= now - cached[0] < ID_TOKEN_REUSE:
            return cached[1]
    claims = _v2_common(sim, tid, now, sim.settings.id_token_lifetime)
    claims["aud"] = app.client_id
    claims["sub"] = _pairwise_sub(user.oid, app.client_id)
    if profile:
        # "The profile scope is required to receive this claim" (name, preferred_username, oid)
        claims.update({"name": user.display_name, "preferred_username": user.upn, "oid": user.oid})
    if tid != partner.tenant_id:
        claims["idp"] = sim.sts_issuer(partner.tenant_id)
    elif wids:
        claims["wids"] = directory_roles(user)
    if acrs:
        # the authentication contexts asked in the `claims` request and satisfied
        claims["acrs"] = list(acrs)
    if nonce is not None:
        claims["nonce"] = nonce
    return Unsigned(claims, "id_token", cache_key=key if nonce is None else None, now=now)


def _home_permissions(sim: Simulator, app: AppRegistration, tid: str, resource: str, requested: list[str]) -> list[str]:
    """The `scp` of a token for `resource` in the tenant that consented: what the tenant granted the app
    (simulator/grants.py). Raises EntraFailure(65001) when a permission asked, or every one, is not granted."""
    granted = sim.entra.grants.get((tid, app.client_id), {}).get(resource, set())
    permissions = grants.token_permissions(granted, requested)
    if not permissions:
        raise EntraFailure(65001, client_id=app.client_id, app_name=app.display_name)
    return permissions


def requested_acrs(claims: str) -> dict[str, list[str]] | None:
    """The authentication context ids an OIDC `claims` request asks, per token ("id_token", "access_token"):
    `{"id_token": {"acrs": {"essential": true, "value": "c1"}}}` (or `"values": [...]`). None when the parameter
    is not a JSON object."""
    try:
        data = json.loads(claims)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    asked: dict[str, list[str]] = {}
    for token in ("id_token", "access_token"):
        section = data.get(token)
        acrs = section.get("acrs") if isinstance(section, dict) else None
        if not isinstance(acrs, dict):
            continue
        values = acrs["values"] if isinstance(acrs.get("values"), list) else [acrs.get("value")]
        names = [value for value in values if isinstance(value, str) and value]
        if names:
            asked[token] = names
    return asked


def _acrs(sim: Simulator, tid: str, amr: list[str], *claims: Any) -> dict[str, list[str]]:
    """The `acrs` each token gets (developer-guide-conditional-access-authentication-context.md): an asked context
    is added when the policy on it is satisfied (MFA, from `amr`) or when no policy is on it; otherwise left out."""
    found = sim.world.tenant(tid)
    contexts = found[1].authentication_contexts if found and isinstance(found[1], Vendor) else {}
    policies = {name.lower(): policy for name, policy in contexts.items()}
    issued: dict[str, list[str]] = {}
    for raw in claims:
        if not raw:
            continue
        asked = requested_acrs(str(raw))
        if asked is None:
            raise EntraFailure(90100, param="claims")
        for token, names in asked.items():
            for name in names:
                if (policies.get(name.lower()) != "mfa" or "mfa" in amr) and name not in issued.get(token, []):
                    issued.setdefault(token, []).append(name)
    return issued


def _target_tenant(
    sim: Simulator,
    kind: str,
    tid: str | None,
    user: User,
    partner: Home,
    app: AppRegistration,
    resource: str,
    tenant_segment: str,
) -> tuple[str, list[str] | None]:
    """The tenant the token is for and, in a customer tenant, the scopes its ApplicationConsent grants."""
    if kind in GENERIC_TENANTS or tid == partner.tenant_id:
        return partner.tenant_id, None
    if tid is None:
        raise EntraFailure(90002, tenant=tenant_segment)
    fields = {
        "upn": user.upn,
        "home_tenant": partner.tenant_id,
        "client_id": app.client_id,
        "app_name": app.display_name,
        "tenant": tid,
    }
    if kind == "customer" and any(c.tenant_id == tid for c in partner.customers):
        found = sim.world.tenant(tid)
        fields["tenant_name"] = found[1].company_name if found else tid
        # a partner user reaches a customer's tenant through the GDAP roles its security groups hold there;
        # without any, it is not a principal of that tenant (AADSTS50020)
        if not (isinstance(partner, Partner) and partner.gdap_roles(user, tid, sim.clock.now())):
            raise EntraFailure(50020, **fields)
        directory = sim.world.directory(tid)
        if directory is None or directory.by_app_id(app.client_id) is None:
            # the app has no service principal in the customer tenant: "Applications must be authorized to access
            # the customer tenant before partner delegated administrators can use them ... execute the appropriate
            # Partner Center API" (AADSTS90099)
            raise EntraFailure(90099, **fields)
        resource_app_id = RESOURCE_APP_IDS.get(resource, "")
        if directory.by_app_id(resource_app_id) is None:
            # the resource has no service principal in the tenant (a workload it lacks): "The resource principal
            # named {name} wasn't found in the tenant named {tenant}" (AADSTS500011)
            raise EntraFailure(500011, resource=resource, **fields)
        # the app and the resource are there: the token carries what the tenant's AllPrincipals grant on the
        # resource holds; no grant (or an empty one) is consent not given (AADSTS65001)
        scopes = directory.scopes_for(app.client_id, resource_app_id)
        if scopes:
            return tid, scopes
        raise EntraFailure(65001, **fields)
    found = sim.world.tenant(tid)
    fields["tenant_name"] = str(
        getattr(found[1], "name", None) or getattr(found[1], "company_name", tid) if found else tid
    )
    raise EntraFailure(90072, **fields)


def _check_conditional_access(partner: Home, amr: list[str], resource: str) -> None:
    if partner.conditional_access == "block":
        raise EntraFailure(53003)
    if partner.conditional_access == "mfa_required" and "mfa" not in amr:
        raise EntraFailure(50076, resource=resource)


async def handle_token(request: web.Request) -> web.Response:
    segment = request.match_info["tenant"]
    form = await request.post()
    basic_id, basic_secret = _basic_credentials(request)
    client_id = str(form.get("client_id") or basic_id or "")
    try:
        body = _token(request, segment, form, client_id, basic_secret)
    except EntraFailure as failure:
        fields = {"client_id": client_id, "tenant": segment, **failure.fields}
        return entra_error_response(request, failure.code, **fields)
    if isinstance(body, web.Response):
        return body
    _sign_pending(_sim(request), body)
    return _json(body, headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})


def _sign_pending(sim: Simulator, body: dict[str, Any]) -> None:
    """Sign the body's JWTs and record them as issued.

    Signing stays on the event loop: a worker thread (OpenSSL releases the GIL) measured slower on a
    two-core machine where the clients take the other core, because of the hand-offs.
    """
    pending = [(key, value) for key, value in body.items() if isinstance(value, Unsigned)]
    if not pending:
        return
    signer = sim.signer
    claims = [value.claims for _, value in pending]
    tokens = [
        _opaque(sim, c) if _is_opaque(sim, k, c) else signer.sign(c) for (k, _), c in zip(pending, claims, strict=True)
    ]
    for (key, value), token in zip(pending, tokens, strict=True):
        body[key] = token
        sim.issued.add(value.kind, token)
        if value.cache_key is not None:
            sim.entra.id_token_cache[value.cache_key] = (value.now, token)


def _is_opaque(sim: Simulator, key: str, claims: dict[str, Any]) -> bool:
    return (
        key == "access_token"
        and sim.settings.opaque_access_tokens
        and claims.get("aud") == sim.audience_for(PARTNER_CENTER_RESOURCE)
    )


def _opaque(sim: Simulator, claims: dict[str, Any]) -> str:
    """An access token that is no JWT: Partner Center finds its claims by the token itself."""
    token = new_opaque("at")
    sim.entra.opaque_tokens[opaque_key(sim.cloud, token)] = dict(claims)
    return token


def _token(
    request: web.Request, segment: str, form: Any, client_id: str, basic_secret: str | None
) -> web.Response | dict[str, Any]:
    """The token endpoint's answer; raises EntraFailure for Entra's error answers."""
    sim = _sim(request)
    detail = _detail(request)
    grant_type = str(form.get("grant_type", ""))
    scope_raw = str(form.get("scope", ""))
    detail.update({"grant_type": grant_type, "client_id": client_id, "scope": scope_raw, "tenant": segment})
    kind, tid = resolve_tenant(sim, segment)
    if kind == "unknown":
        credential = basic_secret or form.get("client_secret") or form.get("client_assertion")
        raise cross_cloud_failure(sim, segment, confidential=bool(credential))
    if not grant_type:
        raise EntraFailure(900144, param="grant_type")
    if not client_id:
        raise EntraFailure(900144, param="client_id")
    user_keys: tuple[str, str] | None = None
    code_grant: CodeGrant | None = None
    refresh_grant: RefreshGrant | None = None
    if grant_type == "refresh_token":
        refresh_grant = sim.entra.refresh_tokens.get(str(form.get("refresh_token", "")))
        if refresh_grant is not None:
            detail["refresh_token"] = refresh_grant.id
            found_user = sim.world.user(refresh_grant.user_oid)
            user_keys = (refresh_grant.user_oid, found_user[0].upn if found_user else "")
    elif grant_type == "authorization_code":
        code_grant = sim.entra.codes.get(str(form.get("code", "")))
        if code_grant is not None:
            detail["code"] = code_grant.id
            found_user = sim.world.user(code_grant.user_oid)
            user_keys = (code_grant.user_oid, found_user[0].upn if found_user else "")
    if user_keys:
        detail["user"] = user_keys[0]
    if sim.faults.active:
        fault = sim.faults.match_entra(
            path=request.path,
            tenant=segment,
            tid=tid,
            user=user_keys,
            grant_type=grant_type,
            client_id=client_id,
        )
        if fault is not None and fault.entra_code is not None:
            detail["fault"] = fault.id
            retry_after = fault.headers.get("Retry-After") if fault.headers else None
            response = entra_error_response(
                request,
                fault.entra_code,
                retry_after=retry_after,
                client_id=client_id,
                tenant=segment,
                resource=scope_raw,
                issued="01/01/2025 00:00:00",
                valid_from="01/01/2025 00:00:00",
                upn=user_keys[1] if user_keys else "",
                app_name=client_id,
                tenant_name=segment,
                home_tenant=tid or segment,
            )
            if fault.status:
                response.set_status(fault.status)
            return response
    app = sim.app_here(client_id)
    if app is None:
        raise EntraFailure(700016, client_id=client_id, tenant=segment)
    acr, detail["credential"] = _authenticate_client(sim, form, app, segment, tid, basic_secret)
    client_info = str(form.get("client_info", "")) == "1"
    if grant_type == "authorization_code":
        body = _redeem_code(sim, request, form, app, code_grant, kind, tid, acr, client_info)
    elif grant_type == "refresh_token":
        body = _redeem_refresh(sim, request, form, app, refresh_grant, kind, tid, segment, acr, client_info)
    elif grant_type == "client_credentials":
        body = _client_credentials(sim, request, app, kind, tid, scope_raw, acr)
    else:
        raise EntraFailure(70003, grant_type=grant_type)
    return body


def _redeem_code(
    sim: Simulator,
    request: web.Request,
    form: Any,
    app: AppRegistration,
    grant: CodeGrant | None,
    kind: str,
    tid: str | None,
    acr: str,
    client_info: bool,
) -> dict[str, Any]:
    if not form.get("code"):
        raise EntraFailure(900144, param="code")
    if grant is None:
        raise EntraFailure(9002313)
    if grant.redeemed:
        raise EntraFailure(54005)
    # a code is spent by the first authenticated attempt, whatever its outcome
    grant.redeemed = True
    now = sim.clock.now()
    if now > grant.expires_at:
        raise EntraFailure(70008)
    if grant.client_id != app.client_id:
        raise EntraFailure(70000)
    redirect_uri = str(form.get("redirect_uri", ""))
    if redirect_uri != grant.redirect_uri:
        raise EntraFailure(500112, redirect_uri=redirect_uri)
    if grant.code_challenge is not None:
        verifier = str(form.get("code_verifier", ""))
        computed = b64url(hashlib.sha256(verifier.encode()).digest())
        if not verifier or not hmac.compare_digest(computed, grant.code_challenge):
            raise EntraFailure(501481)
    if kind not in GENERIC_TENANTS and tid != grant.tid:
        raise EntraFailure(700005)
    found = sim.world.user(grant.user_oid)
    if found is None:
        raise EntraFailure(9002313)
    user, partner = found
    if not user.enabled:
        raise EntraFailure(50057)
    requested = parse_scopes(sim, str(form.get("scope", "")) or grant.scope, tenant=grant.tid)
    code_scopes = parse_scopes(sim, grant.scope)
    if len(requested.resources) > 1:
        raise EntraFailure(700022, scope=requested.raw)
    if requested.resources:
        resource, perms = next(iter(requested.resources.items()))
    elif code_scopes.resources:
        resource, perms = next(iter(code_scopes.resources.items()))
    else:
        resource, perms = GRAPH_RESOURCE, ["User.Read"]
    permissions = _home_permissions(sim, app, partner.tenant_id, resource, perms)
    _check_conditional_access(partner, grant.amr, resource)
    acrs = _acrs(sim, partner.tenant_id, grant.amr, grant.claims, form.get("claims"))
    detail = _detail(request)
    detail["tid"] = partner.tenant_id
    detail["resource"] = resource
    return _issue_user_tokens(
        sim,
        request,
        app=app,
        user=user,
        partner=partner,
        tid=partner.tenant_id,
        resource=resource,
        permissions=permissions,
        scopes=requested,
        amr=grant.amr,
        acr=acr,
        acrs=acrs,
        nonce=grant.nonce,
        want_refresh="offline_access" in code_scopes.oidc,
        refresh_scope=grant.scope,
        parent=None,
        origin="authorization_code",
        client_info=client_info,
    )


def _redeem_refresh(
    sim: Simulator,
    request: web.Request,
    form: Any,
    app: AppRegistration,
    grant: RefreshGrant | None,
    kind: str,
    tid: str | None,
    segment: str,
    acr: str,
    client_info: bool,
) -> dict[str, Any]:
    if not form.get("refresh_token"):
        raise EntraFailure(900144, param="refresh_token")
    if grant is None:
        raise EntraFailure(9002313)
    if grant.client_id != app.client_id:
        raise EntraFailure(70000)
    now = sim.clock.now()
    if now - grant.issued_at > REFRESH_TOKEN_INACTIVITY:
        raise EntraFailure(700082, issued=_iso(grant.issued_at))
    valid_from = sim.entra.tokens_valid_from.get(grant.user_oid)
    if valid_from is not None and grant.issued_at < valid_from:
        raise EntraFailure(50173, issued=_iso(grant.issued_at), valid_from=_iso(valid_from))
    found = sim.world.user(grant.user_oid)
    if found is None:
        raise EntraFailure(9002313)
    user, partner = found
    if not user.enabled:
        raise EntraFailure(50057)
    scopes = parse_scopes(sim, str(form.get("scope", "")) or grant.scope, tenant=grant.home_tid)
    if len(scopes.resources) > 1:
        raise EntraFailure(700022, scope=scopes.raw)
    resource, perms = next(iter(scopes.resources.items())) if scopes.resources else (GRAPH_RESOURCE, ["User.Read"])
    target, consent_scopes = _target_tenant(sim, kind, tid, user, partner, app, resource, segment)
    if consent_scopes is not None:
        # a customer tenant: every grant of the ApplicationConsent there; an explicit scope it lacks is not consented
        # Entra compares permission names without regard to case (it answers `user.read` with `User.Read`): the
        # token carries the grant's spelling
        held = {name.lower() for name in consent_scopes}
        if not consent_scopes or (".default" not in perms and not {p.lower() for p in perms} <= held):
            raise EntraFailure(65001, client_id=app.client_id, app_name=app.display_name)
        permissions = list(consent_scopes)
    else:
        permissions = _home_permissions(sim, app, target, resource, perms)
    _check_conditional_access(partner, grant.amr, resource)
    acrs = _acrs(sim, target, grant.amr, None, form.get("claims"))
    grant.redemptions += 1
    grant.last_redeemed_at = now
    sim.entra.redemptions_by_user[user.oid] += 1
    detail = _detail(request)
    detail["tid"] = target
    detail["resource"] = resource
    return _issue_user_tokens(
        sim,
        request,
        app=app,
        user=user,
        partner=partner,
        tid=target,
        resource=resource,
        permissions=permissions,
        scopes=scopes,
        amr=grant.amr,
        acr=acr,
        acrs=acrs,
        nonce=None,
        want_refresh="offline_access" in scopes.oidc,
        refresh_scope=grant.scope,
        parent=grant,
        origin="refresh_token",
        client_info=client_info,
    )


def _registered_resource(sim: Simulator, resource: str) -> AppRegistration | None:
    """The world's app registration that exposes `resource` (its Application ID URI), if one does."""
    return next((app for app in sim.world.apps() if resource in app.identifier_uris), None)


def _client_credentials(
    sim: Simulator,
    request: web.Request,
    app: AppRegistration,
    kind: str,
    tid: str | None,
    scope_raw: str,
    acr: str,
) -> dict[str, Any]:
    if not scope_raw.strip():
        raise EntraFailure(900144, param="scope")
    scopes = parse_scopes(sim, scope_raw, tenant=tid or "common")
    if len(scopes.resources) != 1:
        raise EntraFailure(1002012 if not scopes.resources else 700022, scope=scope_raw)
    resource, perms = next(iter(scopes.resources.items()))
    if perms != [".default"]:
        raise EntraFailure(1002012, scope=scope_raw)
    if kind in GENERIC_TENANTS:
        raise EntraFailure(50059)
    if tid is None:
        raise EntraFailure(50059)
    allowed = kind == "vendor"
    if kind == "partner":
        allowed = app.multi_tenant and any(sim.entra.grants.get((tid, app.client_id), {}).values())
    elif kind == "customer":
        directory = sim.world.directory(tid)
        allowed = directory is not None and directory.by_app_id(app.client_id) is not None
    if not allowed:
        raise EntraFailure(700016, client_id=app.client_id, tenant=tid)
    now = sim.clock.now()
    # the app's service principal in the tenant: the object the token's `oid` names
    principal = sim.world.directory(tid) if kind == "customer" else None
    found_sp = principal.by_app_id(app.client_id) if principal is not None else None
    sp_oid = found_sp.id if found_sp is not None else _service_principal_oid(app.client_id, tid)
    # an app-only v1.0 token: no user, so no scp, amr, name, upn or wids; `roles` below
    claims = _v1_common(sim, tid, now, sim.settings.access_token_lifetime)
    claims.update(
        {"aud": sim.audience_for(resource), "appid": app.client_id, "appidacr": acr, "oid": sp_oid, "sub": sp_oid}
    )
    owner = _registered_resource(sim, resource)
    if owner is None or "idtyp" in owner.access_token_optional_claims:
        # an optional claim the resource's registration sets; Microsoft's own resources: GUESS that they do
        claims["idtyp"] = "app"
    requested = next((item.rpartition("/")[0] for item in scope_raw.split() if "/" in item), "")
    if owner is not None and requested.rstrip("/").lower() == owner.client_id.lower():
        # a v1.0 `aud` is "the client ID or the resource URI used in the request"
        claims["aud"] = owner.client_id
    # `roles`: the application permissions granted to the app (client credentials flow), here only Graph's in the
    # vendor's own tenant, where the app is registered
    if kind == "vendor" and resource == GRAPH_RESOURCE and app.graph_app_roles:
        claims["roles"] = list(app.graph_app_roles)
    access_token = Unsigned(claims, "access_token")
    detail = _detail(request)
    detail["tid"] = tid
    detail["resource"] = resource
    return {
        "token_type": "Bearer",
        "expires_in": sim.settings.access_token_lifetime,
        "ext_expires_in": sim.settings.access_token_lifetime,
        "access_token": access_token,
    }


def _iso(epoch: float) -> str:
    """A date as Entra's messages show it ('06/29/2021 21:13:15', UTC)."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%m/%d/%Y %H:%M:%S")


async def handle_logout(request: web.Request) -> web.Response:
    return _page("Signed out", "<h1>You signed out of your account</h1>")


async def handle_index(request: web.Request) -> web.Response:
    return _page(
        "Simulated Entra ID",
        "<h1>Simulated Microsoft Entra ID</h1><p>See /_simulator/ for the control surface.</p>",
    )


def issue_refresh_token_directly(
    sim: Simulator,
    *,
    user: User,
    partner: Home,
    app: AppRegistration,
    scope: str,
    mfa: bool | None = None,
    prompt: str | None = None,
) -> str:
    """A refresh token for `user` as if they had signed in and accepted `scope` (used by the control surface): the
    consent is recorded as the sign-in page records it. Raises EntraFailure as `consent_at_sign_in` does."""
    consent_at_sign_in(sim, app=app, user=user, home=partner, scope_raw=scope, prompt=prompt)
    amr = ["pwd", "mfa"] if (user.mfa_registered if mfa is None else mfa) else ["pwd"]
    refresh = new_opaque("rt")
    sim.issued.add("refresh_token", refresh)
    sim.entra.refresh_tokens[refresh] = RefreshGrant(
        id=sim.next_grant_id("rt"),
        fingerprint=fingerprint(refresh),
        user_oid=user.oid,
        home_tid=partner.tenant_id,
        client_id=app.client_id,
        scope=scope,
        amr=amr,
        issued_at=sim.clock.now(),
        origin="control",
    )
    return refresh


def setup(app: web.Application) -> None:
    app.router.add_get("/", handle_index)
    app.router.add_get("/common/discovery/instance", handle_instance_discovery)
    app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", handle_openid_configuration)
    app.router.add_get("/{tenant}/discovery/v2.0/keys", handle_keys)
    app.router.add_get("/{tenant}/discovery/keys", handle_keys)
    app.router.add_get("/{tenant}/oauth2/v2.0/authorize", handle_authorize_get)
    app.router.add_post("/{tenant}/oauth2/v2.0/authorize", handle_authorize_post)
    app.router.add_post("/{tenant}/oauth2/v2.0/token", handle_token)
    app.router.add_get("/{tenant}/oauth2/v2.0/logout", handle_logout)

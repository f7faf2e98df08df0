"""The control surface under `/_simulator/`: read the log and state, move the clock, inject faults."""

from __future__ import annotations

import json
import logging
import random
import re
from typing import Any

from aiohttp import web

from simulator import directory, gdap, managed_identity
from simulator.directory import Directory, MissingResource
from simulator.entra import SIM_KEY, EntraFailure, issue_refresh_token_directly
from simulator.entra_errors import error_body
from simulator.state import ApplicationConsentRecord, Simulator, consent_grants, grants_view
from simulator.world import (
    AUTHENTICATION_CONTEXT_POLICIES,
    GRAPH_APP_ID,
    GROUP_MEMBERSHIP_CLAIMS,
    PARTNER_CENTER_RESOURCE,
    SHOWCASE_GRANTS,
    Partner,
)

logger = logging.getLogger(__name__)

PREFIX = "/_simulator"


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(body, default=str), status=status, content_type="application/json", charset="utf-8"
    )


def _bad(message: str, status: int = 400) -> web.Response:
    return _json({"error": message}, status)


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    data = await request.json()
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": "expected a JSON object"}), content_type="application/json")
    return data


def _sim(request: web.Request) -> Simulator:
    return request.app[SIM_KEY]


async def index(request: web.Request) -> web.Response:
    routes = sorted(
        {
            f"{r.method} {r.resource.canonical}"
            for r in request.app.router.routes()
            if r.resource is not None and r.resource.canonical.startswith(PREFIX)
        }
    )
    return _json({"endpoints": routes})


async def health(request: web.Request) -> web.Response:
    return _json({"ok": True})


async def env(request: web.Request) -> web.Response:
    return _json(_sim(request).env)


async def world(request: web.Request) -> web.Response:
    return _json(_sim(request).world.to_dict())


async def get_log(request: web.Request) -> web.Response:
    sim = _sim(request)
    query = dict(request.query)
    kwargs: dict[str, Any] = {}
    for key in ("status", "since", "limit"):
        if key in query:
            try:
                kwargs[key] = int(query.pop(key))
            except ValueError:
                return _bad(f"{key} must be an integer")
    for key in ("service", "method", "path"):
        if key in query:
            kwargs[key] = query.pop(key)
    kwargs.update(query)
    return _json({"entries": sim.log.query(**kwargs)})


async def clear_log(request: web.Request) -> web.Response:
    _sim(request).log.clear()
    return _json({"ok": True})


def _state(sim: Simulator) -> dict[str, Any]:
    entra = sim.entra
    return {
        "clock": {"now": sim.clock.now(), "offset": sim.clock.offset},
        "settings": sim.settings.to_dict(),
        "consents": {
            customer: {app: record.to_dict() for app, record in apps.items()}
            for customer, apps in sim.app_consents.items()
            if apps
        },
        "grants": grants_view(entra.grants),
        "secrets": sim.vault.state(),
        # the vaults served besides the first, in order: each one's URL and secrets
        "more_vaults": [{"url": more.url, "secrets": more.store.state()} for more in sim.more_vaults],
        "refresh_tokens": [grant.to_dict() for grant in entra.refresh_tokens.values()],
        "redemptions": dict(entra.redemptions_by_user),
        "revoked_users": dict(entra.tokens_valid_from),
        "codes": [
            {
                "id": c.id,
                "user": c.user_oid,
                "client_id": c.client_id,
                "redeemed": c.redeemed,
                "expires_at": c.expires_at,
            }
            for c in entra.codes.values()
        ],
        "faults": [f.to_dict() for f in sim.faults.list()],
        "issued_count": len(sim.issued),
        "log_count": len(sim.log),
    }


async def state(request: web.Request) -> web.Response:
    full = _state(_sim(request))
    section = request.query.get("section")
    if section:
        if section not in full:
            return _bad(f"unknown section {section!r}; one of {', '.join(full)}")
        return _json({section: full[section]})
    return _json(full)


async def clock(request: web.Request) -> web.Response:
    sim = _sim(request)
    if request.method == "POST":
        body = await _body(request)
        try:
            sim.clock.advance(float(body.get("advance", 0)))
        except (TypeError, ValueError) as exc:
            return _bad(str(exc))
    return _json({"now": sim.clock.now(), "offset": sim.clock.offset})


async def settings(request: web.Request) -> web.Response:
    sim = _sim(request)
    if request.method == "POST":
        body = await _body(request)
        try:
            sim.settings.update(body)
        except ValueError as exc:
            return _bad(str(exc))
        sim.issued.enabled = sim.settings.record_issued
        if "pc_rate_limit" in body or "pc_burst" in body:
            sim.pc_buckets.clear()
    return _json(sim.settings.to_dict())


def _find_user(sim: Simulator, key: str) -> Any:
    found = sim.world.user(key)
    if found is None:
        raise web.HTTPNotFound(text=json.dumps({"error": f"no user {key!r}"}), content_type="application/json")
    return found


async def revoke_user(request: web.Request) -> web.Response:
    """An administrator's reset of the user: every refresh token issued before now stops working."""
    sim = _sim(request)
    user, _ = _find_user(sim, request.match_info["user"])
    # strictly after anything issued so far, even within the same clock tick
    sim.entra.tokens_valid_from[user.oid] = sim.clock.now() + 1e-3
    return _json({"user": user.oid, "tokens_valid_from": sim.entra.tokens_valid_from[user.oid]})


async def update_user(request: web.Request) -> web.Response:
    sim = _sim(request)
    user, _ = _find_user(sim, request.match_info["user"])
    body = await _body(request)
    allowed = {"global_admin", "admin_agent", "mfa_registered", "enabled", "display_name", "groups"}
    unknown = set(body) - allowed
    if unknown:
        return _bad(f"unknown user fields: {', '.join(sorted(unknown))}")
    groups = body.get("groups", [])
    if not isinstance(groups, list) or not all(isinstance(name, str) and name.strip() for name in groups):
        return _bad("groups must be a list of group display names")
    for key, value in body.items():
        setattr(user, key, value)
    return _json(user.__dict__)


async def update_partner(request: web.Request) -> web.Response:
    sim = _sim(request)
    partner = sim.world.partner(request.match_info["partner"])
    if partner is None:
        return _bad("no such partner", 404)
    body = await _body(request)
    if "conditional_access" in body:
        if body["conditional_access"] not in (None, "mfa_required", "block"):
            return _bad("conditional_access must be null, 'mfa_required' or 'block'")
        partner.conditional_access = body["conditional_access"]
    return _json({"tenant_id": partner.tenant_id, "conditional_access": partner.conditional_access})


async def update_vendor(request: web.Request) -> web.Response:
    """Change the vendor's tenant: its Conditional Access `authentication_contexts` ({"c1": "mfa" | null, ...})."""
    sim = _sim(request)
    body = await _body(request)
    unknown = set(body) - {"authentication_contexts"}
    if unknown:
        return _bad(f"unknown vendor fields: {', '.join(sorted(unknown))}")
    vendor = sim.world.vendor
    if "authentication_contexts" in body:
        contexts = body["authentication_contexts"]
        # "Values C1-C25 are available for use as Auth Context IDs in a tenant"
        valid_ids = {f"c{n}" for n in range(1, 26)}
        if not isinstance(contexts, dict) or not all(
            isinstance(k, str) and k.lower() in valid_ids and v in AUTHENTICATION_CONTEXT_POLICIES
            for k, v in contexts.items()
        ):
            return _bad("authentication_contexts must map c1..c25 to 'mfa' or null")
        vendor.authentication_contexts = {k.lower(): v for k, v in contexts.items()}
    return _json({"tenant_id": vendor.tenant_id, "authentication_contexts": vendor.authentication_contexts})


async def update_app(request: web.Request) -> web.Response:
    """Change an app registration at run time: `group_membership_claims`, `delegated_permissions`,
    `access_token_optional_claims`."""
    sim = _sim(request)
    app = sim.world.app(request.match_info["client_id"].lower())
    if app is None:
        return _bad("no such app registration", 404)
    body = await _body(request)
    unknown = set(body) - {"group_membership_claims", "delegated_permissions", "access_token_optional_claims"}
    if unknown:
        return _bad(f"unknown app fields: {', '.join(sorted(unknown))}")
    if "group_membership_claims" in body:
        value = body["group_membership_claims"]
        if value not in GROUP_MEMBERSHIP_CLAIMS:
            allowed = ", ".join("null" if v is None else repr(v) for v in GROUP_MEMBERSHIP_CLAIMS)
            return _bad(f"group_membership_claims must be one of {allowed}")
    optional = body.get("access_token_optional_claims", [])
    if not isinstance(optional, list) or not all(isinstance(name, str) for name in optional):
        return _bad("access_token_optional_claims must be a list of claim names")
    permissions: dict[str, list[str]] | None = None
    if "delegated_permissions" in body:
        raw = body["delegated_permissions"]
        if not isinstance(raw, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(p, str) for p in v) for k, v in raw.items()
        ):
            return _bad("delegated_permissions must map a resource URL to a list of permission names")
        permissions = {}
        for resource, names in raw.items():
            canonical = sim.canonical_resource(resource) or resource.rstrip("/")
            permissions[canonical] = list(dict.fromkeys(names))
    if "group_membership_claims" in body:
        app.group_membership_claims = body["group_membership_claims"]
    if permissions is not None:
        app.delegated_permissions = permissions
    if "access_token_optional_claims" in body:
        app.access_token_optional_claims = list(dict.fromkeys(optional))
    # id_tokens are reused for a minute: none signed under the old registration may be handed out again
    sim.entra.id_token_cache.clear()
    return _json(
        {
            "client_id": app.client_id,
            "group_membership_claims": app.group_membership_claims,
            "delegated_permissions": app.delegated_permissions,
            "access_token_optional_claims": app.access_token_optional_claims,
        }
    )


async def faults(request: web.Request) -> web.Response:
    sim = _sim(request)
    if request.method == "GET":
        return _json({"faults": [f.to_dict() for f in sim.faults.list()]})
    if request.method == "DELETE":
        sim.faults.clear()
        return _json({"ok": True})
    body = await _body(request)
    allowed = {"service", "method", "path", "status", "body", "headers", "latency", "times", "rate"}
    unknown = set(body) - allowed
    if unknown:
        return _bad(f"unknown fault fields: {', '.join(sorted(unknown))}")
    if body.get("status") is None and not body.get("latency"):
        return _bad("a fault needs a status or a latency")
    try:
        fault = sim.faults.add(**body)
    except (ValueError, TypeError, re.error) as exc:
        return _bad(str(exc))
    return _json(fault.to_dict(), 201)


async def delete_fault(request: web.Request) -> web.Response:
    if not _sim(request).faults.remove(request.match_info["fault"]):
        return _bad("no such fault", 404)
    return _json({"ok": True})


async def entra_error(request: web.Request) -> web.Response:
    sim = _sim(request)
    body = await _body(request)
    allowed = {
        "code",
        "times",
        "rate",
        "tenant",
        "user",
        "grant_type",
        "client_id",
        "status",
        "retry_after",
        "path",
    }
    unknown = set(body) - allowed
    if unknown:
        return _bad(f"unknown fields: {', '.join(sorted(unknown))}")
    try:
        code = int(body["code"])
    except (KeyError, TypeError, ValueError):
        return _bad("code (the AADSTS number) is required")
    headers = {"Retry-After": str(body["retry_after"])} if body.get("retry_after") is not None else {}
    try:
        fault = sim.faults.add(
            entra_code=code,
            times=body.get("times", 1),
            rate=body.get("rate"),
            tenant=body.get("tenant"),
            user=body.get("user"),
            grant_type=body.get("grant_type"),
            client_id=body.get("client_id"),
            status=body.get("status"),
            headers=headers,
            path=body.get("path", r"/oauth2/v2\.0/token$"),
        )
    except (ValueError, TypeError, re.error) as exc:
        return _bad(str(exc))
    return _json(fault.to_dict(), 201)


async def add_customers(request: web.Request) -> web.Response:
    sim = _sim(request)
    partner = sim.world.partner(request.match_info["partner"])
    if partner is None:
        return _bad("no such partner", 404)
    body = await _body(request)
    names = list(body.get("names") or [])
    count = int(body.get("count", len(names) or 1))
    added = []
    for index in range(count):
        rng = random.Random(f"{sim.world.seed}:{partner.tenant_id}:{len(partner.customers)}")
        name = names[index] if index < len(names) else None
        customer = sim.world.add_customer(partner, company_name=name, rng=rng)
        added.append(customer.__dict__)
    return _json({"customers": added}, 201)


async def remove_customer(request: web.Request) -> web.Response:
    sim = _sim(request)
    partner = sim.world.partner(request.match_info["partner"])
    if partner is None:
        return _bad("no such partner", 404)
    if not sim.world.remove_customer(partner, request.match_info["customer"].lower()):
        return _bad("no such customer", 404)
    return _json({"ok": True})


def _gdap_view(sim: Simulator, partner: Partner, relationships: list[gdap.Relationship]) -> list[dict[str, Any]]:
    """Relationships as Graph shows them, each with its `accessAssignments` (Graph's form too)."""
    partner.refresh_relationships(sim.clock.now())
    return [
        {**gdap.relationship_json(r), "accessAssignments": [gdap.assignment_json(a) for a in r.assignments]}
        for r in relationships
    ]


def _partner_of(sim: Simulator, request: web.Request) -> Partner:
    partner = sim.world.partner(request.match_info["partner"].lower())
    if partner is None:
        raise web.HTTPNotFound(text=json.dumps({"error": "no such partner"}), content_type="application/json")
    return partner


async def gdap_relationships(request: web.Request) -> web.Response:
    """The partner's GDAP relationships and security groups, as the world holds them."""
    sim = _sim(request)
    partner = _partner_of(sim, request)
    return _json(
        {
            "relationships": _gdap_view(sim, partner, partner.relationships),
            "security_groups": [vars(g) for g in partner.security_groups],
        }
    )


async def gdap_state(request: web.Request) -> web.Response:
    """Replace a customer's GDAP relationships with a preset (world.GDAP_STATES)."""
    sim = _sim(request)
    partner = _partner_of(sim, request)
    customer_id = request.match_info["customer"].lower()
    customer = next((c for c in partner.customers if c.tenant_id == customer_id), None)
    if customer is None:
        return _bad("no such customer of this partner", 404)
    body = await _body(request)
    unknown = set(body) - {"state", "user", "group"}
    if unknown:
        return _bad(f"unknown fields: {', '.join(sorted(unknown))}")
    user = None
    if body.get("user") is not None:
        found = sim.world.user(str(body["user"]))
        if found is None or found[1] is not partner:
            return _bad("no such user in this partner's tenant", 404)
        user = found[0]
    try:
        relationships = sim.world.set_gdap_state(
            partner, customer, str(body.get("state")), now=sim.clock.now(), user=user, group=body.get("group")
        )
    except ValueError as exc:
        return _bad(str(exc))
    return _json(
        {
            "customer": customer.tenant_id,
            "state": body.get("state"),
            "relationships": _gdap_view(sim, partner, relationships),
            "security_groups": [vars(g) for g in partner.security_groups],
        }
    )


async def gdap_group_members(request: web.Request) -> web.Response:
    """Set the members (object ids or UPNs of the partner's users) of one of the partner's security groups."""
    sim = _sim(request)
    partner = _partner_of(sim, request)
    group_id = request.match_info["group"].lower()
    if group_id == gdap.group_id(partner.tenant_id, gdap.ADMIN_AGENTS_GROUP):
        return _bad("AdminAgents' members are the users whose admin_agent is set (update_user)")
    group = partner.group(group_id)
    if group is None:
        return _bad("no such security group in this partner's tenant", 404)
    body = await _body(request)
    members = body.get("members")
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        return _bad("members must be a list of user object ids or UPNs")
    oids = []
    for key in members:
        found = sim.world.user(key)
        if found is None or found[1] is not partner:
            return _bad(f"no user {key!r} in this partner's tenant", 404)
        oids.append(found[0].oid)
    group.members = list(dict.fromkeys(oids))
    return _json(vars(group))


async def consents(request: web.Request) -> web.Response:
    """Create (POST) or remove (DELETE) an ApplicationConsent as Partner Center would: Partner Center's record and,
    in the customer tenant, the app's service principal and grants."""
    sim = _sim(request)
    if request.method == "DELETE":
        customer_id = request.match_info["customer"].lower()
        application_id = request.match_info["application"].lower()
        removed = sim.app_consents.get(customer_id, {}).pop(application_id, None)
        tenant = sim.world.directory(customer_id)
        gone = tenant.remove_app(application_id) if tenant is not None else False
        return _json({"removed": removed is not None or gone})
    body = await _body(request)
    customer = str(body.get("customer", "")).lower()
    application = str(body.get("application_id") or sim.world.cpv_app.client_id).lower()
    grants = body.get("grants") or [
        {
            "enterpriseApplicationId": GRAPH_APP_ID,
            "scope": "Domain.ReadWrite.All,User.ReadWrite.All,Directory.Read.All",
        }
    ]
    partners = sim.world.partners_of(customer)
    if not partners:
        return _bad("no such customer", 404)
    app = sim.world.app(application)
    if app is None:
        return _bad("no such application")
    try:
        sim.world.consent_app(customer, app, consent_grants(grants), now=sim.clock.now())
    except MissingResource as missing:
        return _bad(f"the customer tenant has no service principal for {missing.app_id} (remove_workload?)")
    except (KeyError, AttributeError, TypeError):
        return _bad("grants must be a list of {enterpriseApplicationId, scope}")
    record = ApplicationConsentRecord(
        customer_tenant_id=customer,
        application_id=application,
        display_name=str(body.get("display_name", sim.world.cpv_app.display_name)),
        grants=grants,
        created_at=sim.clock.now(),
        partner_tenant_id=partners[0].tenant_id,
        created_by=None,
    )
    sim.app_consents.setdefault(customer, {})[application] = record
    return _json(record.to_dict(), 201)


# ----- customer tenants: service principals, grants, workloads, Graph throttling -----
def _tenant(sim: Simulator, request: web.Request) -> Directory:
    found = sim.world.directory(request.match_info["tenant"])
    if found is None:
        raise web.HTTPNotFound(text=json.dumps({"error": "no such customer tenant"}), content_type="application/json")
    return found


def _application(sim: Simulator, request: web.Request) -> str:
    return str(request.match_info.get("application") or sim.world.cpv_app.client_id).lower()


def _directory_view(tenant: Directory) -> dict[str, Any]:
    """The tenant's service principals and grants as Graph shows them, and its workloads."""
    return {
        "tenant_id": tenant.tenant_id,
        "workloads": tenant.workloads(),
        "service_principals": [directory.service_principal_json(sp) for sp in tenant.service_principals],
        "oauth2_permission_grants": [directory.grant_json(g) for g in tenant.grants],
    }


async def tenant_directory(request: web.Request) -> web.Response:
    return _json(_directory_view(_tenant(_sim(request), request)))


async def narrow_grants(request: web.Request) -> web.Response:
    """Drift: take `permissions` out of the app's grants (on `resource`, an app id, or on every resource)."""
    sim = _sim(request)
    tenant = _tenant(sim, request)
    body = await _body(request)
    unknown = set(body) - {"permissions", "resource"}
    if unknown:
        return _bad(f"unknown fields: {', '.join(sorted(unknown))}")
    permissions = body.get("permissions")
    if not isinstance(permissions, list) or not permissions or not all(isinstance(p, str) for p in permissions):
        return _bad("permissions must be a non-empty list of permission names")
    resource = body.get("resource")
    if resource is not None and not isinstance(resource, str):
        return _bad("resource must be the resource's app id")
    application = _application(sim, request)
    if tenant.by_app_id(application) is None:
        return _bad("the application has no service principal in this tenant", 404)
    changed = tenant.narrow(application, resource, permissions)
    return _json({"changed": changed, **_directory_view(tenant)})


async def delete_grants(request: web.Request) -> web.Response:
    """Drift: delete every grant of the app in the tenant (its service principal stays)."""
    sim = _sim(request)
    tenant = _tenant(sim, request)
    return _json({"removed": tenant.remove_grants(_application(sim, request)), **_directory_view(tenant)})


async def delete_service_principal(request: web.Request) -> web.Response:
    """Drift: delete the app's service principal in the tenant (its grants go with it)."""
    sim = _sim(request)
    tenant = _tenant(sim, request)
    return _json({"removed": tenant.remove_app(_application(sim, request)), **_directory_view(tenant)})


async def workload(request: web.Request) -> web.Response:
    """PUT: the tenant has the workload (its resource service principal); DELETE: it has not (not licensed)."""
    sim = _sim(request)
    tenant = _tenant(sim, request)
    name = request.match_info["workload"]
    if name not in directory.WORKLOADS:
        return _bad(f"unknown workload {name!r}; one of {', '.join(directory.WORKLOADS)}")
    if request.method == "PUT":
        tenant.add_workload(name)
        return _json({"changed": True, **_directory_view(tenant)})
    try:
        removed = tenant.remove_workload(name)
    except ValueError as exc:
        return _bad(str(exc))
    return _json({"changed": removed, **_directory_view(tenant)})


async def consent_state(request: web.Request) -> web.Response:
    """Arrange the CPV app's consent in a customer tenant as a preset (world.CONSENT_STATES)."""
    sim = _sim(request)
    tenant = _tenant(sim, request)
    body = await _body(request)
    state = str(body.get("state"))
    try:
        sim.world.set_consent_state(tenant.tenant_id, state, now=sim.clock.now())
    except ValueError as exc:
        return _bad(str(exc))
    app_id = sim.world.cpv_app.client_id
    sim.app_consents.get(tenant.tenant_id, {}).pop(app_id, None)
    if state != "none":
        grants = [{"enterpriseApplicationId": a, "scope": ",".join(n)} for a, n in SHOWCASE_GRANTS]
        sim.app_consents.setdefault(tenant.tenant_id, {})[app_id] = ApplicationConsentRecord(
            customer_tenant_id=tenant.tenant_id,
            application_id=app_id,
            display_name=sim.world.cpv_app.display_name,
            grants=grants,
            created_at=sim.clock.now(),
            partner_tenant_id=None,
            created_by=None,
        )
    return _json({"state": state, **_directory_view(tenant)})


async def graph_throttle(request: web.Request) -> web.Response:
    """POST `{"times": n, "retry_after": s}`: Graph answers the tenant's next n requests 429 with Retry-After s;
    DELETE: no more."""
    sim = _sim(request)
    tenant = _tenant(sim, request)
    if request.method == "DELETE":
        sim.graph_throttles.pop(tenant.tenant_id, None)
        return _json({"tenant_id": tenant.tenant_id, "times": 0})
    body = await _body(request)
    unknown = set(body) - {"times", "retry_after"}
    if unknown:
        return _bad(f"unknown fields: {', '.join(sorted(unknown))}")
    times, retry_after = body.get("times", 1), body.get("retry_after", 10)
    if not isinstance(times, int) or times < 1 or not isinstance(retry_after, int) or retry_after < 0:
        return _bad("times must be a positive integer and retry_after a whole number of seconds")
    sim.graph_throttles[tenant.tenant_id] = [times, retry_after]
    return _json({"tenant_id": tenant.tenant_id, "times": times, "retry_after": retry_after})


async def revoke_grants(request: web.Request) -> web.Response:
    """An administrator removes what a tenant granted an app (its delegated permission grants); `client_id` left
    out: every app's. With `permissions` (comma-separated) in the query, only those permissions go, from every
    resource's grant (an administrator narrowing a grant's scope)."""
    sim = _sim(request)
    tid = request.match_info["tenant"].lower()
    client_id = request.match_info.get("client_id")
    only = {p for p in request.query.get("permissions", "").split(",") if p}
    keys = [key for key in sim.entra.grants if key[0] == tid and client_id in (None, key[1])]
    for key in keys:
        if not only:
            del sim.entra.grants[key]
            continue
        for granted in sim.entra.grants[key].values():
            granted.difference_update(only)
    return _json({"removed": len(keys)})


async def tokens(request: web.Request) -> web.Response:
    """A refresh token for a user, as if they had consented (tests that skip the browser flow)."""
    sim = _sim(request)
    body = await _body(request)
    user, partner = _find_user(sim, str(body.get("user", "")))
    client_id = str(body.get("client_id") or sim.world.cpv_app.client_id)
    app = sim.world.app(client_id)
    if app is None:
        return _bad("no such client id")
    scope = str(body.get("scope") or f"{PARTNER_CENTER_RESOURCE}/user_impersonation openid profile offline_access")
    try:
        refresh = issue_refresh_token_directly(
            sim, user=user, partner=partner, app=app, scope=scope, mfa=body.get("mfa"), prompt=body.get("prompt")
        )
    except EntraFailure as failure:
        # what the sign-in page would have refused (an admin-restricted permission, an unknown scope...)
        _, answer = error_body(failure.code, now=sim.clock.now(), authority=sim.authority, **failure.fields)
        return _bad(answer["error_description"])
    return _json({"refresh_token": refresh, "user": user.oid, "tenant_id": partner.tenant_id}, 201)


async def issued(request: web.Request) -> web.Response:
    sim = _sim(request)
    kind = request.query.get("kind")
    return _json({"secrets": sim.issued.values(kind), "markers": ["SIMCANARY", sim.signer.prefix]})


async def reset(request: web.Request) -> web.Response:
    _sim(request).reset()
    return _json({"ok": True})


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{PREFIX}/", index)
    r.add_get(f"{PREFIX}/health", health)
    r.add_get(f"{PREFIX}/env", env)
    r.add_get(f"{PREFIX}/world", world)
    r.add_get(f"{PREFIX}/log", get_log)
    r.add_delete(f"{PREFIX}/log", clear_log)
    r.add_get(f"{PREFIX}/state", state)
    r.add_get(f"{PREFIX}/clock", clock)
    r.add_post(f"{PREFIX}/clock", clock)
    r.add_get(f"{PREFIX}/settings", settings)
    r.add_post(f"{PREFIX}/settings", settings)
    r.add_post(PREFIX + "/users/{user}/revoke", revoke_user)
    r.add_patch(PREFIX + "/users/{user}", update_user)
    r.add_patch(PREFIX + "/partners/{partner}", update_partner)
    r.add_patch(PREFIX + "/apps/{client_id}", update_app)
    r.add_patch(f"{PREFIX}/vendor", update_vendor)
    r.add_post(PREFIX + "/partners/{partner}/customers", add_customers)
    r.add_delete(PREFIX + "/partners/{partner}/customers/{customer}", remove_customer)
    r.add_get(PREFIX + "/partners/{partner}/gdap", gdap_relationships)
    r.add_post(PREFIX + "/partners/{partner}/gdap/{customer}", gdap_state)
    r.add_put(PREFIX + "/partners/{partner}/groups/{group}/members", gdap_group_members)
    r.add_get(f"{PREFIX}/faults", faults)
    r.add_post(f"{PREFIX}/faults", faults)
    r.add_delete(f"{PREFIX}/faults", faults)
    r.add_delete(PREFIX + "/faults/{fault}", delete_fault)
    r.add_post(f"{PREFIX}/entra-errors", entra_error)
    r.add_post(f"{PREFIX}/consents", consents)
    r.add_delete(PREFIX + "/consents/{customer}/{application}", consents)
    r.add_post(f"{PREFIX}/tokens", tokens)
    r.add_delete(PREFIX + "/grants/{tenant}", revoke_grants)
    r.add_delete(PREFIX + "/grants/{tenant}/{client_id}", revoke_grants)
    tenants = PREFIX + "/tenants/{tenant}"
    r.add_get(tenants + "/directory", tenant_directory)
    r.add_patch(tenants + "/grants", narrow_grants)
    r.add_patch(tenants + "/grants/{application}", narrow_grants)
    r.add_delete(tenants + "/grants", delete_grants)
    r.add_delete(tenants + "/grants/{application}", delete_grants)
    r.add_delete(tenants + "/service-principal", delete_service_principal)
    r.add_delete(tenants + "/service-principal/{application}", delete_service_principal)
    r.add_put(tenants + "/workloads/{workload}", workload)
    r.add_delete(tenants + "/workloads/{workload}", workload)
    r.add_post(tenants + "/consent-state", consent_state)
    r.add_post(tenants + "/graph-throttle", graph_throttle)
    r.add_delete(tenants + "/graph-throttle", graph_throttle)
    r.add_get(f"{PREFIX}/issued", issued)
    r.add_post(f"{PREFIX}/reset", reset)
    managed_identity.control_setup(app, PREFIX)

"""Simulated Partner Center REST API: customers (paged), ApplicationConsent, organization profile."""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import uuid
from typing import Any

from aiohttp import web

from simulator import gdap
from simulator.bearer import BearerError, bearer_token, verify_bearer
from simulator.clouds import clouds_served
from simulator.directory import MissingResource
from simulator.entra import SIM_KEY
from simulator.requestlog import LOG_KEY
from simulator.state import ApplicationConsentRecord, Simulator, TokenBucket, consent_grants
from simulator.world import PARTNER_CENTER_RESOURCE, Customer, Partner, User

logger = logging.getLogger(__name__)

# set by _authorize once the bearer token was read, when the request asked for `ValidateMfa: true`
MFA_COMPLIANT_KEY: web.RequestKey[bool] = web.RequestKey("pc_is_mfa_compliant", bool)
MFA_COMPLIANT = "isMfaCompliant"
MFA_REQUIRED_CODE = 900421
# GUESS: Microsoft publishes the code (900421) and the status (401), not the description of the 2026 answer;
# this is the text Partner Center gave for its earlier MFA refusal (code 10001).
MFA_REQUIRED_DESCRIPTION = "Authentication failed. MFA required."
_GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
DEFAULT_PAGE_SIZE = 100


def pc_error(
    request: web.Request,
    status: int,
    code: int | str,
    description: str,
    *,
    headers: dict[str, str] | None = None,
) -> web.Response:
    entry = request.get(LOG_KEY)
    if entry is not None:
        entry["detail"]["error"] = description
        entry["detail"]["error_code"] = str(code)
    body: dict[str, Any] = {
        # "code | string | Always returned" (Partner Center REST error codes)
        "code": str(code),
        "description": description,
        "data": [],
        "source": "PartnerFD" if status == 401 else "PartnerCenter",
    }
    return _json(request, body, status=status, headers=headers)


def _json(request: web.Request, body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    out = {
        "MS-RequestId": request.headers.get("MS-RequestId") or str(uuid.uuid4()),
        "MS-CorrelationId": request.headers.get("MS-CorrelationId") or str(uuid.uuid4()),
    }
    compliant = request.get(MFA_COMPLIANT_KEY)
    if compliant is not None:
        # Microsoft's announcement: "check the isMfaCompliant field in the response"; no page says whether a
        # body field or a header, so the setting picks (a body that is not a JSON object falls back to the header)
        if request.app[SIM_KEY].settings.pc_mfa_compliant_in == "body" and isinstance(body, dict):
            body = {**body, MFA_COMPLIANT: compliant}
        else:
            out[MFA_COMPLIANT] = "true" if compliant else "false"
    out.update(headers or {})
    text = "" if body is None else json.dumps(body, separators=(",", ":"))
    return web.Response(text=text, status=status, content_type="application/json", charset="utf-8", headers=out)


def _wants_mfa_validation(request: web.Request) -> bool:
    """`ValidateMfa: true` (header name and value compared case-insensitively)."""
    return request.headers.get("ValidateMfa", "").strip().lower() == "true"


def _authorize(request: web.Request) -> tuple[Partner, User | None, dict[str, Any]] | web.Response:
    """The partner (and user) behind the bearer token, or the error answer.

    Order of the checks: bearer token present (401), valid signature / audience / issuer / lifetime (401);
    from here on the token has been read, so `ValidateMfa: true` gets `isMfaCompliant` on the answer;
    throttle per application id (429), the token's tenant is a Partner Center account (403), App+User token
    (403), the user belongs to that partner tenant (403), MFA in `amr` when `pc_require_mfa` (401, code
    900421), the Admin Agent role when `pc_require_admin_agent` (403).
    """
    sim: Simulator = request.app[SIM_KEY]
    try:
        token = bearer_token(request)
        if token is None:
            return pc_error(request, 401, 401, "Authorization header is missing.")
        # the global endpoint is also Partner Center for Microsoft Cloud for US Government: it takes tokens of US
        # Government's Entra ID (FIDELITY.md, "National clouds")
        claims, token_cloud = verify_bearer(
            sim, token, PARTNER_CENTER_RESOURCE, clouds=clouds_served(sim.cloud, "partner_center")
        )
    except BearerError as exc:
        return pc_error(request, 401, 401, f"Unauthorized: {exc.reason}.")
    detail = request[LOG_KEY]["detail"]
    detail["token_cloud"] = token_cloud
    mfa = "mfa" in (claims.get("amr") or [])
    if _wants_mfa_validation(request):
        request[MFA_COMPLIANT_KEY] = mfa
        detail["mfa_compliant"] = mfa
    app_id = str(claims.get("appid") or claims.get("azp") or "")
    detail["app_id"] = app_id
    detail["tid"] = claims.get("tid")
    detail["iss"], detail["aud"] = claims.get("iss"), claims.get("aud")
    settings = sim.settings
    if settings.pc_rate_limit:
        bucket = sim.pc_buckets.get(app_id)
        burst = settings.pc_burst or settings.pc_rate_limit
        if bucket is None or bucket.rate != settings.pc_rate_limit or bucket.burst != burst:
            bucket = sim.pc_buckets[app_id] = TokenBucket(settings.pc_rate_limit, burst)
        wait = bucket.take()
        if wait > 0:
            detail["throttled"] = True
            retry_after = str(max(1, math.ceil(wait)))
            return pc_error(
                request,
                429,
                429,
                f"Rate limit is exceeded. Try again in {retry_after} seconds.",
                headers={"Retry-After": retry_after},
            )
    partner = sim.world.partner(str(claims.get("tid", "")))
    if partner is None:
        return pc_error(request, 403, 403, "The tenant of this token is not a Partner Center account.")
    if claims.get("idtyp") == "app" or "scp" not in claims:
        return pc_error(request, 403, 403, "App+User authentication is required for this operation.")
    registered = sim.world.app(app_id)
    if registered is not None and not registered.cpv_enrolled:
        # GUESS: Microsoft documents that CPV apps must be enrolled in Partner Center, not the answer to one that is
        # not; a 403 after the token's checks is the simulator's choice
        return pc_error(request, 403, 403, "The application is not registered for Partner Center API access.")
    found = sim.world.user(str(claims.get("oid", "")))
    user = found[0] if found and found[1].tenant_id == partner.tenant_id else None
    if user is None:
        return pc_error(request, 403, 403, "The user of this token was not found in the partner's tenant.")
    detail["user"] = user.oid
    if settings.pc_require_mfa and not mfa:
        # enforced on App+User calls since 2026-04-01: 401 with error code 900421
        return pc_error(request, 401, MFA_REQUIRED_CODE, MFA_REQUIRED_DESCRIPTION)
    if settings.pc_require_admin_agent and not user.admin_agent:
        return pc_error(request, 403, 403, "The user does not have the Admin Agent role in Partner Center.")
    return partner, user, claims


def _customer_json(customer: Customer, relationship: str = "reseller") -> dict[str, Any]:
    return {
        "id": customer.tenant_id,
        "commerceId": customer.commerce_id,
        "companyProfile": {
            "tenantId": customer.tenant_id,
            "domain": customer.domain,
            "companyName": customer.company_name,
            "attributes": {"objectType": "CustomerCompanyProfile"},
        },
        "relationshipToPartner": customer.relationship or relationship,
        "allowDelegatedAccess": True,
        "links": {"self": {"uri": f"/customers/{customer.tenant_id}", "method": "GET", "headers": []}},
        "attributes": {"objectType": "Customer"},
    }


def _encode_continuation(offset: int) -> str:
    return base64.b64encode(json.dumps({"offset": offset, "v": 1}).encode()).decode()


def _decode_continuation(token: str) -> int:
    data = json.loads(base64.b64decode(token.encode(), validate=True))
    offset = int(data["offset"])
    if offset < 0:
        raise ValueError("negative offset")
    return offset


async def handle_customers(request: web.Request) -> web.Response:
    sim: Simulator = request.app[SIM_KEY]
    found = _authorize(request)
    if isinstance(found, web.Response):
        return found
    partner, _, _ = found
    try:
        size = int(request.query.get("size", DEFAULT_PAGE_SIZE))
    except ValueError:
        return pc_error(request, 400, 400, "The size parameter must be an integer.")
    if size < 1:
        return pc_error(request, 400, 400, "The size parameter must be at least 1.")
    size = min(size, sim.settings.pc_max_page_size)
    offset = 0
    continuation = request.headers.get("MS-ContinuationToken")
    if continuation:
        try:
            offset = _decode_continuation(continuation)
        except (ValueError, KeyError, TypeError):
            return pc_error(request, 400, 400, "The continuation token is invalid.")
    customers = partner.customers
    page = customers[offset : offset + size]
    prefix = "/v1" if sim.settings.pc_next_link == "v1" else ""
    links: dict[str, Any] = {"self": {"uri": f"{prefix}/customers?size={size}", "method": "GET", "headers": []}}
    if offset + size < len(customers):
        links["next"] = {
            "uri": f"{prefix}/customers?size={size}",
            "method": "GET",
            "headers": [{"key": "MS-ContinuationToken", "value": _encode_continuation(offset + size)}],
        }
    request[LOG_KEY]["detail"]["page_offset"] = offset
    request[LOG_KEY]["detail"]["items"] = len(page)
    body = {
        "totalCount": len(page),
        "items": [_customer_json(c) for c in page],
        "links": links,
        "attributes": {"objectType": "Collection"},
    }
    return _json(request, body)


def _find_customer(partner: Partner, customer_id: str) -> Customer | None:
    lowered = customer_id.lower()
    for customer in partner.customers:
        if customer.tenant_id == lowered:
            return customer
    return None


async def handle_customer(request: web.Request) -> web.Response:
    found = _authorize(request)
    if isinstance(found, web.Response):
        return found
    partner, _, _ = found
    customer = _find_customer(partner, request.match_info["customer"])
    if customer is None:
        return pc_error(request, 404, 600, "Customer not found.")
    return _json(request, _customer_json(customer))


def _validate_consent_body(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    app_id = body.get("applicationId")
    if not isinstance(app_id, str) or not _GUID_RE.match(app_id):
        return "applicationId must be a GUID."
    if not isinstance(body.get("displayName"), str) or not body["displayName"].strip():
        return "displayName is required."
    grants = body.get("applicationGrants")
    if not isinstance(grants, list) or not grants:
        return "applicationGrants must be a non-empty list."
    for grant in grants:
        if not isinstance(grant, dict):
            return "Each application grant must be an object."
        enterprise = grant.get("enterpriseApplicationId")
        if not isinstance(enterprise, str) or not _GUID_RE.match(enterprise):
            return "enterpriseApplicationId must be a GUID."
        if not isinstance(grant.get("scope"), str) or not grant["scope"].strip():
            return "scope is required (comma-separated permission names)."
    return None


async def handle_create_consent(request: web.Request) -> web.Response:
    sim: Simulator = request.app[SIM_KEY]
    found = _authorize(request)
    if isinstance(found, web.Response):
        return found
    partner, user, _ = found
    customer = _find_customer(partner, request.match_info["customer"])
    if customer is None:
        return pc_error(request, 404, 600, "Customer not found.")
    if user is not None and not _may_consent(sim, partner, user, customer):
        request[LOG_KEY]["detail"]["gdap"] = "denied"
        # "This API requires the calling partner user to be a member of a security group that has a GDAP
        # relationship with the target customer" holding one of the consenting roles, and of AdminAgents
        # (gdap-and-secure-application-model); the code and the words are a GUESS
        return pc_error(
            request,
            403,
            403,
            "The calling user is not authorized to consent to an application for this customer: it needs an active "
            "GDAP relationship with the customer that assigns Global Administrator, Application Administrator, "
            "Cloud Application Administrator or Privileged Role Administrator to a security group the user is a "
            "member of, and membership of the AdminAgents group.",
        )
    try:
        body = await request.json()
    except ValueError:
        return pc_error(request, 400, 400, "The request body is not valid JSON.")
    problem = _validate_consent_body(body)
    if problem:
        return pc_error(request, 400, 400, problem)
    app_id = body["applicationId"].lower()
    detail = request[LOG_KEY]["detail"]
    detail["customer"] = customer.tenant_id
    detail["application_id"] = app_id
    # the app registered in the cloud of the caller's token (US Government's, at the global endpoint)
    app = sim.view(str(detail.get("token_cloud", sim.cloud))).app_here(app_id)
    if app is None:
        return pc_error(request, 400, 400, f"Application {app_id} was not found.")
    existing = sim.app_consents.setdefault(customer.tenant_id, {})
    tenant = sim.world.directory(customer.tenant_id)
    if tenant is None:  # a customer of the partner always has one
        return pc_error(request, 404, 600, "Customer not found.")
    # GUESS: "already exists" is the app's service principal being in the customer tenant (a consent whose service
    # principal was deleted there can be made again)
    if tenant.by_app_id(app_id) is not None:
        detail["exists"] = True
        if sim.settings.pc_consent_exists == "409":
            return pc_error(request, 409, 409, "Permission entry already exists.")
        return pc_error(request, 400, 600041, "Permission entry already exists.")
    grants = [
        {"enterpriseApplicationId": g["enterpriseApplicationId"].lower(), "scope": g["scope"]}
        for g in body["applicationGrants"]
    ]
    try:
        sim.world.consent_app(
            customer.tenant_id,
            app,
            consent_grants(grants),
            now=sim.clock.now(),
            create_missing=sim.settings.pc_consent_missing_resource == "create",
        )
    except MissingResource as missing:
        # GUESS: that Partner Center refuses at all (it may make the missing service principal instead, as Entra's
        # consent does: the setting pc_consent_missing_resource="create"), the code and the words; nothing is made
        return pc_error(
            request,
            400,
            400,
            f"The service principal of the resource application {missing.app_id} was not found in the customer tenant.",
        )
    existing[app_id] = ApplicationConsentRecord(
        customer_tenant_id=customer.tenant_id,
        application_id=app_id,
        display_name=body["displayName"],
        grants=grants,
        created_at=sim.clock.now(),
        partner_tenant_id=partner.tenant_id,
        created_by=user.oid if user else None,
    )
    return _json(
        request,
        {"applicationId": app_id, "displayName": body["displayName"], "applicationGrants": grants},
        status=201,
    )


def _may_consent(sim: Simulator, partner: Partner, user: User, customer: Customer) -> bool:
    """May `user` create an ApplicationConsent in the customer's tenant: a member of AdminAgents holding, through
    an active access assignment of an active GDAP relationship, one of gdap.CONSENT_ROLES there."""
    held = partner.gdap_roles(user, customer.tenant_id, sim.clock.now())
    return user.admin_agent and bool(held & gdap.CONSENT_ROLES)


async def handle_delete_consent(request: web.Request) -> web.Response:
    sim: Simulator = request.app[SIM_KEY]
    found = _authorize(request)
    if isinstance(found, web.Response):
        return found
    partner, _, _ = found
    customer = _find_customer(partner, request.match_info["customer"])
    if customer is None:
        return pc_error(request, 404, 600, "Customer not found.")
    app_id = request.match_info["application"].lower()
    detail = request[LOG_KEY]["detail"]
    detail["customer"] = customer.tenant_id
    detail["application_id"] = app_id
    sim.app_consents.get(customer.tenant_id, {}).pop(app_id, None)
    tenant = sim.world.directory(customer.tenant_id)
    # the app's service principal goes, and its grants with it (GUESS: what Partner Center removes is not documented)
    if tenant is None or not tenant.remove_app(app_id):
        return pc_error(request, 404, 404, "Permission entry not found.")
    # the Control Panel Vendor API page documents 200 (and 201) for the DELETE, no 204; it shows no body (GUESS)
    return _json(request, None, status=200)


async def handle_organization_profile(request: web.Request) -> web.Response:
    found = _authorize(request)
    if isinstance(found, web.Response):
        return found
    partner, user, _ = found
    admin = next((u for u in partner.users if u.global_admin), user)
    body = {
        "id": partner.tenant_id,
        "tenantId": partner.tenant_id,
        "domain": partner.domain,
        "companyName": partner.name,
        "mpnId": partner.mpn_id,
        "email": admin.upn if admin else "",
        "culture": "en-US",
        "language": "en",
        "defaultAddress": {
            "country": "US",
            "city": "Redmond",
            "addressLine1": "1 Simulated Way",
            "postalCode": "98052",
        },
        "links": {"self": {"uri": "/profiles/organization", "method": "GET", "headers": []}},
        "attributes": {"objectType": "OrganizationProfile"},
    }
    return _json(request, body)


def setup(app: web.Application) -> None:
    for prefix in ("/v1", ""):
        app.router.add_get(f"{prefix}/customers", handle_customers)
        app.router.add_get(prefix + "/customers/{customer}", handle_customer)
        app.router.add_post(prefix + "/customers/{customer}/applicationconsents", handle_create_consent)
        app.router.add_delete(prefix + "/customers/{customer}/applicationconsents/{application}", handle_delete_consent)
        app.router.add_get(f"{prefix}/profiles/organization", handle_organization_profile)

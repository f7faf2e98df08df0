"""A small Microsoft Graph: the signed-in user, its organization, its memberships and the partner's GDAP.

`GET /v1.0/me`, `GET /v1.0/organization`, `GET /v1.0/me/memberOf` and `GET /v1.0/me/transitiveMemberOf` (with
the OData casts `/microsoft.graph.directoryRole` and `/microsoft.graph.group`), `POST /v1.0/me/checkMemberGroups`,
and `GET /v1.0/tenantRelationships/delegatedAdminRelationships[/{id}[/accessAssignments]]`, answered with Graph's
collection shape, permissions and "limited information" rule. See FIDELITY.md for the sources.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
import re
import uuid
from typing import Any
from urllib.parse import quote

from aiohttp import web

from simulator import directory, gdap
from simulator.bearer import BearerError, bearer_token, check_bearer
from simulator.directory import Directory
from simulator.entra import SIM_KEY
from simulator.requestlog import LOG_KEY
from simulator.state import Simulator
from simulator.world import GLOBAL_ADMIN_ROLE_ID, GRAPH_RESOURCE, Home, Partner, User

logger = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 999
# user-list-memberof / user-list-transitivememberof: delegated permissions that list the signed-in user's
# memberships (User.Read is the least privileged). Directory.AccessAsUser.All is not in those tables: GUESS
# that it works, as it grants "the same access to information in the directory as the signed-in user".
MEMBERSHIP_PERMISSIONS = frozenset(
    {
        "User.Read",
        "User.Read.All",
        "User.ReadWrite.All",
        "GroupMember.Read.All",
        "Group.Read.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
        "Directory.AccessAsUser.All",
    }
)
# directoryrole-get: who may read directoryRole objects; without one of these, roles come back with limited
# information (only @odata.type and id).
ROLE_READ_PERMISSIONS = frozenset(
    {
        "RoleManagement.Read.Directory",
        "RoleManagement.ReadWrite.Directory",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
        "Directory.AccessAsUser.All",
    }
)
# group-get: who may read group objects (GroupMember.Read.All reads the groups a user belongs to)
GROUP_READ_PERMISSIONS = frozenset(
    {
        "GroupMember.Read.All",
        "Group.Read.All",
        "Group.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
        "Directory.AccessAsUser.All",
    }
)
GLOBAL_ADMIN_DESCRIPTION = (
    "Can manage all aspects of Microsoft Entra ID and Microsoft services that use Microsoft Entra identities."
)
ADMIN_AGENTS_GROUP = gdap.ADMIN_AGENTS_GROUP
DIRECTORY_ROLE = "microsoft.graph.directoryRole"
GROUP = "microsoft.graph.group"
_CASTS = {DIRECTORY_ROLE: "directoryRoles", GROUP: "groups"}
_ROLE_PROPERTIES = ("deletedDateTime", "description", "displayName", "roleTemplateId")
_GROUP_PROPERTIES = (
    "deletedDateTime",
    "classification",
    "createdDateTime",
    "creationOptions",
    "description",
    "displayName",
    "expirationDateTime",
    "groupTypes",
    "isAssignableToRole",
    "mail",
    "mailEnabled",
    "mailNickname",
    "membershipRule",
    "membershipRuleProcessingState",
    "onPremisesSyncEnabled",
    "proxyAddresses",
    "renewedDateTime",
    "securityEnabled",
    "securityIdentifier",
    "visibility",
)
_LIST_PROPERTIES = frozenset({"creationOptions", "groupTypes", "proxyAddresses"})


def _json(request: web.Request, body: Any, status: int = 200) -> web.Response:
    headers = {"request-id": _request_id(request)}
    client_request_id = request.headers.get("client-request-id")
    if client_request_id:
        headers["client-request-id"] = client_request_id
    return web.Response(
        text=json.dumps(body), status=status, content_type="application/json", charset="utf-8", headers=headers
    )


def _request_id(request: web.Request) -> str:
    entry = request.get(LOG_KEY)
    if entry is None:
        return str(uuid.uuid4())
    request_id = entry["detail"].get("request_id")
    if request_id is None:
        request_id = entry["detail"]["request_id"] = str(uuid.uuid4())
    return str(request_id)


def graph_error(request: web.Request, status: int, code: str, message: str) -> web.Response:
    """Graph's error body: `{"error": {"code", "message", "innerError": {"date", "request-id", ...}}}`."""
    entry = request.get(LOG_KEY)
    if entry is not None:
        entry["detail"]["error"] = code
    inner: dict[str, str] = {
        "date": dt.datetime.fromtimestamp(request.app[SIM_KEY].clock.now(), dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": _request_id(request),
    }
    client_request_id = request.headers.get("client-request-id")
    inner["client-request-id"] = client_request_id or inner["request-id"]
    return _json(request, {"error": {"code": code, "message": message, "innerError": inner}}, status)


def _claims(request: web.Request) -> dict[str, Any] | web.Response:
    sim: Simulator = request.app[SIM_KEY]
    try:
        token = bearer_token(request)
        if token is None:
            return graph_error(request, 401, "InvalidAuthenticationToken", "Access token is empty.")
        claims = check_bearer(sim, token, GRAPH_RESOURCE)
    except BearerError as exc:
        return graph_error(
            request, 401, "InvalidAuthenticationToken", f"Access token validation failure: {exc.reason}."
        )
    detail = request[LOG_KEY]["detail"]
    detail["tid"] = claims.get("tid")
    detail["app_id"] = str(claims.get("appid") or claims.get("azp") or "")
    detail["iss"], detail["aud"] = claims.get("iss"), claims.get("aud")
    throttled = _throttled(request, sim, str(claims.get("tid", "")))
    if throttled is not None:
        return throttled
    return claims


def _throttled(request: web.Request, sim: Simulator, tid: str) -> web.Response | None:
    """Graph's 429 (throttling.md, "Sample response") while the control call `throttle_graph` holds the tenant."""
    retry_after = sim.graph_throttle_take(tid)
    if retry_after is None:
        return None
    request[LOG_KEY]["detail"]["throttled"] = True
    response = graph_error(request, 429, "TooManyRequests", "Please retry again later.")
    body = json.loads(response.text or "{}")
    body["error"]["innerError"].update({"code": "429", "message": "Please retry after", "status": "429"})
    throttled = _json(request, body, 429)
    throttled.headers["Retry-After"] = str(retry_after)
    return throttled


def _delegated(request: web.Request, claims: dict[str, Any]) -> web.Response | None:
    """`/me` needs a signed-in user: an app-only token gets Graph's 400 (user-list-memberof: tip 1)."""
    if claims.get("idtyp") == "app" or "scp" not in claims:
        return graph_error(request, 400, "BadRequest", "/me request is only valid with delegated authentication flow.")
    return None


def _scopes(claims: dict[str, Any]) -> set[str]:
    return set(str(claims.get("scp", "")).split())


async def handle_me(request: web.Request) -> web.Response:
    sim: Simulator = request.app[SIM_KEY]
    claims = _claims(request)
    if isinstance(claims, web.Response):
        return claims
    refused = _delegated(request, claims)
    if refused is not None:
        return refused
    found = sim.world.user(str(claims.get("oid", "")))
    if found is None:
        return graph_error(request, 404, "Request_ResourceNotFound", "The signed-in user was not found.")
    user, _ = found
    return _json(
        request,
        {
            "@odata.context": f"{sim.urls.graph}/v1.0/$metadata#users/$entity",
            "id": user.oid,
            "displayName": user.display_name,
            "userPrincipalName": user.upn,
            "mail": user.upn,
        },
    )


async def handle_organization(request: web.Request) -> web.Response:
    sim: Simulator = request.app[SIM_KEY]
    claims = _claims(request)
    if isinstance(claims, web.Response):
        return claims
    tid = str(claims.get("tid", ""))
    found = sim.world.tenant(tid)
    name = getattr(found[1], "name", None) or getattr(found[1], "company_name", tid) if found else tid
    domain = getattr(found[1], "domain", "") if found else ""
    return _json(
        request,
        {
            "@odata.context": f"{sim.urls.graph}/v1.0/$metadata#organization",
            "value": [{"id": tid, "displayName": name, "verifiedDomains": [{"name": domain, "isDefault": True}]}],
        },
    )


# ----- memberships -----
def directory_role_id(tenant_id: str, role_template_id: str) -> str:
    """The object id of a role activated in a tenant: stable for the tenant, not the template id."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"directoryRole:{tenant_id.lower()}:{role_template_id.lower()}"))


def group_id(tenant_id: str, display_name: str) -> str:
    return gdap.group_id(tenant_id, display_name)


def _global_admin_role(partner: Home) -> dict[str, Any]:
    return {
        "@odata.type": f"#{DIRECTORY_ROLE}",
        "id": directory_role_id(partner.tenant_id, GLOBAL_ADMIN_ROLE_ID),
        "deletedDateTime": None,
        "description": GLOBAL_ADMIN_DESCRIPTION,
        "displayName": "Global Administrator",
        "roleTemplateId": GLOBAL_ADMIN_ROLE_ID,
    }


def _security_group(partner: Home, display_name: str) -> dict[str, Any]:
    # GUESS (the fields): Microsoft documents that Admin agents are the members of the partner tenant's
    # "AdminAgents" security group, not how Graph shows that group; the user's other groups look the same.
    return {
        "@odata.type": f"#{GROUP}",
        "id": group_id(partner.tenant_id, display_name),
        "deletedDateTime": None,
        "classification": None,
        "createdDateTime": "2020-01-01T00:00:00Z",
        "creationOptions": [],
        "description": None,
        "displayName": display_name,
        "expirationDateTime": None,
        "groupTypes": [],
        "isAssignableToRole": None,
        "mail": None,
        "mailEnabled": False,
        "mailNickname": "".join(ch for ch in display_name if ch.isalnum()),
        "membershipRule": None,
        "membershipRuleProcessingState": None,
        "onPremisesSyncEnabled": None,
        "proxyAddresses": [],
        "renewedDateTime": "2020-01-01T00:00:00Z",
        "securityEnabled": True,
        "securityIdentifier": None,
        "visibility": None,
    }


def _limited(item: dict[str, Any]) -> dict[str, Any]:
    """Graph's "limited information": the type and id, every other property null (lists empty)."""
    properties = _ROLE_PROPERTIES if item["@odata.type"] == f"#{DIRECTORY_ROLE}" else _GROUP_PROPERTIES
    limited: dict[str, Any] = {"@odata.type": item["@odata.type"], "id": item["id"]}
    for name in properties:
        limited[name] = [] if name in _LIST_PROPERTIES else None
    return limited


def memberships(user: User, partner: Home, scopes: set[str]) -> list[dict[str, Any]]:
    """The user's directory roles and groups as Graph lists them (the implicit member role is not listed)."""
    items: list[dict[str, Any]] = []
    if user.global_admin:
        role = _global_admin_role(partner)
        items.append(role if scopes & ROLE_READ_PERMISSIONS else _limited(role))
    names = ([ADMIN_AGENTS_GROUP] if user.admin_agent else []) + list(user.groups)
    if isinstance(partner, Partner):
        # the tenant's security groups listing the user (GDAP access containers among them)
        names += [g.display_name for g in partner.security_groups if user.oid in g.members]
    for name in dict.fromkeys(names):
        group = _security_group(partner, name)
        items.append(group if scopes & GROUP_READ_PERMISSIONS else _limited(group))
    return items


def _encode_skiptoken(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def _page_window(request: web.Request, *, default: int, maximum: int) -> tuple[int, int] | web.Response:
    """`$top` (1 to `maximum`, `default` when absent) and the offset a `$skiptoken` names, or Graph's 400."""
    query = request.query
    try:
        top = int(query.get("$top", default))
    except ValueError:
        return graph_error(request, 400, "BadRequest", f"Invalid page size specified: '{query.get('$top')}'.")
    if not 1 <= top <= maximum:
        return graph_error(
            request,
            400,
            "Request_UnsupportedQuery",
            f"Invalid page size specified: '{top}'. Must be between 1 and {maximum} inclusive.",
        )
    offset = 0
    if "$skiptoken" in query:
        try:
            offset = _decode_skiptoken(query["$skiptoken"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            return graph_error(
                request,
                400,
                "Directory_ExpiredPageToken",
                "The specified page token value has expired and can no longer be included in your request.",
            )
    return top, offset


def _decode_skiptoken(token: str) -> int:
    data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    offset = int(data["o"])
    if offset < 0:
        raise ValueError("negative offset")
    return offset


async def handle_member_of(request: web.Request) -> web.Response:
    """`/me/memberOf`, `/me/transitiveMemberOf` and their OData casts."""
    sim: Simulator = request.app[SIM_KEY]
    relationship = request.match_info["relationship"]
    cast = request.match_info.get("cast")
    claims = _claims(request)
    if isinstance(claims, web.Response):
        return claims
    if cast is not None and cast not in _CASTS:
        # GUESS: the status and code of an unknown path segment
        return graph_error(request, 400, "BadRequest", f"Resource not found for the segment '{cast}'.")
    refused = _delegated(request, claims)
    if refused is not None:
        return refused
    query = request.query
    advanced = request.headers.get("ConsistencyLevel", "").lower() == "eventual"
    counted = query.get("$count", "").lower() == "true"
    if cast is not None and not (advanced and counted):
        # "This header and $count are required when using the $search, $filter, $orderby, or OData cast query
        # parameters" (user-list-memberof.md, user-list-transitivememberof.md); the message is a GUESS shaped on
        # aad-advanced-queries.md's example for an advanced-only operator
        return graph_error(
            request,
            400,
            "Request_UnsupportedQuery",
            "The OData cast is not supported because the required parameters might be missing. Try adding "
            "$count=true query parameter and ConsistencyLevel:eventual header. Refer to "
            "https://aka.ms/graph-docs/advanced-queries for more information",
        )
    scopes = _scopes(claims)
    if not scopes & MEMBERSHIP_PERMISSIONS:
        return graph_error(
            request, 403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
        )
    window = _page_window(request, default=DEFAULT_PAGE_SIZE, maximum=MAX_PAGE_SIZE)
    if isinstance(window, web.Response):
        return window
    top, offset = window
    select = [name.strip() for name in query.get("$select", "").split(",") if name.strip()]
    found = sim.world.user(str(claims.get("oid", "")))
    if found is None:
        return graph_error(request, 404, "Request_ResourceNotFound", "The signed-in user was not found.")
    user, partner = found
    if str(claims.get("tid", "")) != partner.tenant_id:
        # GUESS: the user is not an object of the token's (customer) tenant
        return graph_error(
            request,
            404,
            "Request_ResourceNotFound",
            f"Resource '{user.oid}' does not exist or one of its queried reference-property objects are not present.",
        )
    items = memberships(user, partner, scopes)
    if cast is not None:
        items = [item for item in items if item["@odata.type"] == f"#{cast}"]
    detail = request[LOG_KEY]["detail"]
    detail["user"] = user.oid
    detail["items"] = len(items)
    page = items[offset : offset + top]
    entity_set = _CASTS[cast] if cast is not None else "directoryObjects"
    selected = f"({','.join(select)})" if select else ""
    body: dict[str, Any] = {"@odata.context": f"{sim.urls.graph}/v1.0/$metadata#{entity_set}{selected}"}
    if advanced and counted:
        body["@odata.count"] = len(items)
    if offset + top < len(items):
        # the next page keeps the query's options; its request needs the same headers
        params = [("$top", str(top)), ("$skiptoken", _encode_skiptoken(offset + top))]
        if counted:
            params.insert(0, ("$count", "true"))
        if select:
            params.insert(0, ("$select", ",".join(select)))
        suffix = f"/{cast}" if cast is not None else ""
        link = "&".join(f"{k}={quote(v, safe=',')}" for k, v in params)
        body["@odata.nextLink"] = f"{sim.urls.graph}/v1.0/me/{relationship}{suffix}?{link}"
    body["value"] = [_shape(item, select, cast) for item in page]
    return _json(request, body)


def _shape(item: dict[str, Any], select: list[str], cast: str | None) -> dict[str, Any]:
    """`$select` keeps the named properties (unknown ones come back null); a cast drops `@odata.type`."""
    shaped: dict[str, Any] = {}
    if cast is None:
        shaped["@odata.type"] = item["@odata.type"]
    if not select:
        shaped.update({k: v for k, v in item.items() if k != "@odata.type"})
        return shaped
    for name in select:
        shaped[name] = item.get(name)
    return shaped


# ----- checkMemberGroups -----
# user-checkmembergroups (learn.microsoft.com), "Group memberships for the signed-in user" (delegated): "User.Read,
# User.ReadBasic.All and GroupMember.Read.All, User.Read.All and GroupMember.Read.All, User.ReadBasic.All and
# Group.Read.All, User.Read.All and Group.Read.All, Directory.Read.All". (The stored directoryobject page's note
# asked GroupMember.Read.All beside User.Read: the current page lists User.Read alone.)
CHECK_MEMBER_GROUPS_ALONE = frozenset({"User.Read"})
CHECK_MEMBER_GROUPS_USER = frozenset({"User.ReadBasic.All", "User.Read.All"})
CHECK_MEMBER_GROUPS_GROUP = frozenset({"GroupMember.Read.All", "Group.Read.All"})
CHECK_MEMBER_GROUPS_DIRECTORY = frozenset({"Directory.Read.All"})
CHECK_MEMBER_GROUPS_MAX = 20


def _can_check_member_groups(scopes: set[str]) -> bool:
    if scopes & (CHECK_MEMBER_GROUPS_DIRECTORY | CHECK_MEMBER_GROUPS_ALONE):
        return True
    return bool(scopes & CHECK_MEMBER_GROUPS_USER) and bool(scopes & CHECK_MEMBER_GROUPS_GROUP)


async def handle_check_member_groups(request: web.Request) -> web.Response:
    """`POST /me/checkMemberGroups {"groupIds": [...]}`: those of the ids (at most 20) the user is a member of,
    transitively, in the order asked."""
    sim: Simulator = request.app[SIM_KEY]
    claims = _claims(request)
    if isinstance(claims, web.Response):
        return claims
    refused = _delegated(request, claims)
    if refused is not None:
        return refused
    if not _can_check_member_groups(_scopes(claims)):
        return graph_error(
            request, 403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
        )
    try:
        body = await request.json()
    except ValueError:
        body = None
    ids = body.get("groupIds") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        # GUESS: the code and text of a body without a list of strings
        return graph_error(request, 400, "Request_BadRequest", "Invalid request body: groupIds must be a list.")
    if len(ids) > CHECK_MEMBER_GROUPS_MAX:
        # "Up to 20 groups may be specified"; the code and the text are a GUESS
        return graph_error(
            request,
            400,
            "Request_BadRequest",
            f"The number of groupIds ({len(ids)}) exceeds the maximum of {CHECK_MEMBER_GROUPS_MAX}.",
        )
    found = sim.world.user(str(claims.get("oid", "")))
    if found is None or str(claims.get("tid", "")) != found[1].tenant_id:
        return graph_error(
            request,
            404,
            "Request_ResourceNotFound",
            f"Resource '{claims.get('oid')}' does not exist or one of its queried reference-property objects are "
            "not present.",
        )
    user, home = found
    if isinstance(home, Partner):
        mine = home.group_ids_of(user)
    else:
        mine = {group_id(home.tenant_id, name) for name in user.groups}
    detail = request[LOG_KEY]["detail"]
    detail["user"] = user.oid
    detail["items"] = len(ids)
    answer = [i for i in ids if i.lower() in mine]
    context = f"{sim.urls.graph}/v1.0/$metadata#Collection(Edm.String)"
    return _json(request, {"@odata.context": context, "value": answer})


# ----- GDAP: tenantRelationships/delegatedAdminRelationships -----
# delegated permissions of the GDAP read APIs (tenantrelationship-list-delegatedadminrelationships.md and its
# siblings); application permissions are "Not supported" there, and the apps hold none in the world
GDAP_PERMISSIONS = frozenset({"DelegatedAdminRelationship.Read.All", "DelegatedAdminRelationship.ReadWrite.All"})
GDAP_DEFAULT_PAGE_SIZE = 100  # GUESS: the page documents only the maximum
GDAP_MAX_PAGE_SIZE = 300  # "`$top` supports up to 300 objects."
_FILTER_EQ = re.compile(r"^(status|customer/tenantId)\s+eq\s+'([^']*)'$", re.IGNORECASE)
_FILTER_IN = re.compile(r"^status\s+in\s+\(\s*('[^']*'(?:\s*,\s*'[^']*')*)\s*\)$", re.IGNORECASE)
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)


def _gdap_filter(expression: str, fields: tuple[str, ...]) -> list[tuple[str, set[str]]] | None:
    """The clauses of `$filter` (`status eq 'x'`, `status in ('x','y')`, `customer/tenantId eq 'id'`, joined by
    `and`) as (field, accepted values); None when the expression is not one of those."""
    clauses: list[tuple[str, set[str]]] = []
    for part in _AND.split(expression.strip()):
        equal = _FILTER_EQ.match(part.strip())
        within = _FILTER_IN.match(part.strip())
        if equal is not None:
            name = "status" if equal.group(1).lower() == "status" else "customer/tenantId"
            clauses.append((name, {equal.group(2)}))
        elif within is not None:
            clauses.append(("status", set(re.findall(r"'([^']*)'", within.group(1)))))
        else:
            return None
        if clauses[-1][0] not in fields:
            return None
    return clauses


def _gdap_visible(request: web.Request) -> tuple[Simulator, list[gdap.Relationship]] | web.Response:
    """The caller's relationships (moved on to the simulator's clock), or the error answer. Only a member of the
    partner's AdminAgents group sees any: for anyone else the answers are empty (microsoft-graph-docs-contrib
    issue 8921, "Returning success with empty response is by-design")."""
    sim: Simulator = request.app[SIM_KEY]
    claims = _claims(request)
    if isinstance(claims, web.Response):
        return claims
    if not _scopes(claims) & GDAP_PERMISSIONS:
        # GUESS: the GDAP API's own code for a missing permission is not documented
        return graph_error(
            request, 403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
        )
    partner = sim.world.partner(str(claims.get("tid", "")))
    found = sim.world.user(str(claims.get("oid", "")))
    if partner is None or found is None or found[1] is not partner or not found[0].admin_agent:
        return sim, []
    partner.refresh_relationships(sim.clock.now())
    request[LOG_KEY]["detail"]["user"] = found[0].oid
    return sim, partner.relationships


def _gdap_page(
    request: web.Request, items: list[Any], fields: tuple[str, ...], read: Any
) -> tuple[list[Any], int, int, int, str | None] | web.Response:
    """Filter and page: (page, offset, top, total, the filter text) or the error answer."""
    query = request.query
    try:
        top = int(query.get("$top", GDAP_DEFAULT_PAGE_SIZE))
    except ValueError:
        return graph_error(request, 400, "BadRequest", f"Invalid page size specified: '{query.get('$top')}'.")
    if not 1 <= top <= GDAP_MAX_PAGE_SIZE:
        # GUESS: the code and text of a `$top` beyond the documented 300
        return graph_error(request, 400, "BadRequest", f"The value of $top must be between 1 and {GDAP_MAX_PAGE_SIZE}.")
    offset = 0
    if "$skiptoken" in query:
        try:
            offset = _decode_skiptoken(query["$skiptoken"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            return graph_error(request, 400, "BadRequest", "The $skiptoken is not valid.")
    expression = query.get("$filter")
    if expression is not None:
        clauses = _gdap_filter(expression, fields)
        if clauses is None:
            # GUESS: the code and text of a filter the API does not support
            return graph_error(request, 400, "BadRequest", f"Invalid filter clause: {expression}")
        items = [item for item in items if all(read(item, name) in values for name, values in clauses)]
    return items[offset : offset + top], offset, top, len(items), expression


def _next_link(base: str, offset: int, top: int, total: int, expression: str | None) -> str | None:
    if offset + top >= total:
        return None
    params = ([("$filter", expression)] if expression is not None else []) + [
        ("$top", str(top)),
        ("$skiptoken", _encode_skiptoken(offset + top)),
    ]
    return base + "?" + "&".join(f"{k}={quote(v, safe=',/')}" for k, v in params)


def _relationship_field(relationship: gdap.Relationship, name: str) -> str:
    return relationship.status if name == "status" else relationship.customer_tenant_id


async def handle_relationships(request: web.Request) -> web.Response:
    """`GET /tenantRelationships/delegatedAdminRelationships`: paged (`$top` up to 300, `@odata.nextLink`),
    `$filter` on status and customer/tenantId."""
    found = _gdap_visible(request)
    if isinstance(found, web.Response):
        return found
    sim, relationships = found
    paged = _gdap_page(request, relationships, ("status", "customer/tenantId"), _relationship_field)
    if isinstance(paged, web.Response):
        return paged
    page, offset, top, total, expression = paged
    request[LOG_KEY]["detail"]["items"] = len(page)
    base = f"{sim.urls.graph}/v1.0/tenantRelationships/delegatedAdminRelationships"
    body: dict[str, Any] = {
        "@odata.context": f"{sim.urls.graph}/v1.0/tenantRelationships/$metadata#delegatedAdminRelationships"
    }
    link = _next_link(base, offset, top, total, expression)
    if link is not None:
        body["@odata.nextLink"] = link
    body["value"] = [gdap.relationship_json(r) for r in page]
    return _json(request, body)


def _find_relationship(request: web.Request, relationships: list[gdap.Relationship]) -> gdap.Relationship | None:
    wanted = request.match_info["relationship_id"].lower()
    return next((r for r in relationships if r.id.lower() == wanted), None)


def _no_relationship(request: web.Request) -> web.Response:
    # GUESS: the code and text of an id the caller does not have
    return graph_error(
        request,
        404,
        "Request_ResourceNotFound",
        f"The delegatedAdminRelationship '{request.match_info['relationship_id']}' was not found.",
    )


async def handle_relationship(request: web.Request) -> web.Response:
    """`GET /tenantRelationships/delegatedAdminRelationships/{id}`."""
    found = _gdap_visible(request)
    if isinstance(found, web.Response):
        return found
    sim, relationships = found
    relationship = _find_relationship(request, relationships)
    if relationship is None:
        return _no_relationship(request)
    context = f"{sim.urls.graph}/v1.0/tenantRelationships/$metadata#delegatedAdminRelationships/$entity"
    return _json(request, {"@odata.context": context, **gdap.relationship_json(relationship)})


async def handle_access_assignments(request: web.Request) -> web.Response:
    """`GET /tenantRelationships/delegatedAdminRelationships/{id}/accessAssignments`: paged, `$filter` on status."""
    found = _gdap_visible(request)
    if isinstance(found, web.Response):
        return found
    sim, relationships = found
    relationship = _find_relationship(request, relationships)
    if relationship is None:
        return _no_relationship(request)
    paged = _gdap_page(request, relationship.assignments, ("status",), lambda item, name: item.status)
    if isinstance(paged, web.Response):
        return paged
    page, offset, top, total, expression = paged
    base = f"{sim.urls.graph}/v1.0/tenantRelationships/delegatedAdminRelationships/{relationship.id}/accessAssignments"
    body: dict[str, Any] = {"@odata.context": f"{sim.urls.graph}/v1.0/tenantRelationships/$metadata#accessAssignments"}
    link = _next_link(base, offset, top, total, expression)
    if link is not None:
        body["@odata.nextLink"] = link
    body["value"] = [gdap.assignment_json(a) for a in page]
    return _json(request, body)


# ----- the token's tenant: servicePrincipals and oauth2PermissionGrants -----
# serviceprincipal-get / serviceprincipal-list (includes/permissions): delegated Application.Read.All (least),
# Application.ReadWrite.All, Directory.Read.All, Directory.ReadWrite.All; the older list page adds
# Directory.AccessAsUser.All
SERVICE_PRINCIPAL_PERMISSIONS = frozenset(
    {
        "Application.Read.All",
        "Application.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
        "Directory.AccessAsUser.All",
    }
)
# oauth2permissiongrant-list (includes/permissions): delegated Directory.Read.All (least),
# DelegatedPermissionGrant.ReadWrite.All, Directory.ReadWrite.All
GRANT_PERMISSIONS = frozenset(
    {"Directory.Read.All", "DelegatedPermissionGrant.ReadWrite.All", "Directory.ReadWrite.All"}
)
# serviceprincipal-get-permissions.md: application Application.Read.All (least), Application.ReadWrite.OwnedBy,
# Application.ReadWrite.All, Directory.Read.All
SERVICE_PRINCIPAL_ROLES = frozenset(
    {"Application.Read.All", "Application.ReadWrite.OwnedBy", "Application.ReadWrite.All", "Directory.Read.All"}
)
DIRECTORY_MAX_PAGE_SIZE = 999
_FILTER_CLAUSE = re.compile(r"^(\w+)\s+eq\s+'([^']*)'$", re.IGNORECASE)
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _insufficient(request: web.Request) -> web.Response:
    return graph_error(
        request, 403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
    )


def _tenant_directory(
    request: web.Request, needed: frozenset[str], roles: frozenset[str] = frozenset()
) -> tuple[Simulator, Directory] | web.Response:
    """The directory of the token's tenant, once the token holds one of `needed` (delegated) or of `roles`
    (application) (else 403)."""
    sim: Simulator = request.app[SIM_KEY]
    claims = _claims(request)
    if isinstance(claims, web.Response):
        return claims
    if not (_scopes(claims) & needed or {str(r) for r in claims.get("roles") or []} & roles):
        return _insufficient(request)
    tid = str(claims.get("tid", ""))
    found = sim.world.directory(tid)
    # a partner's or the vendor's own tenant: only Microsoft's resource service principals (not modelled further)
    return sim, found if found is not None else Directory.new(tid)


def _filter_clauses(expression: str, fields: dict[str, str]) -> list[tuple[str, str]] | None:
    """`name eq 'value'` clauses joined by `and`, on the properties `fields` names (Graph name -> attribute)."""
    clauses = []
    for part in _AND.split(expression.strip()):
        match = _FILTER_CLAUSE.match(part.strip())
        if match is None:
            return None
        name = next((f for f in fields if f.lower() == match.group(1).lower()), None)
        if name is None:
            return None
        clauses.append((fields[name], match.group(2)))
    return clauses


def _directory_page(
    request: web.Request, items: list[Any], fields: dict[str, str], base: str, context: str
) -> web.Response:
    """`$filter` (eq on `fields`), `$top` (1 to 999; default the `graph_page_size` setting) and `$skiptoken` paging,
    answered as Graph's collection."""
    sim: Simulator = request.app[SIM_KEY]
    query = request.query
    window = _page_window(request, default=sim.settings.graph_page_size, maximum=DIRECTORY_MAX_PAGE_SIZE)
    if isinstance(window, web.Response):
        return window
    top, offset = window
    expression = query.get("$filter")
    if expression is not None:
        clauses = _filter_clauses(expression, fields)
        if clauses is None:
            return graph_error(
                request, 400, "Request_UnsupportedQuery", "Unsupported or invalid query filter clause specified."
            )
        items = [
            item
            for item in items
            if all(str(getattr(item, attribute) or "").lower() == value.lower() for attribute, value in clauses)
        ]
    page = items[offset : offset + top]
    request[LOG_KEY]["detail"]["items"] = len(page)
    body: dict[str, Any] = {"@odata.context": context}
    link = _next_link(base, offset, top, len(items), expression)
    if link is not None:
        body["@odata.nextLink"] = link
    body["value"] = page
    return _json_items(request, body)


def _json_items(request: web.Request, body: dict[str, Any]) -> web.Response:
    shaped = dict(body)
    shaped["value"] = [
        directory.service_principal_json(item)
        if isinstance(item, directory.ServicePrincipal)
        else directory.grant_json(item)
        for item in body["value"]
    ]
    return _json(request, shaped)


def _not_found(request: web.Request, key: str) -> web.Response:
    return graph_error(
        request,
        404,
        "Request_ResourceNotFound",
        f"Resource '{key}' does not exist or one of its queried reference-property objects are not present.",
    )


async def handle_service_principals(request: web.Request) -> web.Response:
    """`GET /servicePrincipals` (`$filter=appId eq '…'`, paged)."""
    found = _tenant_directory(request, SERVICE_PRINCIPAL_PERMISSIONS, SERVICE_PRINCIPAL_ROLES)
    if isinstance(found, web.Response):
        return found
    sim, tenant = found
    fields = {"appId": "app_id", "displayName": "display_name", "id": "id"}
    base = f"{sim.urls.graph}/v1.0/servicePrincipals"
    context = f"{sim.urls.graph}/v1.0/$metadata#servicePrincipals"
    return _directory_page(request, list(tenant.service_principals), fields, base, context)


def _one_service_principal(request: web.Request, sim: Simulator, sp: directory.ServicePrincipal) -> web.Response:
    request[LOG_KEY]["detail"]["items"] = 1
    context = f"{sim.urls.graph}/v1.0/$metadata#servicePrincipals/$entity"
    return _json(request, {"@odata.context": context, **directory.service_principal_json(sp)})


async def handle_service_principal(request: web.Request) -> web.Response:
    """`GET /servicePrincipals/{id}`."""
    found = _tenant_directory(request, SERVICE_PRINCIPAL_PERMISSIONS, SERVICE_PRINCIPAL_ROLES)
    if isinstance(found, web.Response):
        return found
    sim, tenant = found
    key = request.match_info["object_id"]
    if not _GUID.match(key):
        # GUESS (observed): an id that is not a GUID
        return graph_error(request, 400, "Request_BadRequest", f"Invalid object identifier '{key}'.")
    sp = tenant.by_id(key)
    return _not_found(request, key) if sp is None else _one_service_principal(request, sim, sp)


async def handle_service_principal_by_app_id(request: web.Request) -> web.Response:
    """`GET /servicePrincipals(appId='{appId}')` (the token is checked before the key, as for an id)."""
    found = _tenant_directory(request, SERVICE_PRINCIPAL_PERMISSIONS, SERVICE_PRINCIPAL_ROLES)
    if isinstance(found, web.Response):
        return found
    wanted = app_id_key(request)
    if isinstance(wanted, web.Response):
        return wanted
    sim, tenant = found
    sp = tenant.by_app_id(wanted)
    return _not_found(request, wanted) if sp is None else _one_service_principal(request, sim, sp)


_ANY_APP_ID_KEY = re.compile(r"^\w+\(appId='([^']*)'\)$")


def app_id_key(request: web.Request) -> str | web.Response:
    """The appId of a `…(appId='{appId}')` key segment (servicePrincipals, applications), or Graph's 400."""
    match = _ANY_APP_ID_KEY.match(request.match_info["key"])
    if match is None:
        return graph_error(
            request, 400, "BadRequest", f"Resource not found for the segment '{request.match_info['key']}'."
        )
    return match.group(1)


async def handle_permission_grants(request: web.Request) -> web.Response:
    """`GET /oauth2PermissionGrants` (`$filter=clientId eq '…'`; consentType is documented filterable too, resourceId
    and principalId are taken as well)."""
    found = _tenant_directory(request, GRANT_PERMISSIONS)
    if isinstance(found, web.Response):
        return found
    sim, tenant = found
    fields = {
        "clientId": "client_id",
        "resourceId": "resource_id",
        "consentType": "consent_type",
        "principalId": "principal_id",
    }
    base = f"{sim.urls.graph}/v1.0/oauth2PermissionGrants"
    context = f"{sim.urls.graph}/v1.0/$metadata#oauth2PermissionGrants"
    return _directory_page(request, list(tenant.grants), fields, base, context)


def setup(app: web.Application) -> None:
    app.router.add_get("/v1.0/me", handle_me)
    app.router.add_get("/v1.0/organization", handle_organization)
    app.router.add_get("/v1.0/me/{relationship:memberOf|transitiveMemberOf}", handle_member_of)
    app.router.add_get("/v1.0/me/{relationship:memberOf|transitiveMemberOf}/{cast}", handle_member_of)
    app.router.add_get("/oidc/userinfo", handle_me)
    app.router.add_post("/v1.0/me/checkMemberGroups", handle_check_member_groups)
    relationships = "/v1.0/tenantRelationships/delegatedAdminRelationships"
    app.router.add_get(relationships, handle_relationships)
    app.router.add_get(relationships + "/{relationship_id}", handle_relationship)
    app.router.add_get(relationships + "/{relationship_id}/accessAssignments", handle_access_assignments)
    app.router.add_get("/v1.0/servicePrincipals", handle_service_principals)
    app.router.add_get("/v1.0/servicePrincipals/{object_id}", handle_service_principal)
    app.router.add_get(r"/v1.0/{key:servicePrincipals\(.*\)}", handle_service_principal_by_app_id)
    app.router.add_get("/v1.0/oauth2PermissionGrants", handle_permission_grants)

"""A minimal Microsoft Graph: enough for a token to be checked (`/v1.0/me`, `/v1.0/organization`)."""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from simulator.bearer import BearerError, bearer_token, check_bearer
from simulator.entra import SIM_KEY
from simulator.requestlog import LOG_KEY
from simulator.state import Simulator
from simulator.world import GRAPH_RESOURCE

logger = logging.getLogger(__name__)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json", charset="utf-8")


def _graph_error(status: int, code: str, message: str) -> web.Response:
    return _json({"error": {"code": code, "message": message, "innerError": {}}}, status)


def _claims(request: web.Request) -> dict[str, Any] | web.Response:
    sim: Simulator = request.app[SIM_KEY]
    try:
        token = bearer_token(request)
        if token is None:
            return _graph_error(401, "InvalidAuthenticationToken", "Access token is empty.")
        claims = check_bearer(sim, token, GRAPH_RESOURCE)
    except BearerError as exc:
        return _graph_error(401, "InvalidAuthenticationToken", f"Access token validation failure: {exc.reason}.")
    request[LOG_KEY]["detail"]["tid"] = claims.get("tid")
    return claims


async def handle_me(request: web.Request) -> web.Response:
    sim: Simulator = request.app[SIM_KEY]
    claims = _claims(request)
    if isinstance(claims, web.Response):
        return claims
    found = sim.world.user(str(claims.get("oid", "")))
    if found is None:
        return _graph_error(404, "Request_ResourceNotFound", "The signed-in user was not found.")
    user, _ = found
    return _json(
        {
            "@odata.context": f"{sim.urls.graph}/v1.0/$metadata#users/$entity",
            "id": user.oid,
            "displayName": user.display_name,
            "userPrincipalName": user.upn,
            "mail": user.upn,
        }
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
        {
            "@odata.context": f"{sim.urls.graph}/v1.0/$metadata#organization",
            "value": [{"id": tid, "displayName": name, "verifiedDomains": [{"name": domain, "isDefault": True}]}],
        }
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/v1.0/me", handle_me)
    app.router.add_get("/v1.0/organization", handle_organization)
    app.router.add_get("/oidc/userinfo", handle_me)

"""Checking the bearer tokens that Partner Center, Key Vault and Graph receive."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from simulator.clouds import GLOBAL
from simulator.state import Simulator
from simulator.tokens import TokenInvalid

logger = logging.getLogger(__name__)

CLOCK_SKEW = 300


class BearerError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise BearerError("malformed authorization header")
    return token.strip()


def check_bearer(sim: Simulator, token: str, resource: str) -> dict[str, Any]:
    """The verified claims of `token` for `resource`; raise BearerError otherwise."""
    return verify_bearer(sim, token, resource)[0]


def verify_bearer(
    sim: Simulator, token: str, resource: str, *, clouds: tuple[str, ...] = ()
) -> tuple[dict[str, Any], str]:
    """The verified claims of `token` for `resource` and the cloud whose Entra ID issued it, among `clouds` (default:
    this listener's own); raise BearerError otherwise. "Access tokens acquired for a national cloud deployment are not
    interchangeable with those acquired for the global service or any other national cloud" (Graph's
    deployments.md): each cloud's tokens are checked with its own signing key, audiences and issuer."""
    errors: list[BearerError] = []
    for cloud in clouds or (sim.cloud,):
        try:
            return _verify(sim.view(cloud), token, resource), cloud
        except BearerError as exc:
            errors.append(exc)
    # the reason for the listener's own cloud, the first
    raise errors[0]


def _verify(sim: Simulator, token: str, resource: str) -> dict[str, Any]:
    claims = sim.entra.opaque_tokens.get(opaque_key(sim.cloud, token))
    if claims is None:
        try:
            claims = sim.signer.verify(token)
        except TokenInvalid as exc:
            raise BearerError(f"invalid token ({exc.reason})") from exc
    audience = str(claims.get("aud", "")).rstrip("/").lower()
    if audience not in sim.resource_audiences(resource):
        raise BearerError("invalid audience")
    # Microsoft's resources receive v1.0 tokens: issuer https://sts.windows.net/{tid}/ (this cloud's) for the
    # token's tenant
    if claims.get("iss") != sim.sts_issuer(str(claims.get("tid"))):
        raise BearerError("invalid issuer")
    now = sim.clock.now()
    if float(claims.get("exp", 0)) < now:
        raise BearerError("token expired")
    if float(claims.get("nbf", 0)) > now + CLOCK_SKEW:
        raise BearerError("token not yet valid")
    return claims


def opaque_key(cloud: str, token: str) -> str:
    """Where an opaque access token's claims are kept: per cloud, so that one cloud's token means nothing to another's
    services (the global cloud's under the token itself, as before clouds)."""
    return token if cloud == GLOBAL else f"{cloud}:{token}"

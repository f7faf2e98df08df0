"""Checking the bearer tokens that Partner Center, Key Vault and Graph receive."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

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
    claims = sim.entra.opaque_tokens.get(token)
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

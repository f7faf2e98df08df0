"""The in-progress sign-ins sealed at rest: a JSON object sealed by `cpv.sealing` for one purpose, bound to its
record (a flow's code, a sign-in's state hash), so that a blob copied elsewhere does not open. A sign-in begun
before DJANGO_SECRET_KEY was rotated still finishes: its key is in SECRET_KEY_FALLBACKS."""

from __future__ import annotations

import json
from typing import Any

from cpv import sealing
from cpv.sealing import SealError

__all__ = ["SealError", "seal", "unseal"]


def _info(purpose: str) -> bytes:
    return f"cpv.{purpose}".encode()


def seal(data: dict[str, Any], *, purpose: str, bound_to: str) -> bytes:
    """Encrypt `data` (JSON-serialisable) for `purpose`, bound to the id `bound_to`."""
    plaintext = json.dumps(data, separators=(",", ":")).encode()
    sealed, _ = sealing.seal(plaintext, info=_info(purpose), aad=bound_to.encode())
    return sealed


def unseal(blob: bytes, *, purpose: str, bound_to: str) -> dict[str, Any]:
    """The data sealed by `seal` with the same purpose and binding. Raises SealError."""
    data = json.loads(sealing.unseal(blob, info=_info(purpose), aad=bound_to.encode()))
    if not isinstance(data, dict):
        raise SealError("the sealed record is not an object")
    return data

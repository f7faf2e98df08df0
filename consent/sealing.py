"""Sealing small server-side records at rest: AES-GCM under a key derived from the site's secret, bound to its
record so a blob copied elsewhere does not open."""

from __future__ import annotations

import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

_NONCE_BYTES = 12


class SealError(Exception):
    """A sealed record does not open: it was altered, moved, or sealed under another secret key."""


def _key(purpose: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"cpv.{purpose}".encode()).derive(
        settings.SECRET_KEY.encode()
    )


def seal(data: dict[str, Any], *, purpose: str, bound_to: str) -> bytes:
    """Encrypt `data` (JSON-serialisable) for `purpose`, bound to the id `bound_to`."""
    nonce = os.urandom(_NONCE_BYTES)
    plaintext = json.dumps(data, separators=(",", ":")).encode()
    return nonce + AESGCM(_key(purpose)).encrypt(nonce, plaintext, bound_to.encode())


def unseal(blob: bytes, *, purpose: str, bound_to: str) -> dict[str, Any]:
    """The data sealed by `seal` with the same purpose and binding; raises SealError otherwise."""
    blob = bytes(blob)
    if len(blob) <= _NONCE_BYTES:
        raise SealError("the sealed record is empty")
    try:
        plaintext = AESGCM(_key(purpose)).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], bound_to.encode())
    except InvalidTag:
        raise SealError("the sealed record does not open") from None
    data = json.loads(plaintext)
    if not isinstance(data, dict):
        raise SealError("the sealed record is not an object")
    return data

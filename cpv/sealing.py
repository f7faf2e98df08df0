"""Sealing small server-side values at rest: AES-256-GCM under a key derived (HKDF-SHA256) from DJANGO_SECRET_KEY for
one purpose, bound to its record by the associated data, so that a value copied to another record, or sealed for
another purpose, does not open. Stored form: `nonce (12 bytes) | ciphertext and tag`.

Why DJANGO_SECRET_KEY and not the vault's keys: every process (the web tier that seals a sign-in or makes a webhook
secret, the workers that sign with it) holds it whatever the vault backend. A rotated DJANGO_SECRET_KEY keeps the
older one in SECRET_KEY_FALLBACKS (Django's own rotation): a value is sealed under the current key and opens under
any of them. A caller that stores the key's id (`key_id`) opens with that key alone and can say which key is missing.

The in-progress sign-ins (`consent`) and the webhook signing secrets (`events`) both seal here."""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

NONCE_BYTES = 12
# Domain-separates a key's public id from the key itself; stored ids depend on it, so it never changes.
_KEY_ID_DOMAIN = b"cpv-events/key-id\x00"


class SealError(Exception):
    """A sealed value does not open: it was altered, moved to another record, sealed for another purpose, or sealed
    under a key that is neither DJANGO_SECRET_KEY nor one of SECRET_KEY_FALLBACKS. Its message names no secret."""


def _keys(info: bytes) -> list[bytes]:
    """The keys for `info`, derived from DJANGO_SECRET_KEY first, then from each of SECRET_KEY_FALLBACKS."""
    values = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return [
        HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(str(value).encode())
        for value in values
        if value
    ]


def key_id(key: bytes) -> str:
    """A sealing key's public name (16 hex digits): safe to print and to store."""
    return hashlib.sha256(_KEY_ID_DOMAIN + key).hexdigest()[:16]


def seal(plaintext: bytes, *, info: bytes, aad: bytes) -> tuple[bytes, str]:
    """`plaintext` sealed under the current key for `info`, bound to `aad`: (the stored bytes, the key's id)."""
    key = _keys(info)[0]
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad), key_id(key)


def unseal(sealed: bytes, *, info: bytes, aad: bytes, wanted_key_id: str = "") -> bytes:
    """The plaintext `seal` sealed with the same `info` and `aad`: under the key named `wanted_key_id` when given,
    else under the current key or any fallback. Raises SealError."""
    data = bytes(sealed)
    if len(data) <= NONCE_BYTES:
        raise SealError("the sealed value is empty")
    keys = _keys(info)
    if wanted_key_id:
        keys = [key for key in keys if key_id(key) == wanted_key_id]
        if not keys:
            raise SealError(
                f"the value was sealed with key {wanted_key_id}, which is neither DJANGO_SECRET_KEY's nor a fallback's"
            )
    for key in keys:
        try:
            return AESGCM(key).decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], aad)
        except InvalidTag:
            continue
    raise SealError("the sealed value failed its integrity check")

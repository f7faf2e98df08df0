"""A subscription's signing secret: made in the `whsec_` form the Standard Webhooks libraries take, shown once, and
kept sealed with AES-256-GCM under a key derived (HKDF-SHA256) from DJANGO_SECRET_KEY, bound to its subscription.

Why this key and not the vault's: every process (web makes the secret, workers sign with it) holds
DJANGO_SECRET_KEY whatever the vault backend, while the vault's key pair exists only with VAULT_BACKEND=local and
the `events` layer may not import `tokens`. A rotated DJANGO_SECRET_KEY keeps the older one in
SECRET_KEY_FALLBACKS (Django's own rotation), which still opens what it sealed; the row names the key by its id.
Stored: `nonce (12 bytes) | ciphertext and tag`."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

PREFIX = "whsec_"
SECRET_BYTES = 32
NONCE_BYTES = 12
_INFO = b"cpv-events/webhook-secret/v1"


class SecretUnreadable(Exception):
    """A sealed secret could not be opened: its key is gone from DJANGO_SECRET_KEY and its fallbacks, or the row was
    altered or moved to another subscription."""


def secret_new() -> str:
    """A fresh signing secret, `whsec_` and the base64 of 32 random bytes."""
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _keys() -> list[bytes]:
    values = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return [
        HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(str(value).encode())
        for value in values
        if value
    ]


def key_id(key: bytes) -> str:
    """A sealing key's public name (16 hex digits). Safe to print and to store."""
    return hashlib.sha256(b"cpv-events/key-id\x00" + key).hexdigest()[:16]


def _aad(subscription: str, slot: str) -> bytes:
    return b"\x00".join((_INFO, subscription.encode(), slot.encode()))


def secret_seal(secret: str, *, subscription: str, slot: str) -> tuple[bytes, str]:
    """`secret` sealed for the subscription's `slot` (`current` or `previous`): (the stored bytes, the key's id)."""
    key = _keys()[0]
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, secret.encode(), _aad(subscription, slot)), key_id(key)


def secret_open(sealed: bytes, *, wanted_key_id: str, subscription: str, slot: str) -> str:
    """The secret in a sealed value. Raises SecretUnreadable (its message names no secret)."""
    for key in _keys():
        if key_id(key) != wanted_key_id:
            continue
        data = bytes(sealed)
        try:
            return AESGCM(key).decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], _aad(subscription, slot)).decode()
        except InvalidTag:
            raise SecretUnreadable("the signing secret failed its integrity check") from None
    raise SecretUnreadable(
        f"the signing secret was sealed with key {wanted_key_id}, which is neither DJANGO_SECRET_KEY's nor a fallback's"
    )

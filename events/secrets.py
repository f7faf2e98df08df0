"""A subscription's signing secret: made in the `whsec_` form the Standard Webhooks libraries take, shown once, and
kept sealed by `cpv.sealing` (AES-256-GCM under a key derived from DJANGO_SECRET_KEY, which every process holds
whatever the vault backend), bound to its subscription and slot. The row names the key by its id, so a secret sealed
before DJANGO_SECRET_KEY was rotated opens with the older key in SECRET_KEY_FALLBACKS, and one whose key is gone
says which."""

from __future__ import annotations

import base64
import secrets

from cpv import sealing

PREFIX = "whsec_"
SECRET_BYTES = 32
_INFO = b"cpv-events/webhook-secret/v1"


class SecretUnreadable(Exception):
    """A sealed secret could not be opened: its key is gone from DJANGO_SECRET_KEY and its fallbacks, or the row was
    altered or moved to another subscription."""


def secret_new() -> str:
    """A fresh signing secret, `whsec_` and the base64 of 32 random bytes."""
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _aad(subscription: str, slot: str) -> bytes:
    return b"\x00".join((_INFO, subscription.encode(), slot.encode()))


def secret_seal(secret: str, *, subscription: str, slot: str) -> tuple[bytes, str]:
    """`secret` sealed for the subscription's `slot` (`current` or `previous`): (the stored bytes, the key's id)."""
    return sealing.seal(secret.encode(), info=_INFO, aad=_aad(subscription, slot))


def secret_open(sealed: bytes, *, wanted_key_id: str, subscription: str, slot: str) -> str:
    """The secret in a sealed value. Raises SecretUnreadable (its message names no secret)."""
    try:
        plaintext = sealing.unseal(sealed, info=_INFO, aad=_aad(subscription, slot), wanted_key_id=wanted_key_id)
    except sealing.SealError as exc:
        raise SecretUnreadable(f"the signing secret does not open: {exc}") from None
    return plaintext.decode()

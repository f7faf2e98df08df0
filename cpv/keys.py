"""The sealing key pair's formats, shared by the settings (which read and make keys) and the vault (which uses them):
X25519 keys of 32 raw bytes, written as URL-safe base64."""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

KEY_BYTES = 32


def raw_public(key: X25519PublicKey) -> bytes:
    """A public key's 32 raw bytes."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


def decode_key(value: str, *, what: str) -> bytes:
    """One URL-safe base64 key of 32 bytes. Raises ValueError naming `what`, never echoing the value."""
    part = value.strip()
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not URL-safe base64") from None
    if len(raw) != KEY_BYTES:
        raise ValueError(f"{what} decodes to {len(raw)} bytes; it must be {KEY_BYTES}")
    return raw


def public_key_of(private: bytes) -> bytes:
    """The raw public key of a raw X25519 private key."""
    return raw_public(X25519PrivateKey.from_private_bytes(private).public_key())


@dataclass(frozen=True)
class KeyPair:
    """A sealing key pair, both halves URL-safe base64 (VAULT_PRIVATE_KEY and VAULT_PUBLIC_KEY)."""

    private: str
    public: str


def new_key_pair() -> KeyPair:
    # Any 32 random bytes are a valid X25519 private key (X25519 clamps them itself).
    private = secrets.token_bytes(KEY_BYTES)
    return KeyPair(private=b64(private), public=b64(public_key_of(private)))

"""Sealing a secret to a public key, so that a process holding only that key can store a token but never read one.

The envelope, version 1 (the only one so far), is a hybrid scheme from `cryptography`: a fresh X25519 key pair per
secret agrees a shared secret with the recipient's public key, HKDF-SHA256 turns it into an AES-256-GCM key, and
AES-GCM encrypts the value with the row's name and version as associated data. Stored: the nonce in the row's
`nonce` column, and `01 | ephemeral public key (32 bytes) | AES-GCM ciphertext and tag` in its `ciphertext` column.
A later format takes the next version byte; `open_sealed` refuses one it does not know.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cpv.keys import KEY_BYTES, KeyPair, decode_key, new_key_pair, public_key_of, raw_public

__all__ = ["KeyPair", "SealError", "SealRing", "decode_key", "new_key_pair", "open_sealed", "public_key_of", "seal"]

ENVELOPE_V1 = 1
NONCE_BYTES = 12
_INFO = b"cpv-vault/seal/v1"


class SealError(Exception):
    """A sealed value could not be opened: altered, moved from another row, or of an unknown envelope version."""


def seal_key_id(public: bytes) -> str:
    """A sealing key pair's public name: `s` and 15 hex digits of a domain-separated SHA-256 of the public key, so
    it never equals a symmetric key's id (16 hex digits). Safe to print and to store."""
    return "s" + hashlib.sha256(b"cpv-seal/x25519\x00" + public).hexdigest()[:15]


def is_seal_key_id(key_id: str) -> bool:
    return key_id.startswith("s")


def _aad(name: str, version: str) -> bytes:
    # Binds a sealed value to its row's identity: moved under another name or version, it fails to open.
    return b"\x00".join((_INFO, name.encode(), version.encode()))


def _derive(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=ephemeral + recipient, info=_INFO).derive(shared)


def seal(*, public: bytes, name: str, version: str, plaintext: bytes) -> tuple[bytes, bytes]:
    """`plaintext` sealed to `public` for the row `name`/`version`: (nonce, envelope)."""
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = raw_public(ephemeral.public_key())
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(public))
    key = _derive(shared, ephemeral_public, public)
    nonce = os.urandom(NONCE_BYTES)
    body = AESGCM(key).encrypt(nonce, plaintext, _aad(name, version))
    return nonce, bytes([ENVELOPE_V1]) + ephemeral_public + body


def open_sealed(*, private: bytes, name: str, version: str, nonce: bytes, envelope: bytes) -> bytes:
    """The plaintext of an envelope sealed to `private`'s public key for `name`/`version`. Raises SealError."""
    if not envelope or envelope[0] != ENVELOPE_V1:
        raise SealError(f"envelope version {envelope[0] if envelope else 'none'} is not one this code opens")
    if len(envelope) < 1 + KEY_BYTES + 16:
        raise SealError("the envelope is too short")
    ephemeral_public = envelope[1 : 1 + KEY_BYTES]
    recipient = X25519PrivateKey.from_private_bytes(private)
    shared = recipient.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
    key = _derive(shared, ephemeral_public, raw_public(recipient.public_key()))
    try:
        return AESGCM(key).decrypt(nonce, envelope[1 + KEY_BYTES :], _aad(name, version))
    except InvalidTag:
        raise SealError("the sealed value failed its integrity check") from None


class SealRing:
    """The sealing keys a process holds: the public key it seals to (if any) and the private keys it may open with
    (none in the web tier), newest first. Its repr names key ids only."""

    def __init__(self, *, public: bytes | None, private: Sequence[bytes]) -> None:
        self._private = {seal_key_id(public_key_of(key)): key for key in private}
        self.private_ids = list(self._private)
        if public is None and private:
            public = public_key_of(private[0])
        self.public = public
        self.public_id = seal_key_id(public) if public is not None else None

    def __repr__(self) -> str:
        return f"SealRing(public_id={self.public_id!r}, private_ids={self.private_ids!r})"

    @property
    def seals(self) -> bool:
        return self.public is not None

    def private_for(self, key_id: str) -> bytes | None:
        return self._private.get(key_id)

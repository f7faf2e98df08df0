"""Token signing, the JWKS, verification of bearer tokens, and the registry of issued secrets."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

logger = logging.getLogger(__name__)

CANARY = "SIMCANARY"
_VERIFY_CACHE_LIMIT = 50_000


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def fingerprint(value: str) -> str:
    """The name under which the simulator's state and log refer to a secret (never the secret)."""
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def new_opaque(kind: str) -> str:
    """An opaque secret (code, refresh token) carrying the literal canary marker."""
    return f"0.{CANARY}-{kind}.{secrets.token_urlsafe(48)}"


class TokenInvalid(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class IssuedSecrets:
    """Every secret value the simulator handed out, so tests can search anything for a leak."""

    enabled: bool = True
    _items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, kind: str, value: str) -> None:
        if self.enabled:
            self._items.append((kind, value))

    def values(self, kind: str | None = None) -> list[str]:
        return [v for k, v in self._items if kind is None or k == kind]

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class Signer:
    """One RS256 key pair for every token the simulated Entra ID issues (kid published in the JWKS)."""

    def __init__(self, saved: dict[str, str] | None = None) -> None:
        """A new key pair, or the one `to_dict` saved (tokens issued before a restart stay valid)."""
        if saved is None:
            self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            now = dt.datetime.now(dt.UTC)
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "simulated Entra ID token signing")])
            cert = (
                x509.CertificateBuilder()
                .subject_name(name)
                .issuer_name(name)
                .public_key(self._key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1))
                .not_valid_after(now + dt.timedelta(days=3650))
                .sign(self._key, hashes.SHA256())
            )
        else:
            key = serialization.load_pem_private_key(saved["private_key_pem"].encode(), password=None)
            if not isinstance(key, rsa.RSAPrivateKey):
                raise ValueError("the saved signing key is not an RSA key")
            self._key = key
            cert = x509.load_pem_x509_certificate(saved["certificate_pem"].encode())
        self._cert = cert
        self._public = self._key.public_key()
        der = cert.public_bytes(serialization.Encoding.DER)
        self.kid = b64url(hashlib.sha1(der, usedforsecurity=False).digest())
        numbers = self._public.public_numbers()
        self.jwk: dict[str, Any] = {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            "e": b64url(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
            "x5c": [base64.b64encode(der).decode()],
            "cloud_instance_name": "microsoftonline.com",
        }
        header = {"typ": "JWT", "alg": "RS256", "x5t": self.kid, "kid": self.kid}
        self._header_b64 = b64url(json.dumps(header, separators=(",", ":")).encode())
        self.prefix = self._header_b64 + "."
        self._verified: dict[str, dict[str, Any]] = {}

    def to_dict(self) -> dict[str, str]:
        """The key pair and its certificate as PEM (a simulated credential), for `Signer(saved)`."""
        key_pem = self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        cert_pem = self._cert.public_bytes(serialization.Encoding.PEM)
        return {"private_key_pem": key_pem.decode(), "certificate_pem": cert_pem.decode()}

    def jwks(self, issuer: str | None = None) -> dict[str, Any]:
        key = dict(self.jwk)
        if issuer:
            key["issuer"] = issuer
        return {"keys": [key]}

    def public_key_pem(self) -> bytes:
        return self._public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, claims: dict[str, Any]) -> str:
        payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = f"{self._header_b64}.{payload}"
        signature = self._key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(signature)}"

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a token this signer issued; raise TokenInvalid otherwise (expiry is not checked).

        Verified tokens are cached: a bearer token is presented many times and its signature never
        changes, so checking it once is enough.
        """
        cached = self._verified.get(token)
        if cached is not None:
            return cached
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenInvalid("malformed")
        if parts[0] != self._header_b64:
            try:
                header = json.loads(b64url_decode(parts[0]))
            except ValueError as exc:
                raise TokenInvalid("malformed") from exc
            if header.get("kid") != self.kid:
                raise TokenInvalid("unknown signing key")
            if header.get("alg") != "RS256":
                raise TokenInvalid("unexpected algorithm")
        try:
            signature = b64url_decode(parts[2])
            self._public.verify(
                signature, f"{parts[0]}.{parts[1]}".encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
            )
            claims = json.loads(b64url_decode(parts[1]))
        except (InvalidSignature, ValueError, UnicodeEncodeError) as exc:
            raise TokenInvalid("signature") from exc
        if not isinstance(claims, dict):
            raise TokenInvalid("malformed")
        if len(self._verified) >= _VERIFY_CACHE_LIMIT:
            self._verified.clear()
        self._verified[token] = claims
        return claims

    def clear_cache(self) -> None:
        self._verified.clear()


def unverified_claims(token: str) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenInvalid("malformed")
    try:
        claims = json.loads(b64url_decode(parts[1]))
    except ValueError as exc:
        raise TokenInvalid("malformed") from exc
    if not isinstance(claims, dict):
        raise TokenInvalid("malformed")
    return claims

"""The vendor app's own credentials: what msal is given for each, what a certificate says of itself (SHA-256
thumbprint, validity), and which credential to try first when several are configured."""

from __future__ import annotations

import base64
import hashlib
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cpv.config import CERTIFICATE, AppCredential, Credential
from microsoft.errors import MicrosoftError

# Entra's answers that condemn one credential and not the app (the AADSTS reference): 700027 "Client assertion
# failed signature validation" (a certificate Entra does not hold, or no longer accepts), 7000215 "Invalid client
# secret is provided", 7000222 "The provided client secret keys are expired". Any of them sends the request on to
# the next configured credential. (AADSTS1000502 and 7000274, which Microsoft.Identity.Web also takes for certificate
# errors, are not in the AADSTS reference, so they are not listed.)
FALLBACK_CODES = frozenset({700027, 7000215, 7000222})
# How long a refused credential is tried last in this process, so that each request does not pay a refusal first.
REFUSED_FOR_SECONDS = 300.0


class CredentialUnreadable(MicrosoftError):
    """A configured certificate file could not be read as a PEM private key and certificate."""

    kind = "misconfigured"


@dataclass(frozen=True)
class CertificateFacts:
    """What a certificate file says of itself: its SHA-256 thumbprint (upper-case hex of the DER, as Entra's
    `customKeyIdentifier` and the portal show it) and its validity."""

    thumbprint_sha256: str
    not_before: datetime
    not_after: datetime
    subject: str


@dataclass(frozen=True)
class Refusal:
    """Entra refused one credential and the request went on to the next: which, and the AADSTS code."""

    credential: str  # the credential's label (never its value)
    code: int


def _read_pem(path: str) -> tuple[object, x509.Certificate]:
    try:
        pem = Path(path).read_bytes()
        key = serialization.load_pem_private_key(pem, password=None)
        certificate = x509.load_pem_x509_certificate(pem)
    except (OSError, ValueError) as exc:
        raise CredentialUnreadable(
            f"The app certificate {path} could not be read as PEM holding a private key and a certificate "
            f"({exc.__class__.__name__})"
        ) from None
    return key, certificate


def certificate_facts(path: str) -> CertificateFacts:
    """The thumbprint and validity of the certificate in `path`. Raises CredentialUnreadable."""
    _, certificate = _read_pem(path)
    der = certificate.public_bytes(serialization.Encoding.DER)
    return CertificateFacts(
        thumbprint_sha256=hashlib.sha256(der).hexdigest().upper(),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        subject=certificate.subject.rfc4514_string(),
    )


def msal_credential(credential: Credential) -> str | dict[str, str]:
    """msal's `client_credential` for one credential: the PEM key and certificate, or the secret.
    Raises CredentialUnreadable."""
    if credential.kind == CERTIFICATE:
        key, certificate = _read_pem(credential.certificate_path)
        return {
            "private_key": key.private_bytes(  # type: ignore[attr-defined]
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode(),
            "public_certificate": certificate.public_bytes(serialization.Encoding.PEM).decode(),
        }
    return credential.secret


# application-addkey.md: the proof's audience "needs to be `00000002-0000-0000-c000-000000000000`", its issuer "the
# **id** of the application", and its expiry "should be "nbf" + 10 mins".
PROOF_AUDIENCE = "00000002-0000-0000-c000-000000000000"
PROOF_LIFETIME_SECONDS = 600


def certificate_der(path: str) -> bytes:
    """The certificate's public part (DER) from a PEM file, for addKey. Raises CredentialUnreadable."""
    _, certificate = _read_pem(path)
    return certificate.public_bytes(serialization.Encoding.DER)


def proof_of_possession(*, certificate_path: str, application_object_id: str) -> str:
    """The self-signed JWT addKey and removeKey ask for: signed (RS256) with the certificate's private key, its
    SHA-1 and SHA-256 thumbprints in the header, `aud`, `iss` the application's object id, `nbf` now and `exp`
    ten minutes later. Raises CredentialUnreadable."""
    key, certificate = _read_pem(certificate_path)
    der = certificate.public_bytes(serialization.Encoding.DER)
    now = int(time.time())
    claims = {
        "aud": PROOF_AUDIENCE,
        "iss": application_object_id,
        "nbf": now,
        "exp": now + PROOF_LIFETIME_SECONDS,
        "jti": str(uuid.uuid4()),
    }
    headers = {
        "x5t": _b64url(hashlib.sha1(der, usedforsecurity=False).digest()),
        "x5t#S256": _b64url(hashlib.sha256(der).digest()),
    }
    return jwt.encode(claims, key, algorithm="RS256", headers=headers)  # type: ignore[arg-type]


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


_lock = threading.Lock()
_refused: dict[tuple[str, str], float] = {}


def _key(app: AppCredential, credential: Credential) -> tuple[str, str]:
    # A digest, so that no secret is kept as a dictionary key.
    value = credential.certificate_path if credential.kind == CERTIFICATE else credential.secret
    return app.client_id, hashlib.sha256(f"{credential.kind}:{value}".encode()).hexdigest()


def in_order(app: AppCredential) -> list[Credential]:
    """The app's credentials in the order to try them: newest first, those Entra refused lately last."""
    now = time.monotonic()
    with _lock:
        refused = {key for key, until in _refused.items() if until > now}
    fresh = [c for c in app.credentials if _key(app, c) not in refused]
    return fresh + [c for c in app.credentials if _key(app, c) in refused]


def refusal_note(app: AppCredential, credential: Credential) -> None:
    with _lock:
        _refused[_key(app, credential)] = time.monotonic() + REFUSED_FOR_SECONDS


def acceptance_note(app: AppCredential, credential: Credential) -> None:
    with _lock:
        _refused.pop(_key(app, credential), None)


def refusals_forget() -> None:
    """Forget every refusal this process noted (tests, and a changed configuration)."""
    with _lock:
        _refused.clear()

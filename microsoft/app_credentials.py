"""The vendor app's own credentials: what msal is given for each (a certificate from a PEM file or from Key Vault, a
secret, or a user-assigned managed identity's token as a client assertion), what a certificate says of itself (SHA-256
thumbprint, validity), and which credential to try first when several are configured."""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jwt
from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.core.pipeline.transport import RequestsTransport
from azure.identity import CredentialUnavailableError, ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from django.conf import settings

from cpv.clouds import CLOUDS, GLOBAL, Cloud
from cpv.config import (
    CERTIFICATE,
    MANAGED_IDENTITY,
    AppCredential,
    Credential,
    KeyVaultCertificate,
    key_vault_certificate,
)
from microsoft import azure_identity
from microsoft.errors import MicrosoftError
from microsoft.http import EnvironmentOnceSession

# Entra's answers that condemn one credential and not the app (the AADSTS reference): 700027 "Client assertion
# failed signature validation" (a certificate Entra does not hold, or no longer accepts), 7000215 "Invalid client
# secret is provided", 7000222 "The provided client secret keys are expired". Any of them sends the request on to
# the next configured credential. (AADSTS1000502 and 7000274, which Microsoft.Identity.Web also takes for certificate
# errors, are not in the AADSTS reference, so they are not listed.) 70021 "No matching federated identity record found
# for presented assertion" (workload-identity-federation-considerations.md) condemns a managed identity the app
# registration does not trust.
FALLBACK_CODES = frozenset({700027, 7000215, 7000222, 70021})
# How long a refused credential is tried last in this process, so that each request does not pay a refusal first.
REFUSED_FOR_SECONDS = 300.0


class CredentialUnreadable(MicrosoftError):
    """A configured certificate file could not be read as a PEM private key and certificate, or a managed identity
    gave no token."""

    kind = "misconfigured"


class ManagedIdentityUnreachable(CredentialUnreadable):
    """The host's managed identity endpoint could not be reached: a later try may succeed."""

    transient = True
    kind = "transient"


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
    """The private key and certificate of a configured certificate: a PEM file, or a Key Vault certificate's
    addressable secret read at use time. Raises CredentialUnreadable."""
    in_key_vault = key_vault_certificate(path)
    if in_key_vault is not None:
        return _from_key_vault(path, in_key_vault)
    try:
        found = os.stat(path)
    except OSError as exc:
        raise CredentialUnreadable(
            f"The app certificate {path} could not be read as PEM holding a private key and a certificate "
            f"({exc.__class__.__name__})"
        ) from None
    return _pem_file(path, found.st_mtime_ns, found.st_size)


# Loading an RSA key checks it (cryptography does, at each load: a few hundred milliseconds of CPU for a 2048-bit key
# on a small machine), and every renewal builds a new msal client: a file is loaded once per process and content,
# and loaded again when its modification time or size changes (a rotation writes a new file).
@functools.lru_cache(maxsize=16)
def _pem_file(path: str, mtime_ns: int, size: int) -> tuple[object, x509.Certificate]:
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


# --- certificates kept in Key Vault ---------------------------------------------------------------------------------
# about-certificates.md (MicrosoftDocs/azure-docs): "When a Key Vault certificate is created, an addressable key and
# secret are also created with the same name", and "it can be retrieved from the addressable secret with the private
# key in either PFX or PEM format". The secret's contentType says which (azure-keyvault-secrets' ContentType).
PEM_CONTENT_TYPE = "application/x-pem-file"
PKCS12_CONTENT_TYPE = "application/x-pkcs12"
# How long a certificate read from Key Vault is used before it is read again (a renewal in the vault reaches every
# process within this time). Kept in memory only: the key is never written to disk.
KEY_VAULT_CACHE_SECONDS = 300.0

_vault_lock = threading.Lock()
_vault_cache: dict[str, tuple[float, object, x509.Certificate]] = {}
_vault_clients: dict[str, SecretClient] = {}


def _vault_client(vault_url: str) -> SecretClient:
    """One SecretClient per vault, signed in as this process's Azure identity (azure-identity's variables, as the
    token vault's)."""
    with _vault_lock:
        client = _vault_clients.get(vault_url)
        if client is not None:
            return client
    cloud = settings.CPV_CLOUD_CONFIG
    authority = os.environ.get("AZURE_AUTHORITY_HOST") or cloud.authority_host
    microsoft = azure_identity.is_microsoft_vault(vault_url=vault_url, cloud=cloud, authority=authority)
    try:
        credential = azure_identity.build_credential(environ=os.environ, authority=authority, microsoft=microsoft)
    except azure_identity.AzureCredentialIncomplete as exc:
        raise CredentialUnreadable(
            f"The Key Vault holding an app certificate cannot be signed in to: the {exc}"
        ) from None
    client = SecretClient(
        vault_url,
        credential,
        verify_challenge_resource=microsoft,
        transport=RequestsTransport(session=EnvironmentOnceSession(), session_owner=True),
        connection_timeout=5,
        read_timeout=30,
    )
    with _vault_lock:
        return _vault_clients.setdefault(vault_url, client)


def _from_key_vault(reference: str, where: KeyVaultCertificate) -> tuple[object, x509.Certificate]:
    now = time.monotonic()
    with _vault_lock:
        cached = _vault_cache.get(reference)
    if cached is not None and cached[0] > now:
        return cached[1], cached[2]
    what = f"The app certificate {reference}"
    try:
        secret = _vault_client(where.vault_url).get_secret(where.name, where.version or None)
    except ResourceNotFoundError:
        raise CredentialUnreadable(
            f"{what} is not in Key Vault: the vault has no secret {where.name!r} (a certificate's private key is read "
            "as the secret of the same name)"
        ) from None
    except ClientAuthenticationError as exc:
        raise CredentialUnreadable(
            f"{what} could not be read: this process's Azure identity could not sign in to Key Vault "
            f"({exc.__class__.__name__})"
        ) from None
    except HttpResponseError as exc:
        if exc.status_code == 403:
            raise CredentialUnreadable(
                f"{what} could not be read: Key Vault refused this process's identity (403 "
                f"{_vault_error_code(exc)}); it needs the secrets get permission on the vault"
            ) from None
        raise CredentialUnreadable(
            f"{what} could not be read: Key Vault answered {exc.status_code} ({_vault_error_code(exc)})"
        ) from None
    except (AzureError, ValueError) as exc:
        raise CredentialUnreadable(f"{what} could not be read from Key Vault ({exc.__class__.__name__})") from None
    key, certificate = _parse_key_vault_secret(what, secret.value or "", secret.properties.content_type)
    with _vault_lock:
        _vault_cache[reference] = (now + KEY_VAULT_CACHE_SECONDS, key, certificate)
    return key, certificate


def _vault_error_code(exc: HttpResponseError) -> str:
    return str(getattr(getattr(exc, "error", None), "code", None) or "no error code")


def _parse_key_vault_secret(what: str, value: str, content_type: str | None) -> tuple[object, x509.Certificate]:
    """The key and certificate of a certificate's addressable secret: PEM text, or PKCS#12 in base64."""
    try:
        if content_type == PEM_CONTENT_TYPE:
            pem = value.encode()
            if b"PRIVATE KEY-----" not in pem:
                raise CredentialUnreadable(
                    f"{what} holds no private key in Key Vault: its policy must make the key exportable"
                )
            return serialization.load_pem_private_key(pem, password=None), x509.load_pem_x509_certificate(pem)
        if content_type == PKCS12_CONTENT_TYPE:
            key, certificate, _ = pkcs12.load_key_and_certificates(base64.b64decode(value), None)
            if key is None or certificate is None:
                raise CredentialUnreadable(
                    f"{what} holds no private key in Key Vault: its policy must make the key exportable"
                )
            return key, certificate
    except (ValueError, TypeError) as exc:
        raise CredentialUnreadable(
            f"{what} could not be read from Key Vault as {content_type} ({exc.__class__.__name__})"
        ) from None
    raise CredentialUnreadable(
        f"{what} is a Key Vault secret of content type {content_type or 'none'}, not a certificate's "
        f"({PEM_CONTENT_TYPE} or {PKCS12_CONTENT_TYPE})"
    )


def key_vault_forget() -> None:
    """Forget the certificates read from Key Vault and the vault clients (tests, and a changed configuration)."""
    with _vault_lock:
        _vault_cache.clear()
        clients = list(_vault_clients.values())
        _vault_clients.clear()
    for client in clients:
        client.close()


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


def msal_credential(credential: Credential, *, cloud: Cloud | None = None) -> str | dict[str, Any]:
    """msal's `client_credential` for one credential: the PEM key and certificate, the secret, or for a managed
    identity `{"client_assertion": callable}` for `cloud`'s exchange audience (the global cloud's by default; msal
    calls it for each token request it sends; see `ManagedIdentityAssertion`). Raises CredentialUnreadable."""
    if credential.kind == MANAGED_IDENTITY:
        audience = (cloud or CLOUDS[GLOBAL]).token_exchange_audience
        return {
            "client_assertion": ManagedIdentityAssertion(
                client_id=credential.managed_identity_client_id, audience=audience
            )
        }
    if credential.kind == CERTIFICATE:
        key, certificate = _read_pem(credential.certificate_path)
        # The key object itself, which msal's assertion signer takes ("It can also be a cryptography PrivateKey
        # object", msal/oauth2cli/assertion.py): a PEM string would be parsed, and the key checked, at each signing.
        return {
            "private_key": key,
            "public_certificate": certificate.public_bytes(serialization.Encoding.PEM).decode(),
        }
    return credential.secret


# --- a managed identity as the app's credential ---------------------------------------------------------------------
# workload-identity-federation-config-app-trust-managed-identity.md: the app registration trusts a user-assigned
# managed identity (a federated identity credential); the workload asks the managed identity for a token for the
# cloud's exchange audience and presents it as the client assertion. One ManagedIdentityCredential per identity and
# process: azure-identity (msal's ManagedIdentityClient) keeps its token in memory and asks the endpoint again only
# when less than five minutes of it are left, so the assertion is not fetched for every request.
_identity_lock = threading.Lock()
_identities: dict[str, ManagedIdentityCredential] = {}


def _managed_identity(client_id: str) -> ManagedIdentityCredential:
    with _identity_lock:
        found = _identities.get(client_id)
        if found is None:
            found = _identities[client_id] = ManagedIdentityCredential(client_id=client_id)
        return found


class ManagedIdentityAssertion:
    """The client assertion msal calls for: the managed identity's token for `audience`. Raises CredentialUnreadable
    (words that name the fix, never the token) when the managed identity gives none, ManagedIdentityUnreachable (a
    transient one) when its endpoint cannot be reached."""

    def __init__(self, *, client_id: str, audience: str) -> None:
        self.client_id = client_id
        self.audience = audience

    def __repr__(self) -> str:
        return f"ManagedIdentityAssertion(client_id={self.client_id!r}, audience={self.audience!r})"

    def __call__(self) -> str:
        what = f"The managed identity {self.client_id}"
        try:
            return _managed_identity(self.client_id).get_token(f"{self.audience}/.default").token
        except CredentialUnavailableError as exc:
            raise CredentialUnreadable(
                f"{what} gave no token for {self.audience}: no managed identity endpoint answers for it here "
                "(assign the user-assigned identity to this App Service, Functions app, container app or virtual "
                f"machine, and check that its client id is the one configured) ({exc.__class__.__name__})"
            ) from None
        except ClientAuthenticationError as exc:
            raise CredentialUnreadable(
                f"{what} gave no token for {self.audience}: the managed identity endpoint refused "
                f"({exc.__class__.__name__}); check that the identity is assigned to this host"
            ) from None
        except (AzureError, ValueError) as exc:
            raise ManagedIdentityUnreachable(
                f"{what} gave no token for {self.audience}: the managed identity endpoint could not be reached "
                f"({exc.__class__.__name__}); check the host's managed identity (IDENTITY_ENDPOINT) and try again"
            ) from None


def managed_identities_forget() -> None:
    """Forget the managed identity credentials and their tokens (tests, and a changed configuration)."""
    with _identity_lock:
        credentials = list(_identities.values())
        _identities.clear()
    for credential in credentials:
        credential.close()


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
    value = {CERTIFICATE: credential.certificate_path, MANAGED_IDENTITY: credential.managed_identity_client_id}.get(
        credential.kind, credential.secret
    )
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

"""The Azure Key Vault backend. The SDK's retry policy is off: every wait is ours (bounded backoff, Retry-After),
and errors come out as the vault's typed errors, never with a request body."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from cpv import clouds
from cpv.logs import redact
from microsoft import azure_identity
from microsoft.azure_identity import is_microsoft_vault, url_host
from microsoft.errors import retry_after as parse_retry_after
from microsoft.http import EnvironmentOnceSession
from microsoft.throttle import ThrottleTimeout, vault_creates_limiter
from tokens.vault.base import (
    MAX_VERSIONS,
    REFRESH_TOKEN_CONTENT_TYPE,
    Secret,
    SecretValue,
    SecretVersion,
    Vault,
    WriteResult,
    validate_policy,
    validate_secret_name,
    validate_tags,
    validate_value,
    validate_version,
)
from tokens.vault.errors import (
    SecretDeletedConflict,
    SecretDisabled,
    SecretNotFound,
    VaultConflict,
    VaultError,
    VaultForbidden,
    VaultMisconfigured,
    VaultThrottled,
    VaultTransient,
    VersionBudgetExceeded,
)

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.keyvault.secrets import SecretClient

    from microsoft.throttle import Limiter

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Key Vault's guidance for 429: back off 1, 2, 4, 8, 16 s. The same schedule serves 5xx and lost connections.
BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0)
# A Retry-After longer than this is not waited out in-process: the caller gets VaultThrottled and reschedules.
MAX_RETRY_AFTER = 60.0
# Deletion, recovery and purge complete a few seconds after Key Vault accepts them.
POLL_INTERVAL = 1.0
POLL_ATTEMPTS = 30
# A name nobody writes: health() reads it and takes "not found" as proof that the vault answers.
HEALTH_PROBE_NAME = "cpv-health-probe"
# The shared pace of secret creates is looked up at the first write unless one is given.
_SHARED_PACE: Any = object()


def build_credential(*, environ: Mapping[str, str], authority: str, microsoft: bool) -> TokenCredential:
    """The vault's credential from azure-identity's variables (microsoft.azure_identity). Raises VaultMisconfigured
    when the choice lacks a variable."""
    try:
        return azure_identity.build_credential(environ=environ, authority=authority, microsoft=microsoft)
    except azure_identity.AzureCredentialIncomplete as exc:
        raise VaultMisconfigured(f"the vault's {exc}") from None


def _describe(exc: BaseException) -> str:
    """Status, Key Vault's error code and a short redacted message. Never the request."""
    status = getattr(exc, "status_code", None)
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None) or ""
    message = getattr(error, "message", None) or getattr(exc, "message", None) or ""
    text = redact(str(message).splitlines()[0] if message else "")[:200]
    parts = [str(status) if status else exc.__class__.__name__]
    if code:
        parts.append(str(code))
    if text:
        parts.append(text)
    return ": ".join(parts)


def _is_disabled(exc: BaseException) -> bool:
    error = getattr(exc, "error", None)
    inner = getattr(error, "innererror", None) or {}
    inner_code = inner.get("code", "") if isinstance(inner, dict) else ""
    message = str(getattr(error, "message", "") or "")
    return inner_code == "SecretDisabled" or "disabled" in message.lower()


class AzureVault(Vault):
    """Secrets in Azure Key Vault. Needs get, set, list, delete, recover (and purge, for vault_check)."""

    backend = "azure"

    def __init__(
        self,
        *,
        vault_url: str,
        cloud: clouds.Cloud,
        deleted_policy: str = "recover",
        credential: TokenCredential | None = None,
        environ: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        backoff: Sequence[float] = BACKOFF,
        max_retry_after: float = MAX_RETRY_AFTER,
        poll_interval: float = POLL_INTERVAL,
        poll_attempts: int = POLL_ATTEMPTS,
        connection_timeout: float = 5,
        read_timeout: float = 30,
        api_version: str | None = None,
        creates_limiter: Limiter | None = _SHARED_PACE,
        write_only: bool = False,
    ) -> None:
        parts = urlsplit(vault_url or "")
        if parts.scheme != "https" or not parts.hostname:
            raise VaultMisconfigured(f"VAULT_URL must be the vault's https:// URL, got {vault_url!r}")
        if parts.path not in {"", "/"} or parts.query or parts.fragment:
            raise VaultMisconfigured(f"VAULT_URL must be the vault's root URL with no path, got {vault_url!r}")
        self.vault_url = f"https://{parts.netloc}/"
        self._vault_host = parts.hostname.lower()
        self._cloud = cloud
        self._policy = validate_policy(deleted_policy)
        self._environ = dict(os.environ if environ is None else environ)
        self._authority = self._environ.get("AZURE_AUTHORITY_HOST") or cloud.authority_host
        self.microsoft = is_microsoft_vault(vault_url=self.vault_url, cloud=cloud, authority=self._authority)
        self._credential = credential
        self._sleep = sleep
        self._backoff = tuple(backoff)
        self._max_retry_after = max_retry_after
        self._poll_interval = poll_interval
        self._poll_attempts = poll_attempts
        self._timeouts = {"connection_timeout": connection_timeout, "read_timeout": read_timeout}
        self._api_version = api_version
        self._client: SecretClient | None = None
        # Threads of one worker share the vault: one of them builds its client and credential, the others wait.
        self._client_lock = threading.Lock()
        self._creates_limiter = creates_limiter
        # The web tier's vault: its identity may only set secrets, and this process never asks to read one.
        self.write_only = write_only

    def __repr__(self) -> str:
        return f"AzureVault(vault_url={self.vault_url!r}, microsoft={self.microsoft})"

    def describe(self) -> dict[str, object]:
        return {
            "backend": self.backend,
            "vault_url": self.vault_url,
            "cloud": self._cloud.name,
            "microsoft": self.microsoft,
            "deleted_policy": self._policy,
        }

    @property
    def client(self) -> SecretClient:
        if self._client is not None:
            return self._client
        with self._client_lock:
            return self._client_build()

    def _client_build(self) -> SecretClient:
        if self._client is None:
            from azure.core.pipeline.transport import RequestsTransport
            from azure.keyvault.secrets import SecretClient

            credential = self._credential or build_credential(
                environ=self._environ, authority=self._authority, microsoft=self.microsoft
            )
            options: dict[str, Any] = {
                # Our own loop retries; the SDK's would add waits we neither choose nor see.
                "retry_total": 0,
                "verify_challenge_resource": self.microsoft,
                **self._timeouts,
            }
            if self._api_version:
                options["api_version"] = self._api_version
            # A session that reads the environment's proxy and CA settings once per host, not per request.
            options["transport"] = RequestsTransport(
                session=EnvironmentOnceSession(), session_owner=True, **self._timeouts
            )
            try:
                self._client = SecretClient(self.vault_url, credential, **options)
            except (ValueError, NotImplementedError) as exc:
                raise VaultMisconfigured(f"the Key Vault client could not be built: {exc}") from None
        return self._client

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # --- errors and retries -----------------------------------------------------------------------------

    def _translate(self, exc: Exception, what: str) -> VaultError:
        from azure.core.exceptions import (
            AzureError,
            ClientAuthenticationError,
            HttpResponseError,
            ResourceExistsError,
            ResourceNotFoundError,
            ServiceRequestError,
            ServiceResponseError,
        )
        from azure.identity import CredentialUnavailableError

        if isinstance(exc, VaultError):
            return exc
        detail = _describe(exc)
        if isinstance(exc, CredentialUnavailableError):
            return VaultMisconfigured(f"{what}: no Azure credential is available ({detail})")
        if isinstance(exc, ClientAuthenticationError):
            response = exc.response
            url = getattr(getattr(response, "request", None), "url", "") or ""
            if exc.status_code == 401 and url_host(url) == self._vault_host:
                return VaultForbidden(f"{what}: the vault rejected the credential ({detail})")
            if exc.status_code is not None and (exc.status_code == 429 or exc.status_code >= 500):
                return VaultTransient(f"{what}: the sign-in service failed ({detail})")
            return VaultMisconfigured(f"{what}: could not get a token for the vault ({detail})")
        if isinstance(exc, ResourceNotFoundError):
            return SecretNotFound(f"{what}: not found")
        if isinstance(exc, ResourceExistsError):
            return VaultConflict(f"{what}: conflict ({detail})")
        if isinstance(exc, HttpResponseError):
            status = exc.status_code or 0
            if status == 429:
                headers = getattr(exc.response, "headers", None)
                retry_after = parse_retry_after(headers)
                return VaultThrottled(
                    f"{what}: throttled ({detail})",
                    retry_after=retry_after if retry_after is not None else -1.0,
                )
            if status == 403:
                if _is_disabled(exc):
                    return SecretDisabled(f"{what}: the version is disabled")
                return VaultForbidden(f"{what}: forbidden ({detail})")
            if status == 409:
                return VaultConflict(f"{what}: conflict ({detail})")
            if status == 408 or status >= 500:
                return VaultTransient(f"{what}: the vault failed ({detail})")
            return VaultError(f"{what}: the vault refused the request ({detail})")
        if isinstance(exc, ServiceRequestError | ServiceResponseError):
            return VaultTransient(f"{what}: could not reach the vault ({detail})")
        if isinstance(exc, AzureError):
            return VaultError(f"{what}: {detail}")
        if isinstance(exc, ValueError):
            return VaultMisconfigured(f"{what}: {exc.__class__.__name__}: {redact(str(exc))[:200]}")
        raise exc

    def _call(self, what: str, operation: Callable[[], T], *, retry: bool = True) -> T:
        """Run one SDK call, retrying 429, 5xx and lost connections on the bounded schedule."""
        attempt = 0
        while True:
            try:
                return operation()
            except Exception as exc:  # noqa: BLE001 - every failure becomes a typed VaultError below
                error = self._translate(exc, what)
            attempts_left = retry and attempt < len(self._backoff)
            if isinstance(error, VaultThrottled):
                asked = error.retry_after
                if not attempts_left or asked > self._max_retry_after:
                    wait = max(asked, self._backoff[min(attempt, len(self._backoff) - 1)])
                    raise VaultThrottled(
                        f"{what}: the vault is throttling (429 after {attempt + 1} attempt(s); wait {wait:.0f} s)",
                        retry_after=wait,
                    ) from None
                wait = max(self._backoff[attempt], asked)
            elif isinstance(error, VaultTransient) and attempts_left:
                wait = self._backoff[attempt]
            elif isinstance(error, VaultTransient) and retry:
                raise VaultTransient(f"{error} (after {attempt + 1} attempts)") from None
            else:
                raise error from None
            attempt += 1
            logger.warning(
                "vault: %s; retrying in %.1f s (attempt %d of %d)", error, wait, attempt + 1, len(self._backoff) + 1
            )
            self._sleep(wait)

    def _poll(self, what: str, done: Callable[[], bool]) -> None:
        """Wait for an accepted operation (delete, recover, purge) to take effect."""
        for _ in range(self._poll_attempts):
            if done():
                return
            self._sleep(self._poll_interval)
        if not done():
            raise VaultTransient(f"{what}: did not complete within {self._poll_attempts * self._poll_interval:.0f} s")

    # --- the interface ----------------------------------------------------------------------------------

    def write(
        self,
        *,
        name: str,
        value: str | SecretValue,
        tags: Mapping[str, str] | None = None,
        content_type: str = REFRESH_TOKEN_CONTENT_TYPE,
        known_count: int | None = None,
    ) -> WriteResult:
        name = validate_secret_name(name)
        secret = validate_value(value)
        clean_tags = validate_tags(tags)
        count = self._budget(name, known_count)

        def put() -> Any:
            self._pace_create(name)
            return self.client.set_secret(name, secret.reveal(), tags=clean_tags, content_type=content_type)

        try:
            stored = self._call(f"write {name}", put)
        except VaultConflict:
            # Key Vault answers 409 when the name belongs to a soft-deleted secret.
            count = self._reuse_deleted_name(name)
            stored = self._put_after_conflict(name, put)
        version = stored.properties.version or ""
        logger.info("vault: wrote secret %s version %s (%d versions)", name, version, count + 1)
        return WriteResult(name=name, version=version, created_at=stored.properties.created_on, version_count=count + 1)

    def _pace_create(self, name: str) -> None:
        """Wait for a slot in the shared pace of creates (each PUT attempt is one): Key Vault allows 300 per 10 s."""
        if self._creates_limiter is _SHARED_PACE:
            self._creates_limiter = vault_creates_limiter(urlsplit(self.vault_url).netloc)
        if self._creates_limiter is None:
            return
        try:
            self._creates_limiter.acquire(timeout=self._max_retry_after)
        except ThrottleTimeout as exc:
            raise VaultThrottled(f"write {name}: {exc}", retry_after=self._backoff[0]) from None

    def _budget(self, name: str, known_count: int | None = None) -> int:
        count = self.version_count(name=name) if known_count is None else known_count
        if count >= MAX_VERSIONS:
            raise VersionBudgetExceeded(
                f"secret {name} already has {count} versions; the budget is {MAX_VERSIONS}", count=count
            )
        return count

    def _deleted_exists(self, name: str) -> bool:
        try:
            self._call(f"get deleted {name}", lambda: self.client.get_deleted_secret(name))
        except SecretNotFound:
            return False
        return True

    def _reuse_deleted_name(self, name: str) -> int:
        """Apply VAULT_DELETED_SECRET_POLICY after a 409; return the secret's version count afterwards."""
        if not self._deleted_exists(name):
            # Not recoverable: a purge or a deletion still in progress. The PUT is retried.
            return 0
        if self._policy == "fail":
            raise SecretDeletedConflict(
                f"secret {name} was deleted and is recoverable; VAULT_DELETED_SECRET_POLICY=fail forbids "
                "reusing its name: recover or purge it first"
            )
        if self._policy == "recover":
            logger.warning("vault: secret %s was soft-deleted; recovering it before writing (policy recover)", name)
            self.recover(name=name)
            return self._budget(name)
        logger.warning("vault: secret %s was soft-deleted; purging it before writing (policy purge)", name)
        self.purge(name=name)
        return 0

    def _put_after_conflict(self, name: str, put: Callable[[], Any]) -> Any:
        # Right after a purge or recovery Key Vault may still answer 409 for a few seconds.
        for _ in range(self._poll_attempts):
            try:
                return self._call(f"write {name}", put)
            except VaultConflict as exc:
                if isinstance(exc, SecretDeletedConflict):
                    raise
                self._sleep(self._poll_interval)
        raise VaultConflict(f"write {name}: the vault kept answering 409 Conflict; its name is still in use")

    def read(self, *, name: str, version: str | None = None) -> Secret:
        name = validate_secret_name(name)
        if version is not None:
            version = validate_version(version)
        if self.write_only:
            raise VaultForbidden(f"read {name}: this process sets secrets and reads none (the workers read them)")
        what = f"read {name}" + (f" version {version}" if version else "")
        got = self._call(what, lambda: self.client.get_secret(name, version))
        props = got.properties
        return Secret(
            name=name,
            version=props.version or "",
            value=SecretValue(got.value or ""),
            enabled=bool(props.enabled),
            created_at=props.created_on,
            content_type=props.content_type or "",
            tags=dict(props.tags or {}),
        )

    def versions(self, *, name: str) -> list[SecretVersion]:
        name = validate_secret_name(name)
        try:
            items = self._call(
                f"list versions of {name}", lambda: list(self.client.list_properties_of_secret_versions(name))
            )
        except SecretNotFound:
            return []
        found = [
            SecretVersion(version=p.version or "", enabled=bool(p.enabled), created_at=p.created_on) for p in items
        ]
        # Key Vault lists versions in no promised order, and its times have one-second resolution: reversing
        # first puts the later-listed of two same-second versions first, which is the newer one in practice.
        found.reverse()
        found.sort(key=lambda v: v.created_at or datetime.min.replace(tzinfo=UTC), reverse=True)
        return found

    def disable(self, *, name: str, version: str) -> None:
        name = validate_secret_name(name)
        version = validate_version(version)
        self._call(
            f"disable {name} version {version}",
            lambda: self.client.update_secret_properties(name, version, enabled=False),
        )
        logger.info("vault: disabled secret %s version %s", name, version)

    def delete(self, *, name: str) -> None:
        name = validate_secret_name(name)
        deleted = self._call(f"delete {name}", lambda: self.client.begin_delete_secret(name).result())
        if deleted.recovery_id:
            # Soft delete is on: wait until the secret shows in the deleted collection, so that a purge or a
            # recovery that follows finds it.
            self._poll(f"delete {name}", lambda: self._deletion_done(name))
        logger.info("vault: deleted secret %s", name)

    def _deletion_done(self, name: str) -> bool:
        try:
            return self._deleted_exists(name)
        except VaultForbidden:
            # An identity without Get on deleted secrets cannot watch; the SDK's own poller stops here too.
            return True

    def recover(self, *, name: str) -> None:
        name = validate_secret_name(name)
        self._call(f"recover {name}", lambda: self.client.begin_recover_deleted_secret(name).result())

        def recovered() -> bool:
            try:
                self._call(f"read {name}", lambda: self.client.get_secret(name))
            except SecretNotFound:
                return False
            except SecretDisabled:
                return True
            return True

        self._poll(f"recover {name}", recovered)
        logger.info("vault: recovered secret %s", name)

    def purge(self, *, name: str) -> None:
        name = validate_secret_name(name)
        self._call(f"purge {name}", lambda: self.client.purge_deleted_secret(name))
        logger.info("vault: purged secret %s", name)

    def health(self) -> None:
        """One GET with no retry: "not found" for the probe name proves the vault answers and lets us in. In the web
        tier the GET must be refused instead: an identity that may read secrets there is a misconfiguration."""
        if self.write_only:
            self._health_write_only()
            return
        try:
            self._call(
                "health",
                lambda: self.client.get_secret(HEALTH_PROBE_NAME, connection_timeout=3, read_timeout=5),
                retry=False,
            )
        except (SecretNotFound, SecretDisabled):
            return

    def _health_write_only(self) -> None:
        try:
            self._call(
                "health",
                lambda: self.client.get_secret(HEALTH_PROBE_NAME, connection_timeout=3, read_timeout=5),
                retry=False,
            )
        except SecretDisabled:
            pass  # a version exists and this identity was allowed to ask: it may read
        except SecretNotFound:
            pass
        except VaultForbidden:
            return  # Key Vault refused the read: the identity may not get secrets, as it should
        raise VaultMisconfigured(
            "the web tier's Key Vault identity may read secrets (a GET was not refused): give it only Set "
            "(Key Vault Secrets Officer is too much; see docs/SECURITY.md, two identities)"
        )

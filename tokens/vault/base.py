"""The vault's one interface, its value types and the naming rules both backends share."""

from __future__ import annotations

import abc
import hmac
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn

from tokens.vault.errors import InvalidSecretName, VaultMisconfigured

# Key Vault keeps at most this many versions usefully: past 500 a secret can no longer be backed up and
# versions cannot be deleted. The renewal policy keeps each partner's secret under it.
MAX_VERSIONS = 500

# Key Vault's own limits, enforced alike by both backends so the local one cannot accept what Azure refuses.
MAX_NAME_LENGTH = 127
MAX_VALUE_BYTES = 25 * 1024
MAX_TAGS = 15
MAX_TAG_NAME_LENGTH = 512
MAX_TAG_VALUE_LENGTH = 256

REFRESH_TOKEN_PURPOSE = "refresh-token"  # noqa: S105 - a label, not a secret
REFRESH_TOKEN_CONTENT_TYPE = "application/vnd.cpv.refresh-token"  # noqa: S105

DELETED_SECRET_POLICIES = ("recover", "purge", "fail")

_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
_PURPOSE = re.compile(r"^[0-9a-z][0-9a-z-]{0,50}$")
# Key Vault's versions are 32 hex digits; anything that could change a URL's path is refused.
_VERSION = re.compile(r"^[0-9A-Za-z]{1,64}$")


class SecretValue:
    """A secret's value that does not show itself (masked repr, not picklable); `reveal()` where a client needs it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("a secret value is a str")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "SecretValue('[hidden]')"

    def __str__(self) -> str:
        return "[hidden]"

    def __format__(self, spec: str) -> str:
        return "[hidden]"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SecretValue):
            return hmac.compare_digest(self._value.encode(), other._value.encode())
        return NotImplemented

    def __hash__(self) -> int:
        return hash((SecretValue, len(self._value)))

    def __reduce__(self) -> NoReturn:
        # Refuses pickling, so the value cannot ride into a Celery task argument or a cache by accident.
        raise TypeError("a SecretValue cannot be pickled")


@dataclass(frozen=True)
class SecretVersion:
    """One version's state, as `versions()` lists it. Never holds the value."""

    version: str
    enabled: bool
    created_at: datetime | None


@dataclass(frozen=True)
class Secret:
    """A version read from the vault. `value` is masked in every repr."""

    name: str
    version: str
    value: SecretValue
    enabled: bool
    created_at: datetime | None
    content_type: str = ""
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WriteResult:
    """What a write made: the new version and how many versions the secret now has."""

    name: str
    version: str
    created_at: datetime | None
    version_count: int


def secret_name_for(partner_code: uuid.UUID, purpose: str = REFRESH_TOKEN_PURPOSE) -> str:
    """The one secret name a partner's `purpose` is kept under, e.g. `partner-<32 hex>-refresh-token`."""
    if not isinstance(partner_code, uuid.UUID):
        raise InvalidSecretName("a partner code is a UUID")
    if not _PURPOSE.match(purpose):
        raise InvalidSecretName(f"purpose {purpose!r} must be lower-case letters, digits and hyphens")
    return validate_secret_name(f"partner-{partner_code.hex}-{purpose}")


def validate_secret_name(name: str) -> str:
    """The canonical lower-case form of `name` (Key Vault ignores case). Raises InvalidSecretName."""
    if not isinstance(name, str) or not _NAME.match(name):
        shown = name[:140] if isinstance(name, str) else type(name).__name__
        raise InvalidSecretName(
            f"secret name {shown!r} must be 1-{MAX_NAME_LENGTH} characters of letters, digits and hyphens"
        )
    return name.lower()


def validate_version(version: str) -> str:
    if not isinstance(version, str) or not _VERSION.match(version):
        raise InvalidSecretName("a secret version is 1-64 letters and digits")
    return version


def validate_value(value: str | SecretValue) -> SecretValue:
    secret = value if isinstance(value, SecretValue) else SecretValue(value)
    size = len(secret.reveal().encode())
    if size == 0:
        raise InvalidSecretName("a secret value must not be empty")
    if size > MAX_VALUE_BYTES:
        raise InvalidSecretName(f"a secret value is at most {MAX_VALUE_BYTES} bytes, got {size}")
    return secret


def validate_tags(tags: Mapping[str, str] | None) -> dict[str, str]:
    """Tags name things (a partner code, a cloud, a flow id), never a person or a secret."""
    result = dict(tags or {})
    if len(result) > MAX_TAGS:
        raise InvalidSecretName(f"a secret takes at most {MAX_TAGS} tags, got {len(result)}")
    for key, value in result.items():
        if not isinstance(key, str) or not key or len(key) > MAX_TAG_NAME_LENGTH:
            raise InvalidSecretName(f"tag names are 1-{MAX_TAG_NAME_LENGTH} characters")
        if not isinstance(value, str) or len(value) > MAX_TAG_VALUE_LENGTH:
            raise InvalidSecretName(f"tag {key!r} must be a string of at most {MAX_TAG_VALUE_LENGTH} characters")
    return result


def secret_tags(
    *, partner_code: uuid.UUID, cloud: str, consent_flow_id: uuid.UUID | str | None = None
) -> dict[str, str]:
    """The tags a partner's token carries in the vault: identifiers only, no personal data."""
    tags = {"partner": partner_code.hex, "cloud": cloud, "purpose": REFRESH_TOKEN_PURPOSE}
    if consent_flow_id is not None:
        tags["consent-flow"] = str(consent_flow_id)
    return tags


def validate_policy(policy: str) -> str:
    if policy not in DELETED_SECRET_POLICIES:
        raise VaultMisconfigured(
            f"VAULT_DELETED_SECRET_POLICY must be one of {', '.join(DELETED_SECRET_POLICIES)}, got {policy!r}"
        )
    return policy


class Vault(abc.ABC):
    """What the rest of the code may ask of a vault (`get_vault()`). Every method raises a VaultError subclass, and
    none puts a value in a message, log line or repr."""

    backend: str = ""

    @abc.abstractmethod
    def write(
        self,
        *,
        name: str,
        value: str | SecretValue,
        tags: Mapping[str, str] | None = None,
        content_type: str = REFRESH_TOKEN_CONTENT_TYPE,
        known_count: int | None = None,
    ) -> WriteResult:
        """Store `value` as a new version of `name` (`known_count` spares counting them): the WriteResult. Raises
        VersionBudgetExceeded at MAX_VERSIONS, SecretDeletedConflict for a soft-deleted name under policy "fail"."""

    @abc.abstractmethod
    def read(self, *, name: str, version: str | None = None) -> Secret:
        """The latest version of `name`, or the given one. Raises SecretNotFound or SecretDisabled."""

    @abc.abstractmethod
    def versions(self, *, name: str) -> list[SecretVersion]:
        """Every version of `name`, newest first; an empty list for a secret that does not exist."""

    def version_count(self, *, name: str) -> int:
        """How many versions `name` has (the version budget counts against MAX_VERSIONS)."""
        return len(self.versions(name=name))

    @abc.abstractmethod
    def disable(self, *, name: str, version: str) -> None:
        """Disable one version so it can no longer be read. Raises SecretNotFound."""

    @abc.abstractmethod
    def delete(self, *, name: str) -> None:
        """Soft-delete the secret with all its versions. Raises SecretNotFound."""

    @abc.abstractmethod
    def recover(self, *, name: str) -> None:
        """Bring a soft-deleted secret back with all its versions. Raises SecretNotFound."""

    @abc.abstractmethod
    def purge(self, *, name: str) -> None:
        """Erase a soft-deleted secret for good. Raises SecretNotFound when it is not in the deleted state."""

    @abc.abstractmethod
    def health(self) -> None:
        """Return when the vault answers and can be used; raise a VaultError subclass otherwise."""

    def close(self) -> None:  # noqa: B027 - a backend without connections has nothing to close
        """Release connections."""

    def describe(self) -> dict[str, Any]:
        """What an operator may see about this vault (never a key or a credential)."""
        return {"backend": self.backend}

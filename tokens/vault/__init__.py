"""The token vault: one interface (`Vault`), a backend per store, typed errors. `get_vault()` builds the
VAULT_BACKEND once per process, importing it lazily (no app registry or Azure SDK at import)."""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from tokens.vault.base import (
    MAX_VERSIONS,
    REFRESH_TOKEN_CONTENT_TYPE,
    REFRESH_TOKEN_PURPOSE,
    Secret,
    SecretValue,
    SecretVersion,
    Vault,
    WriteResult,
    secret_name_for,
    secret_tags,
    validate_secret_name,
)
from tokens.vault.errors import (
    InvalidSecretName,
    OpeningRefused,
    SecretDeletedConflict,
    SecretDisabled,
    SecretNotFound,
    VaultConflict,
    VaultError,
    VaultForbidden,
    VaultIntegrityError,
    VaultMisconfigured,
    VaultThrottled,
    VaultTransient,
    VersionBudgetExceeded,
)

__all__ = [
    "MAX_VERSIONS",
    "REFRESH_TOKEN_CONTENT_TYPE",
    "REFRESH_TOKEN_PURPOSE",
    "InvalidSecretName",
    "OpeningRefused",
    "Secret",
    "SecretDeletedConflict",
    "SecretDisabled",
    "SecretNotFound",
    "SecretValue",
    "SecretVersion",
    "Vault",
    "VaultConflict",
    "VaultError",
    "VaultForbidden",
    "VaultIntegrityError",
    "VaultMisconfigured",
    "VaultThrottled",
    "VaultTransient",
    "VersionBudgetExceeded",
    "WriteResult",
    "build_vault",
    "get_vault",
    "opening_check",
    "process_opens_tokens",
    "reset_vault",
    "secret_name_for",
    "secret_tags",
    "validate_secret_name",
]

_SETTINGS = frozenset(
    {
        "VAULT_BACKEND",
        "VAULT_URL",
        "VAULT_KEYS",
        "VAULT_PUBLIC_KEY",
        "VAULT_PRIVATE_KEYS",
        "VAULT_DELETED_SECRET_POLICY",
        "CPV_CLOUD_CONFIG",
        "CPV_PROCESS_ROLE",
    }
)

# The roles whose processes may open a stored token (cpv/config.py's PROCESS_ROLES); the web tier only seals.
OPENING_ROLES = frozenset({"worker", "api", "all"})


def process_opens_tokens() -> bool:
    """Whether this process's role may open stored tokens (CPV_PROCESS_ROLE); the public web tier may not."""
    return getattr(settings, "CPV_PROCESS_ROLE", "all") in OPENING_ROLES


_lock = threading.Lock()
_vault: Vault | None = None


def opening_check() -> None:
    """Return in a process that may open stored tokens; raise OpeningRefused in one that may not (the web tier), before
    anything is locked or read. Queue a worker's task instead."""
    if not process_opens_tokens():
        role = getattr(settings, "CPV_PROCESS_ROLE", "")
        raise OpeningRefused(
            f"this process (CPV_PROCESS_ROLE={role}) may not open a partner's token: queue the work for the workers"
        )


def build_vault(**overrides: Any) -> Vault:
    """A new backend from the settings (keyword overrides go to its constructor, e.g. `sleep` for Azure)."""
    backend = getattr(settings, "VAULT_BACKEND", "local")
    policy = getattr(settings, "VAULT_DELETED_SECRET_POLICY", "recover")
    opens = process_opens_tokens()
    if backend == "local":
        from tokens.vault.local import LocalVault

        # A process that may not open tokens is built without the keys that would, whatever else it was given.
        options: dict[str, Any] = {
            "keys": list(getattr(settings, "VAULT_KEYS", [])) if opens else [],
            "public_key": getattr(settings, "VAULT_PUBLIC_KEY", None),
            "private_keys": list(getattr(settings, "VAULT_PRIVATE_KEYS", [])) if opens else [],
            "deleted_policy": policy,
        }
        options.update(overrides)
        return LocalVault(**options)
    if backend == "azure":
        from tokens.vault.azure import AzureVault

        options = {
            "vault_url": getattr(settings, "VAULT_URL", ""),
            "cloud": settings.CPV_CLOUD_CONFIG,
            "deleted_policy": policy,
            "write_only": not opens,
        }
        options.update(overrides)
        return AzureVault(**options)
    raise VaultMisconfigured(f"VAULT_BACKEND must be local or azure, got {backend!r}")


def get_vault() -> Vault:
    """The configured vault, built at first use and kept for the life of the process."""
    global _vault
    vault = _vault
    if vault is None:
        with _lock:
            if _vault is None:
                _vault = build_vault()
            vault = _vault
    return vault


def reset_vault() -> None:
    """Forget the cached vault (tests; a settings change). The next `get_vault()` builds a new one."""
    global _vault
    with _lock:
        vault, _vault = _vault, None
    if vault is not None:
        vault.close()


@receiver(setting_changed)
def _reset_on_setting_change(*, setting: str, **kwargs: Any) -> None:
    # override_settings and the pytest settings fixture change these; a cached vault would ignore them.
    if setting in _SETTINGS:
        reset_vault()

"""The token vault: one interface (`Vault`), a backend per store, typed errors. `get_vault()` builds the
VAULT_BACKEND once per process (with VAULT_BACKEND=azure, once per Key Vault of VAULT_URLS), importing it lazily (no
app registry or Azure SDK at import)."""

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
    "resolve_vault_url",
    "secret_name_for",
    "secret_tags",
    "validate_secret_name",
    "vault_urls",
]

_SETTINGS = frozenset(
    {
        "VAULT_BACKEND",
        "VAULT_URL",
        "VAULT_URLS",
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
# The built vaults by URL ("" for the embedded vault, which has none).
_vaults: dict[str, Vault] = {}


def vault_urls() -> tuple[str, ...]:
    """The vaults a partner's token may live in, in VAULT_URLS's order (the first holds every token stored before a
    vault was recorded): Key Vault URLs with VAULT_BACKEND=azure, the one embedded vault's "" otherwise."""
    if getattr(settings, "VAULT_BACKEND", "local") != "azure":
        return ("",)
    urls = tuple(getattr(settings, "VAULT_URLS", None) or ())
    return urls or (str(getattr(settings, "VAULT_URL", "")),)


def resolve_vault_url(recorded: str) -> str:
    """The configured vault that `recorded` (a pointer's vault, "" when none was recorded) names: "" is the first of
    `vault_urls()`, and with the embedded vault every pointer is its own. Raises VaultMisconfigured for a Key Vault
    VAULT_URLS no longer names (its tokens would be lost to every read, renewal and revocation)."""
    urls = vault_urls()
    if not recorded or urls == ("",):
        return urls[0]
    for url in urls:
        if url.lower() == recorded.lower():
            return url
    raise VaultMisconfigured(
        f"a partner's token is kept in Key Vault {recorded}, which VAULT_URLS no longer names: add it back"
    )


def opening_check() -> None:
    """Return in a process that may open stored tokens; raise OpeningRefused in one that may not (the web tier), before
    anything is locked or read. Queue a worker's task instead."""
    if not process_opens_tokens():
        role = getattr(settings, "CPV_PROCESS_ROLE", "")
        raise OpeningRefused(
            f"this process (CPV_PROCESS_ROLE={role}) may not open a partner's token: queue the work for the workers"
        )


def build_vault(vault_url: str = "", **overrides: Any) -> Vault:
    """A new backend from the settings (keyword overrides go to its constructor, e.g. `sleep` for Azure); for Azure,
    the Key Vault `vault_url` (by default the first of VAULT_URLS)."""
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
            "vault_url": vault_url or vault_urls()[0],
            "cloud": settings.CPV_CLOUD_CONFIG,
            "deleted_policy": policy,
            "write_only": not opens,
        }
        options.update(overrides)
        return AzureVault(**options)
    raise VaultMisconfigured(f"VAULT_BACKEND must be local or azure, got {backend!r}")


def get_vault(vault_url: str = "") -> Vault:
    """The vault at `vault_url` (a pointer's recorded vault, `resolve_vault_url`; by default the first), built at first
    use and kept for the life of the process. Raises VaultMisconfigured for a Key Vault VAULT_URLS does not name."""
    url = resolve_vault_url(vault_url)
    vault = _vaults.get(url)
    if vault is None:
        with _lock:
            if url not in _vaults:
                _vaults[url] = build_vault(url)
            vault = _vaults[url]
    return vault


def reset_vault() -> None:
    """Forget the cached vaults (tests; a settings change). The next `get_vault()` builds new ones."""
    with _lock:
        vaults = list(_vaults.values())
        _vaults.clear()
    for vault in vaults:
        vault.close()


@receiver(setting_changed)
def _reset_on_setting_change(*, setting: str, **kwargs: Any) -> None:
    # override_settings and the pytest settings fixture change these; a cached vault would ignore them.
    if setting in _SETTINGS:
        reset_vault()

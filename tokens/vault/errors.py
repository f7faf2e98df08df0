"""The vault's typed errors: each transient (retry) or permanent (a person must act), never carrying a value."""

from __future__ import annotations


class VaultError(Exception):
    """Base of the vault's typed errors. Messages never carry a secret's value."""

    transient: bool = False


class VaultMisconfigured(VaultError):
    """The vault cannot be used as configured (a wrong or missing key, URL or credential)."""


class InvalidSecretName(VaultError, ValueError):
    """A secret name, version id or tag that Key Vault would refuse."""


class SecretNotFound(VaultError):
    """No such secret, version, or deleted secret."""


class VaultForbidden(VaultError):
    """The vault refused the call: the identity lacks a permission, or its credential was rejected."""


class SecretDisabled(VaultForbidden):
    """The version exists but is disabled, so it can no longer be read (Key Vault answers 403)."""


class VaultThrottled(VaultError):
    """The vault kept answering 429 after the bounded retries; `retry_after` is the wait it last asked for."""

    transient = True

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class VaultTransient(VaultError):
    """A 5xx answer, a timeout or a connection failure that outlasted the bounded retries."""

    transient = True


class VaultConflict(VaultError):
    """The vault refused the call because of the secret's state (Key Vault's 409): a deletion in progress."""


class SecretDeletedConflict(VaultConflict):
    """The name belongs to a soft-deleted secret and VAULT_DELETED_SECRET_POLICY=fail forbids reusing it."""


class VersionBudgetExceeded(VaultError):
    """Writing would give the secret more versions than MAX_VERSIONS."""

    def __init__(self, message: str, *, count: int) -> None:
        super().__init__(message)
        self.count = count


class VaultIntegrityError(VaultError):
    """A stored ciphertext failed authentication: it was altered, or moved from another row."""


class OpeningRefused(RuntimeError):
    """This process may not open a stored token (CPV_PROCESS_ROLE=web, beat or migrate): the work belongs to a worker.
    Not a VaultError on purpose: no caller may take it for a vault's failure and record a partner's state from it."""

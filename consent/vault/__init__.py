"""The token vault: one interface, a backend per store. Until a backend is built, every call fails loudly."""

from __future__ import annotations


class VaultError(Exception):
    """Base of the vault's typed errors. Messages never carry a secret's value."""


class VaultMisconfigured(VaultError):
    """The vault cannot be used as configured."""


def get_vault() -> object:
    raise VaultMisconfigured("no vault backend is available yet (VAULT_BACKEND is read, but not served)")

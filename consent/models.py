"""Consent flows, their events and the tokens' bookkeeping. The vault's own table lives in consent/vault/."""

from __future__ import annotations

# The local vault's table is defined beside its backend; importing it here lets Django find it.
from consent.vault.models import VaultSecretVersion

__all__ = ["VaultSecretVersion"]

"""System checks of the tokens' vaults: `manage.py check --database default`, and `migrate` (which runs the database
checks) where it is given the vault's settings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.checks import CheckMessage, Error, Tags, register
from django.db import DatabaseError

from tokens.selectors import vaults_unnamed


@register(Tags.database)
def vaults_in_use_check(app_configs: Any, databases: Sequence[str] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """An error per Key Vault that keeps partners' tokens but VAULT_URLS no longer names: removing a vault in use is
    refused, naming how many partners it keeps."""
    if not databases:
        return []
    try:
        problems = vaults_unnamed()
    except DatabaseError:
        # Before the token table (or its vault column) is migrated, no vault keeps anything yet.
        return []
    return [
        Error(
            problem,
            hint="List every vault that keeps tokens in VAULT_URLS (new vaults go after them); the first keeps the "
            "tokens stored before vaults were recorded.",
            id="tokens.E001",
        )
        for problem in problems
    ]

"""`manage.py vault_rotate_key`: re-encrypt the local vault under the newest key of VAULT_KEY."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tokens.management.rows import rows_report
from tokens.vault.errors import VaultError
from tokens.vault.services import vault_key_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every local vault row under the first key of VAULT_KEY (set VAULT_KEY=new,old first); with a key "
        "pair set, seal it to VAULT_PUBLIC_KEY instead (as vault_reseal does, unaudited as a re-seal). "
        "Each row is re-encrypted in its own transaction, so every secret stays readable throughout. "
        "Prints the counts; exits non-zero if any row could not be re-encrypted."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = vault_key_rotate()
        except VaultError as exc:
            raise CommandError(str(exc)) from None
        rows_report(
            self,
            report,
            key="newest key id",
            done="re-encrypted",
            current="already under the newest key",
            again="keep their old key in VAULT_KEY and run again",
            success="every row is under the newest key; older keys may be removed",
        )

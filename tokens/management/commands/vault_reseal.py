"""`manage.py vault_reseal`: seal every local vault row to VAULT_PUBLIC_KEY, so that the web tier can hold that key
alone."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tokens.management.rows import rows_report
from tokens.vault.errors import VaultError
from tokens.vault.services import vault_reseal


class Command(BaseCommand):
    help = (
        "Seal every local vault row to VAULT_PUBLIC_KEY, opening it with VAULT_KEY (written before sealing) or "
        "VAULT_PRIVATE_KEY (an older key pair, listed after the newest). Run it where the workers run: it needs the "
        "keys that open tokens. Each row is re-sealed in its own transaction, so every token stays redeemable "
        "throughout; a run that stopped is finished by running it again, and a second run changes nothing. Audited "
        "(vault.reseal_started, vault.resealed). Exits non-zero if any row could not be re-sealed."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = vault_reseal()
        except VaultError as exc:
            raise CommandError(str(exc)) from None
        rows_report(
            self,
            report,
            key="sealed to key id",
            done="re-sealed",
            current="already sealed to it",
            again="keep the keys that open them and run again",
            success="every row is sealed: VAULT_KEY may be removed from the workers once it has run",
        )

"""`manage.py vault_check`: prove each configured vault (every Key Vault of VAULT_URLS) can write, read, disable and
delete a secret."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tokens.vault import get_vault, vault_urls
from tokens.vault.errors import VaultError
from tokens.vault.services import FAILED, OK, vault_check


class Command(BaseCommand):
    help = (
        "Write, read, disable, delete and purge a probe secret in each configured vault, one line per step "
        "(OK, FAILED with its reason, or SKIPPED). Exits non-zero if any step failed. "
        "Never prints the probe's value."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--no-purge",
            action="store_true",
            help="leave the probe soft-deleted (for an identity that may not purge)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        urls = vault_urls()
        failed: list[str] = []
        for url in urls:
            if len(urls) > 1:
                self.stdout.write(f"vault {url}")
            failed += [f"{step} ({url})" if len(urls) > 1 else step for step in self._check(url, options["no_purge"])]
        if failed:
            raise CommandError(f"vault check failed at: {', '.join(failed)}")
        self.stdout.write("vault check passed")

    def _check(self, url: str, no_purge: bool) -> list[str]:
        """Check the vault at `url`, a line per step: the steps that failed."""
        try:
            steps = vault_check(vault=get_vault(url), purge=not no_purge)
        except VaultError as exc:  # the vault could not even be built
            self.stdout.write(f"{'health':<9} {FAILED:<8} {exc.__class__.__name__}: {exc}")
            raise CommandError("vault check failed: the vault could not be set up") from None
        for step in steps:
            line = f"{step.step:<9} {step.status:<8} {step.detail}".rstrip()
            style = self.style.SUCCESS if step.status == OK else self.style.ERROR if not step.ok else self.style.WARNING
            self.stdout.write(style(line))
        return [step.step for step in steps if not step.ok]

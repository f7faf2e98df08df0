"""Renew partners' refresh tokens now, in this process."""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from partners.commands import Progress, add_partner_arguments, chosen_partners
from tokens.renewal import renew_one_retrying


class Command(BaseCommand):
    help = "Renew due refresh tokens (or every one with --force); exits non-zero if any renewal failed."

    def add_arguments(self, parser: CommandParser) -> None:
        add_partner_arguments(parser)
        parser.add_argument("--force", action="store_true", help="renew even tokens that are not due")

    def handle(self, *args: Any, **options: Any) -> None:
        partners = chosen_partners(options)
        progress = Progress(len(partners))
        outcomes: Counter[str] = Counter()
        failures = []
        for partner in partners:
            result = renew_one_retrying(partner_id=partner.pk, force=options["force"])
            outcomes[result.outcome] += 1
            if not result.ok:
                failures.append(f"{partner.code} {partner.name}: {result.message}")
            progress.step(partner.name)
        summary = ", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items())) or "no partners"
        self.stdout.write(f"Renewal: {summary}")
        for line in failures:
            self.stdout.write(f"  failed: {line}")
        if failures:
            raise CommandError(f"{len(failures)} renewal(s) failed")

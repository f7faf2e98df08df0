"""Sync partners' customers from Partner Center now, in this process."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from customers.services import CallFailed, customers_sync
from partners.commands import Progress, add_partner_arguments, chosen_partners


class Command(BaseCommand):
    help = "Sync customers from Partner Center; exits non-zero if any partner's sync failed."

    def add_arguments(self, parser: CommandParser) -> None:
        add_partner_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        partners = chosen_partners(options)
        progress = Progress(len(partners))
        totals = {"listed": 0, "created": 0, "updated": 0, "removed": 0}
        failures = []
        for partner in partners:
            try:
                result = customers_sync(partner_id=partner.pk)
            except CallFailed as exc:
                failures.append(f"{partner.code} {partner.name}: {exc}")
            else:
                for name in totals:
                    totals[name] += getattr(result, name)
            progress.step(partner.name)
        self.stdout.write(
            f"Customers: {len(partners) - len(failures)} partner(s) synced, {totals['listed']} listed, "
            f"{totals['created']} new, {totals['updated']} changed, {totals['removed']} removed"
        )
        for line in failures:
            self.stdout.write(f"  failed: {line}")
        if failures:
            raise CommandError(f"{len(failures)} sync(s) failed")

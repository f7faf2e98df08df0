"""Recount partners' customer coverage counters from their customers (after a bulk load, or to look for drift)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from customers.coverage import coverage_recount
from partners.commands import chosen_partners
from partners.models import Partner


class Command(BaseCommand):
    help = "Recount the customer coverage counters from the customers; lists the partners whose counters differed."

    def add_arguments(self, parser: CommandParser) -> None:
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--partner", metavar="CODE", help="one partner, by its code (a UUID)")
        group.add_argument("--all", action="store_true", help="every partner, whatever its status")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["all"]:
            total = Partner.objects.count()
            wrong = coverage_recount()
        else:
            partners = chosen_partners(options)
            total = len(partners)
            wrong = coverage_recount(partner_ids=[p.pk for p in partners])
        for code, name in Partner.objects.filter(pk__in=wrong).order_by("name", "pk").values_list("code", "name"):
            self.stdout.write(f"  corrected: {code} {name}")
        self.stdout.write(f"Coverage: {total} partner(s) recounted, {len(wrong)} corrected")

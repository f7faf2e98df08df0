"""Apply ApplicationConsent to every customer of the chosen partners now, in this process."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from customers.models import CustomerConsent
from customers.services import CallFailed, customer_consent_apply, customers_needing_consent
from partners.commands import Progress, add_partner_arguments, chosen_partners


class Command(BaseCommand):
    help = "Apply ApplicationConsent to each customer that needs it; exits non-zero if any failed."

    def add_arguments(self, parser: CommandParser) -> None:
        add_partner_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        work = []
        for partner in chosen_partners(options):
            correlation_id = str(uuid.uuid4())
            work += [(cid, correlation_id) for cid in customers_needing_consent(partner_id=partner.pk)]
        progress = Progress(len(work))
        outcomes: Counter[str] = Counter()
        for customer_id, correlation_id in work:
            try:
                state = customer_consent_apply(customer_id=customer_id, correlation_id=correlation_id)
                status = state.status
            except CallFailed:
                status = "retry_later"
            outcomes[status] += 1
            progress.step()
        summary = ", ".join(f"{count} {status}" for status, count in sorted(outcomes.items())) or "nothing to do"
        self.stdout.write(f"ApplicationConsent: {summary}")
        failed = len(work) - outcomes[CustomerConsent.Status.APPLIED]
        if failed:
            raise CommandError(f"{failed} customer(s) not consented")

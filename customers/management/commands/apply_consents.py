"""Apply ApplicationConsent to the chosen partners' customers now, in this process, in the workers' batches."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from customers.services import access_check, application_consent_batch, customers_needing_consent
from customers.tasks import BATCH_SIZE
from partners.commands import Progress, add_partner_arguments, chosen_partners


class Command(BaseCommand):
    help = "Apply ApplicationConsent to each customer that needs it; exits non-zero if any failed."

    def add_arguments(self, parser: CommandParser) -> None:
        add_partner_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        work = []
        outcomes: Counter[str] = Counter()
        for partner in chosen_partners(options):
            correlation_id = str(uuid.uuid4())
            # GDAP first (Graph only): customers without access cost no Partner Center request.
            checked = access_check(partner_id=partner.pk)
            if checked is not None and checked.without_access:
                outcomes["without_access"] += checked.without_access
            ids = customers_needing_consent(partner_id=partner.pk)
            work += [(partner, ids[i : i + BATCH_SIZE], correlation_id) for i in range(0, len(ids), BATCH_SIZE)]
        progress = Progress(len(work))
        for partner, customer_ids, correlation_id in work:
            # One audit row per batch, with its counts, as the workers write.
            tally = application_consent_batch(
                partner_id=partner.pk, customer_ids=customer_ids, correlation_id=correlation_id
            )
            outcomes.update(
                {key: value for key, value in tally.counts().items() if key not in ("tried", "without_access")}
            )
            outcomes["left for later"] += len(tally.retry_ids)
            progress.step(partner.name)
        summary = ", ".join(f"{count} {status}" for status, count in sorted(outcomes.items()) if count)
        self.stdout.write(f"ApplicationConsent: {summary or 'nothing to do'}")
        not_done = outcomes["failed"] + outcomes["left for later"]
        if not_done:
            raise CommandError(f"{not_done} customer(s) not consented")

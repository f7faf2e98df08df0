"""Read back, in each customer's tenant, the ApplicationConsent of the chosen partners' customers now, in this process,
and repair what drifted or went missing."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from customers.proof import VerifyTally, consents_verify, customers_to_verify
from customers.tasks import VERIFY_BATCH
from partners.commands import Progress, add_partner_arguments, chosen_partners


class Command(BaseCommand):
    help = (
        "Verify in Graph that each applied ApplicationConsent is in its customer's tenant with its grants, and repair "
        "what drifted or is missing; exits non-zero if any customer is left drifted or missing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_partner_arguments(parser)
        parser.add_argument("--no-repair", action="store_true", help="only read and report; send no repair")

    def handle(self, *args: Any, **options: Any) -> None:
        work = []
        for partner in chosen_partners(options):
            ids = customers_to_verify(partner_id=partner.pk, due_only=False)
            work += [(partner, ids[i : i + VERIFY_BATCH]) for i in range(0, len(ids), VERIFY_BATCH)]
        total = VerifyTally()
        progress = Progress(len(work))
        for partner, customer_ids in work:
            tally = consents_verify(customer_ids=customer_ids, repair=not options["no_repair"])
            for key, value in tally.counts().items():
                setattr(total, key, getattr(total, key) + value)
            progress.step(partner.name)
        counts = total.counts()
        graph_requests = counts.pop("graph_requests")
        summary = ", ".join(f"{count} {what.replace('_', ' ')}" for what, count in counts.items() if count)
        self.stdout.write(
            f"Verification: {summary or 'nothing to verify'} ({graph_requests} Graph requests, "
            "no Partner Center request but the repairs)"
        )
        left = total.drifted + total.missing
        if left:
            raise CommandError(f"{left} customer(s) left drifted or missing")

"""Per-partner counters of present, consented and failed customers, kept exact in the transaction of each change:
sync recounts under the partner's lock, ApplicationConsent shifts them under the customer's row lock (`F()`
updates add up). `coverage_recount` puts right writes that bypassed the services."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from customers.models import CustomerConsent, PartnerCoverage
from partners.models import Customer, Partner

logger = logging.getLogger(__name__)

# Partners recounted per transaction by a recount of many: each batch locks its own rows only.
RECOUNT_BATCH = 1000


@dataclass(frozen=True)
class Coverage:
    customers: int = 0
    consented: int = 0
    failed: int = 0

    @property
    def pending(self) -> int:
        return self.customers - self.consented - self.failed

    @property
    def percent(self) -> int:
        return round(100 * self.consented / self.customers) if self.customers else 0

    def in_state(self, state: str) -> int:
        """How many customers `customers_of` lists for an ApplicationConsent state ("": all)."""
        counts: dict[str, int] = {
            CustomerConsent.Status.APPLIED: self.consented,
            CustomerConsent.Status.FAILED: self.failed,
            CustomerConsent.Status.PENDING: self.pending,
        }
        return counts.get(state, self.customers)


def coverage_count(partner_ids: list[int]) -> dict[int, Coverage]:
    """The partners' coverage counted from their customers in one query (partners without customers left out)."""
    rows = (
        Customer.objects.filter(partner_id__in=partner_ids, removed_at__isnull=True)
        .order_by()
        .values("partner_id")
        .annotate(
            customers=Count("id"),
            consented=Count("id", filter=Q(application_consent__status=CustomerConsent.Status.APPLIED)),
            failed=Count("id", filter=Q(application_consent__status=CustomerConsent.Status.FAILED)),
        )
    )
    return {r["partner_id"]: Coverage(r["customers"], r["consented"], r["failed"]) for r in rows}


def coverage_recount(*, partner_ids: list[int] | None = None) -> list[int]:
    """Recount the partners' counters (all when None) under their row locks, a batch per transaction: the ids of the
    partners whose counters were wrong."""
    wrong: list[int] = []
    for batch in _batches(partner_ids):
        with transaction.atomic():
            wrong += _recount(batch)
    if wrong:
        logger.info("coverage of %d partner(s) recounted with a difference", len(wrong))
    return wrong


def _batches(partner_ids: list[int] | None) -> Iterator[list[int]]:
    if partner_ids is not None:
        ordered = sorted(set(partner_ids))
        for start in range(0, len(ordered), RECOUNT_BATCH):
            yield ordered[start : start + RECOUNT_BATCH]
        return
    last = 0
    while True:
        batch = list(Partner.objects.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:RECOUNT_BATCH])
        if not batch:
            return
        yield batch
        last = batch[-1]


def _recount(partner_ids: list[int]) -> list[int]:
    PartnerCoverage.objects.bulk_create([PartnerCoverage(partner_id=pk) for pk in partner_ids], ignore_conflicts=True)
    # The lock first, then the count in a statement of its own, which sees every shift committed before it.
    rows = list(PartnerCoverage.objects.select_for_update().filter(partner_id__in=partner_ids).order_by("pk"))
    counts = coverage_count(partner_ids)
    wrong = []
    for row in rows:
        counted = counts.get(row.partner_id, Coverage())
        if (row.customers, row.consented, row.failed) != (counted.customers, counted.consented, counted.failed):
            row.customers, row.consented, row.failed = counted.customers, counted.consented, counted.failed
            wrong.append(row)
    PartnerCoverage.objects.bulk_update(wrong, ["customers", "consented", "failed"], batch_size=500)
    PartnerCoverage.objects.filter(partner_id__in=partner_ids).update(counted_at=timezone.now())
    return [row.partner_id for row in wrong]


def coverage_consent_changed(*, partner_id: int, before: str | None, after: str) -> None:
    """Shift the partner's counters for one present customer's status change (`before` None: no row yet), or recount a
    partner without counters. The caller holds the customer's row lock, in the transaction that wrote `after`."""
    applied, failed = CustomerConsent.Status.APPLIED, CustomerConsent.Status.FAILED
    consented_by = int(after == applied) - int(before == applied)
    failed_by = int(after == failed) - int(before == failed)
    if not consented_by and not failed_by:
        return
    shifted = PartnerCoverage.objects.filter(partner_id=partner_id).update(
        consented=F("consented") + consented_by, failed=F("failed") + failed_by
    )
    if not shifted:
        coverage_recount(partner_ids=[partner_id])

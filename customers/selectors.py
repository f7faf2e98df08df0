"""Reads of a partner's customers: the coverage counters, and the customers with their ApplicationConsent state a
page at a time."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from cpv.cache import cache_read, cache_write
from customers.coverage import Coverage
from customers.models import WITHOUT_ACCESS, CustomerConsent, GdapNotice, PartnerCoverage
from customers.words import APPLIED_UNVERIFIED, NOT_AVAILABLE
from partners.models import Customer, Partner


def coverage_for(partner_ids: list[int]) -> dict[int, Coverage]:
    """Coverage per partner from the counters, in one query (a partner without counters is left out: zeros)."""
    rows = PartnerCoverage.objects.filter(partner_id__in=partner_ids).values_list(
        "partner_id", "customers", "consented", "failed"
    )
    return {pk: Coverage(customers, consented, failed) for pk, customers, consented, failed in rows}


# The customer-list filter for customers the GDAP pre-flight holds back.
WITHOUT_ACCESS_STATE = "without_access"
# Customers (read from CustomerConsent) the GDAP pre-flight holds back now: without access and not consented.
WITHOUT_ACCESS_Q = Q(access__in=WITHOUT_ACCESS) & ~Q(status=CustomerConsent.Status.APPLIED)


def without_access_counts(partner_ids: list[int] | None = None) -> dict[int, int]:
    """Per partner, how many present customers the GDAP pre-flight holds back (partners with none left out); every
    partner when `partner_ids` is None."""
    rows = CustomerConsent.objects.filter(WITHOUT_ACCESS_Q, customer__removed_at__isnull=True)
    if partner_ids is not None:
        rows = rows.filter(customer__partner_id__in=partner_ids)
    counted = rows.order_by().values("customer__partner_id").annotate(n=Count("id"))
    return {row["customer__partner_id"]: row["n"] for row in counted}


def without_access_total() -> int:
    """How many present customers of every partner the GDAP pre-flight holds back."""
    return CustomerConsent.objects.filter(WITHOUT_ACCESS_Q, customer__removed_at__isnull=True).count()


def gdap_notice_counts(partner_id: int | None = None) -> dict[str, int]:
    """Open GDAP notices (of one partner, or all): `gdap_ending` and `gdap_ended` relationships."""
    rows = GdapNotice.objects.filter(resolved_at__isnull=True)
    if partner_id is not None:
        rows = rows.filter(partner_id=partner_id)
    counted = rows.aggregate(
        gdap_ending=Count("id", filter=Q(kind=GdapNotice.Kind.ENDING)),
        gdap_ended=Count("id", filter=Q(kind=GdapNotice.Kind.ENDED)),
    )
    return {key: int(value or 0) for key, value in counted.items()}


def gdap_notices_open(partner: Partner) -> list[GdapNotice]:
    """The partner's GDAP relationships ending or ended that are still open, soonest first."""
    return list(GdapNotice.objects.filter(partner=partner, resolved_at__isnull=True).order_by("ends_at", "id"))


# The proof states of applied consents (customers/words.py labels them), each as a filter on CustomerConsent.
_APPLIED = Q(status=CustomerConsent.Status.APPLIED)
PROOF_FILTERS: dict[str, Q] = {
    CustomerConsent.Proof.VERIFIED: _APPLIED & Q(proof=CustomerConsent.Proof.VERIFIED),
    APPLIED_UNVERIFIED: _APPLIED & Q(proof__in=["", CustomerConsent.Proof.UNVERIFIABLE]),
    CustomerConsent.Proof.DRIFTED: _APPLIED & Q(proof=CustomerConsent.Proof.DRIFTED),
    CustomerConsent.Proof.MISSING: _APPLIED & Q(proof=CustomerConsent.Proof.MISSING),
    # Applied without a resource the tenant does not have (a workload it is not licensed for).
    NOT_AVAILABLE: _APPLIED & Q(proof_detail__has_key="unavailable"),
}


def proof_counts(partner_ids: list[int] | None = None) -> dict[int, dict[str, int]]:
    """Per partner, its present customers in each proof state (PROOF_FILTERS' keys, zeros included), in one query;
    partners without an applied consent are left out; every partner when `partner_ids` is None."""
    rows = CustomerConsent.objects.filter(_APPLIED, customer__removed_at__isnull=True)
    if partner_ids is not None:
        rows = rows.filter(customer__partner_id__in=partner_ids)
    counted = (
        rows.order_by()
        .values("customer__partner_id")
        .annotate(**{state: Count("id", filter=condition) for state, condition in PROOF_FILTERS.items()})
    )
    return {row.pop("customer__partner_id"): {k: int(v) for k, v in row.items()} for row in counted}


# A partner's consents by state (proof states, without access) are counted from its customers' rows. Up to this many
# present customers they are counted for each view; beyond, the count is reused for up to STATE_COUNTS_SECONDS and the
# page says as of when, so that a partner with 50,000 customers is not counted whole on every view.
STATE_COUNTS_LIVE_UP_TO = 2000
STATE_COUNTS_SECONDS = 60


@dataclass(frozen=True)
class StateCounts:
    """One partner's present customers in each proof state (PROOF_FILTERS' keys), those the GDAP pre-flight holds
    back, and when they were counted: `reused` when the count was made for an earlier view."""

    proved: dict[str, int]
    without_access: int
    counted_at: datetime
    reused: bool = False


def _state_counts_key(partner_id: int) -> str:
    return f"cpv:partner-state-counts:v1:{partner_id}"


def partner_state_counts(partner: Partner, *, customers: int) -> StateCounts:
    """The partner's StateCounts: counted now when it has at most STATE_COUNTS_LIVE_UP_TO present `customers` (its
    coverage counter), else reused from a count younger than STATE_COUNTS_SECONDS when there is one."""
    big = customers > STATE_COUNTS_LIVE_UP_TO
    if big:
        data = cache_read(_state_counts_key(partner.pk), what="a partner's state counts")
        if isinstance(data, dict):
            try:
                return StateCounts(
                    proved={state: int(data["proved"][state]) for state in PROOF_FILTERS},
                    without_access=int(data["without_access"]),
                    counted_at=datetime.fromisoformat(data["counted_at"]),
                    reused=True,
                )
            except (KeyError, TypeError, ValueError):
                pass
    counted = StateCounts(
        proved=proof_counts([partner.pk]).get(partner.pk, dict.fromkeys(PROOF_FILTERS, 0)),
        without_access=without_access_counts([partner.pk]).get(partner.pk, 0),
        counted_at=timezone.now(),
    )
    if big:
        data = {"proved": counted.proved, "without_access": counted.without_access}
        cache_write(
            _state_counts_key(partner.pk),
            {**data, "counted_at": counted.counted_at.isoformat()},
            STATE_COUNTS_SECONDS,
            what="a partner's state counts",
        )
    return counted


def proof_totals() -> dict[str, int]:
    """Every partner's present customers in each proof state: every consent counted in one pass over their table, less
    those of removed customers (few, found from their index), so that no pass joins every consent with its customer."""
    counts = {state: Count("id", filter=condition) for state, condition in PROOF_FILTERS.items()}
    every = CustomerConsent.objects.filter(_APPLIED).aggregate(**counts)
    removed = CustomerConsent.objects.filter(_APPLIED, customer__removed_at__isnull=False).aggregate(**counts)
    return {state: int(every[state] or 0) - int(removed[state] or 0) for state in PROOF_FILTERS}


def customers_of(partner: Partner, *, state: str = "") -> QuerySet[Customer]:
    """The partner's present customers with their ApplicationConsent state, filtered by `state` (applied, failed,
    pending, without_access: held back by the GDAP pre-flight, or a proof state of PROOF_FILTERS)."""
    qs = Customer.objects.filter(partner=partner, removed_at__isnull=True).select_related("application_consent")
    if state in PROOF_FILTERS:
        qs = qs.filter(
            application_consent__in=CustomerConsent.objects.filter(PROOF_FILTERS[state], customer__partner=partner)
        )
    elif state == WITHOUT_ACCESS_STATE:
        qs = qs.filter(
            application_consent__access__in=WITHOUT_ACCESS,
        ).exclude(application_consent__status=CustomerConsent.Status.APPLIED)
    elif state == CustomerConsent.Status.PENDING:
        qs = qs.filter(
            Q(application_consent__isnull=True) | Q(application_consent__status=CustomerConsent.Status.PENDING)
        )
    elif state in (CustomerConsent.Status.APPLIED, CustomerConsent.Status.FAILED):
        qs = qs.filter(application_consent__status=state)
    return qs.order_by("company_name", "id")


CUSTOMER_PAGE_SIZE = 25


@dataclass(frozen=True)
class CustomerPage:
    """A page of a partner's customers; the cursors of the pages before and after it, "" when there is none."""

    customers: list[Customer]
    next_cursor: str = ""
    previous_cursor: str = ""

    @property
    def has_other_pages(self) -> bool:
        return bool(self.next_cursor or self.previous_cursor)


def customer_cursor(customer: Customer) -> str:
    """The position of a customer in `customers_of`'s order, for a link: its sort key, base64 of JSON."""
    key = json.dumps([customer.company_name, customer.pk], ensure_ascii=False, separators=(",", ":"))
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def _cursor_key(cursor: str) -> tuple[str, int] | None:
    # The longest a cursor gets: 300 characters that JSON writes as \uXXXX, an id, base64 of it all.
    if not cursor or len(cursor) > 2600:
        return None
    try:
        name, pk = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        name.encode()  # a lone surrogate would only fail in the database
    except (ValueError, TypeError, AttributeError):
        return None
    # PostgreSQL refuses NUL in text and integers beyond a bigint: those would be errors, not empty pages.
    if not isinstance(name, str) or len(name) > 300 or "\x00" in name:
        return None
    if type(pk) is not int or not 0 < pk < 2**63:
        return None
    return name, pk


def customer_page(
    partner: Partner, *, state: str = "", after: str = "", before: str = "", size: int = CUSTOMER_PAGE_SIZE
) -> CustomerPage:
    """The first page of `customers_of`, or the one right after or before a cursor's customer, found by keyset (never
    OFFSET); a cursor that does not decode or leads nowhere gives the first page."""
    qs = customers_of(partner, state=state)
    after_key = _cursor_key(after) if not before else None
    before_key = _cursor_key(before) if not after else None
    if after_key is not None:
        name, pk = after_key
        # The first condition alone bounds the index scan; the second puts ties on the name in id order.
        rows = list(qs.filter(company_name__gte=name).exclude(company_name=name, pk__lte=pk)[: size + 1])
        if rows:
            return CustomerPage(
                rows[:size],
                next_cursor=customer_cursor(rows[size - 1]) if len(rows) > size else "",
                previous_cursor=customer_cursor(rows[0]),
            )
    elif before_key is not None:
        name, pk = before_key
        rows = list(
            qs.filter(company_name__lte=name)
            .exclude(company_name=name, pk__gte=pk)
            .order_by("-company_name", "-id")[: size + 1]
        )
        if len(rows) >= size:
            page = rows[:size][::-1]
            return CustomerPage(
                page,
                next_cursor=customer_cursor(page[-1]),
                previous_cursor=customer_cursor(page[0]) if len(rows) > size else "",
            )
    rows = list(qs[: size + 1])
    return CustomerPage(rows[:size], next_cursor=customer_cursor(rows[size - 1]) if len(rows) > size else "")

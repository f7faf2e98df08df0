"""Reads for the staff dashboard and the partner portal: partners with their token health, customer coverage,
the overview's counts and series, and the progress of operations started from the pages.

Every function here issues a fixed number of queries whatever the number of partners or customers: counts
are aggregates, lists are bounded, and related rows come with `select_related`/`prefetch_related`.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db.models import (
    Case,
    CharField,
    Count,
    F,
    Prefetch,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from consent.models import ConsentFlow, ConsentFlowEvent
from customers.coverage import Coverage
from customers.models import CustomerConsent, PartnerCoverage
from partners.models import AuditEvent, Customer, Partner
from tokens.models import PartnerToken, TokenEvent
from tokens.renewal import TokenStatus, renewal_interval, token_status
from tokens.vault import MAX_VERSIONS

logger = logging.getLogger(__name__)

# Entra lets a refresh token die after 90 days without use; the dashboard warns this long before.
TOKEN_LIFETIME = timedelta(days=90)
EXPIRY_WARNING = timedelta(days=14)
HEALTH_LABELS = {
    TokenStatus.NONE: "No token",
    TokenStatus.HEALTHY: "Healthy",
    TokenStatus.DUE: "Due for renewal",
    TokenStatus.FAILING: "Renewal failing",
    TokenStatus.INVALID: "Invalid: re-consent needed",
}
HEALTH_CHOICES = list(HEALTH_LABELS.items())

# --- token health ------------------------------------------------------------------------------------------


def token_health_expression(*, now: datetime | None = None, prefix: str = "token__") -> Case:
    """tokens.renewal.token_status as SQL, so a list of thousands of partners can filter and sort on it.

    `prefix` is the path from the queried model to PartnerToken ("token__" from Partner). The two must
    agree: tests/partners/test_selectors.py compares them case by case.
    """
    now = now or timezone.now()
    status_path = "status" if prefix == "token__" else f"{prefix.removesuffix('token__')}status"
    return Case(
        When(Q(**{f"{prefix}isnull": True}) | Q(**{f"{prefix}current_version": ""}), then=Value(TokenStatus.NONE)),
        When(Q(**{status_path: Partner.Status.RECONSENT_NEEDED}), then=Value(TokenStatus.INVALID)),
        When(
            Q(**{f"{prefix}last_failure_at__isnull": False})
            & (
                Q(**{f"{prefix}last_renewed_at__isnull": True})
                | Q(**{f"{prefix}last_failure_at__gt": F(f"{prefix}last_renewed_at")})
            ),
            then=Value(TokenStatus.FAILING),
        ),
        When(
            Q(**{f"{prefix}last_renewed_at__isnull": True})
            | Q(**{f"{prefix}last_renewed_at__lte": now - renewal_interval()}),
            then=Value(TokenStatus.DUE),
        ),
        default=Value(TokenStatus.HEALTHY),
        output_field=CharField(),
    )


# --- the partner list --------------------------------------------------------------------------------------

SORTS = {
    "name": ("name", "id"),
    "-name": ("-name", "-id"),
    "status": ("status", "name", "id"),
    "health": ("health", "name", "id"),
    "created": ("created_at", "id"),
    "-created": ("-created_at", "-id"),
    "renewed": (F("token__last_renewed_at").asc(nulls_first=True), "id"),
    "-renewed": (F("token__last_renewed_at").desc(nulls_last=True), "id"),
}


def partner_directory(
    *,
    search: str = "",
    status: str = "",
    cloud: str = "",
    environment: str = "",
    health: str = "",
    mfa: str = "",
    sort: str = "name",
    now: datetime | None = None,
) -> QuerySet[Partner]:
    """Partners filtered and sorted for the list, each annotated with `health` and carrying its token row.

    `search` matches the name, the default domain or the contact email (contains, any case), or the tenant
    id when it is a GUID or a GUID's prefix.
    """
    qs = Partner.objects.select_related("token").annotate(health=token_health_expression(now=now))
    search = search.strip()
    if search:
        match = Q(name__icontains=search) | Q(default_domain__icontains=search) | Q(contact_email__iexact=search)
        try:
            match |= Q(tenant_id=uuid.UUID(search))
        except ValueError:
            if re.fullmatch(r"[0-9a-fA-F-]{4,36}", search):
                # A partial GUID: compare as text (the column is a uuid on PostgreSQL).
                match |= Q(tenant_id__startswith=search.lower())
        qs = qs.filter(match)
    if status:
        qs = qs.filter(status=status)
    if cloud:
        qs = qs.filter(cloud=cloud)
    if environment:
        qs = qs.filter(environment=environment)
    if health:
        qs = qs.filter(health=health)
    if mfa in MFA_FILTERS:
        qs = (
            qs.filter(mfa_compliant=MFA_FILTERS[mfa])
            if MFA_FILTERS[mfa] is not None
            else qs.filter(mfa_compliant__isnull=True)
        )
    return qs.order_by(*SORTS.get(sort, SORTS["name"]))


# The list's MFA filter: Partner Center's last isMfaCompliant for the partner, or none seen yet.
MFA_FILTERS: dict[str, bool | None] = {"compliant": True, "not_compliant": False, "unknown": None}


def coverage_for(partner_ids: list[int]) -> dict[int, Coverage]:
    """Present customers, those with the vendor's app consented, and those failing, per partner, from the
    coverage counters (one query; a partner without counters yet is left out, which reads as zeros)."""
    rows = PartnerCoverage.objects.filter(partner_id__in=partner_ids).values_list(
        "partner_id", "customers", "consented", "failed"
    )
    return {pk: Coverage(customers, consented, failed) for pk, customers, consented, failed in rows}


# --- the overview ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    css: str = ""
    hint: str = ""


@dataclass(frozen=True)
class DaySeries:
    day: date
    values: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.values.values())


@dataclass
class Overview:
    since: datetime
    now: datetime
    # When the counts over every partner and the period's events (the trends) were made; the rest is live.
    as_of: datetime
    by_status: list[Bar]
    by_health: list[Bar]
    funnel: list[Bar]
    token_ages: list[Bar]
    due_soon: list[PartnerToken]
    renewals: list[DaySeries]
    renewal_kinds: list[tuple[str, str, str]]  # kind, label, css class
    coverage: Coverage
    attention: list[Partner] = field(default_factory=list)


@dataclass(frozen=True)
class Trends:
    """The overview's counts over every partner and the period's events, as they were at `as_of`."""

    as_of: datetime
    by_status: list[Bar]
    by_health: list[Bar]
    funnel: list[Bar]
    token_ages: list[Bar]
    renewals: list[DaySeries]


OVERVIEW_PERIODS = (7, 30, 90)
# The trends take a pass over every partner and the period's events: the page reuses them this long and says
# as of when. Coverage (counters), tokens due and needs attention are read for each request.
TRENDS_SECONDS = 60


def _trends_key(days: int) -> str:
    return f"cpv:overview-trends:v1:{days}"


AGE_BUCKETS = [(0, 7), (7, 14), (14, 30), (30, 45), (45, 60), (60, 76), (76, 90), (90, None)]
# How renewal outcomes are grouped in the chart: good, retried, failed.
RENEWAL_GROUPS = [
    ("renewed", "Renewed", "ok", [TokenEvent.Kind.RENEWED, TokenEvent.Kind.ROTATED, TokenEvent.Kind.RECONCILED]),
    ("retrying", "Retried", "warn", [TokenEvent.Kind.RETRYING]),
    (
        "failed",
        "Failed",
        "bad",
        [
            TokenEvent.Kind.GAVE_UP,
            TokenEvent.Kind.RECONSENT_NEEDED,
            TokenEvent.Kind.MFA_REQUIRED,
            TokenEvent.Kind.CONDITIONAL_ACCESS,
            TokenEvent.Kind.OPERATOR_ALERT,
            TokenEvent.Kind.BUDGET,
        ],
    ),
]


def overview(
    *, days: int = 30, now: datetime | None = None, attention_limit: int = 25, cached: bool = False
) -> Overview:
    """Everything the overview page shows, over the last `days` days (six queries whatever the data, three when
    the trends come from the cache).

    With `cached`, the trends made by a request less than TRENDS_SECONDS ago are reused. Made anew, they are
    stored for the next request. A cache that cannot be reached means trends made for this request.
    """
    now = now or timezone.now()
    trends = _trends_cached(days) if cached else None
    if trends is None:
        trends = overview_trends(days=days, now=now)
        _trends_store(days, trends)
    active_tokens = PartnerToken.objects.filter(partner__status=Partner.Status.ACTIVE).exclude(current_version="")
    due_soon = list(
        active_tokens.filter(last_renewed_at__lte=now - renewal_interval())
        .select_related("partner")
        .order_by("last_renewed_at")[:10]
    )
    # The counters of every partner, summed: one row per partner, whatever the number of customers.
    covered = PartnerCoverage.objects.aggregate(
        customers=Coalesce(Sum("customers"), 0),
        consented=Coalesce(Sum("consented"), 0),
        failed=Coalesce(Sum("failed"), 0),
    )
    return Overview(
        since=now - timedelta(days=days),
        now=now,
        as_of=trends.as_of,
        by_status=trends.by_status,
        by_health=trends.by_health,
        funnel=trends.funnel,
        token_ages=trends.token_ages,
        due_soon=due_soon,
        renewals=trends.renewals,
        renewal_kinds=[(key, label, css) for key, label, css, _ in RENEWAL_GROUPS],
        coverage=Coverage(covered["customers"], covered["consented"], covered["failed"]),
        attention=needs_attention(now=now, limit=attention_limit),
    )


def _trends_cached(days: int) -> Trends | None:
    try:
        trends = cache.get(_trends_key(days))
    except Exception:  # the page does without the cache: it makes the trends itself
        logger.warning("the overview's trends could not be read from the cache", exc_info=True)
        return None
    return trends if isinstance(trends, Trends) else None


def _trends_store(days: int, trends: Trends) -> None:
    try:
        cache.set(_trends_key(days), trends, TRENDS_SECONDS)
    except Exception:  # the next request makes them again
        logger.warning("the overview's trends could not be stored in the cache", exc_info=True)


def overview_trends_forget() -> None:
    """Drop the cached trends of every period, so that the next overview counts again (after a staff action)."""
    try:
        cache.delete_many([_trends_key(days) for days in OVERVIEW_PERIODS])
    except Exception:  # they expire on their own within TRENDS_SECONDS
        logger.warning("the overview's cached trends could not be dropped", exc_info=True)


def overview_trends(*, days: int = 30, now: datetime | None = None) -> Trends:
    """The overview's counts over every partner and the last `days` days of events: partners by status and by
    token health, the consent funnel, token ages and renewal outcomes per day (three queries)."""
    now = now or timezone.now()
    since = now - timedelta(days=days)

    # One pass over the partners and their token rows: by status, by health, created in the period, token ages.
    ages: dict[str, Any] = {}
    for low, high in AGE_BUCKETS:
        bucket = Q(token__last_renewed_at__lte=now - timedelta(days=low))
        if high is not None:
            bucket &= Q(token__last_renewed_at__gt=now - timedelta(days=high))
        ages[f"b{low}"] = Count("id", filter=bucket)
    groups = list(
        Partner.objects.order_by()
        .annotate(health=token_health_expression(now=now))
        .values("status", "health")
        .annotate(n=Count("id"), created=Count("id", filter=Q(created_at__gte=since)), **ages)
    )
    status_counts: dict[str, int] = {}
    health_counts: dict[str, int] = {}
    for g in groups:
        status_counts[g["status"]] = status_counts.get(g["status"], 0) + g["n"]
        health_counts[g["health"]] = health_counts.get(g["health"], 0) + g["n"]
    by_status = [
        Bar(label, status_counts.get(value, 0), f"status-{value}", value) for value, label in Partner.Status.choices
    ]
    by_health = [Bar(label, health_counts.get(value, 0), f"health-{value}", value) for value, label in HEALTH_CHOICES]

    invited = sum(g["created"] for g in groups)
    relevant = [ConsentFlow.Status.CREATED, ConsentFlow.Status.VAULTED, ConsentFlow.Status.VERIFIED]
    reached = (
        ConsentFlowEvent.objects.filter(created_at__gte=since, status__in=relevant)
        .order_by()
        .aggregate(
            started=Count("flow__partner", distinct=True, filter=Q(status=ConsentFlow.Status.CREATED)),
            consented=Count("flow__partner", distinct=True, filter=Q(status=ConsentFlow.Status.VAULTED)),
            verified=Count("flow__partner", distinct=True, filter=Q(status=ConsentFlow.Status.VERIFIED)),
            active=Count(
                "flow__partner",
                distinct=True,
                filter=Q(status=ConsentFlow.Status.VAULTED, flow__partner__status=Partner.Status.ACTIVE),
            ),
        )
    )
    funnel = [
        Bar("Invited or signed up", invited, "funnel", "partners created in the period"),
        Bar("Started a consent", reached["started"], "funnel", "partners who opened Microsoft's sign-in"),
        Bar("Consented", reached["consented"], "funnel", "partners whose token reached the vault"),
        Bar("Verified", reached["verified"], "funnel", "Partner Center accepted the token"),
        Bar("Active now", reached["active"], "funnel ok", "of those, partners active today"),
    ]

    # Active partners' tokens that hold a version: the groups whose health is not "none".
    tokens = [g for g in groups if g["status"] == Partner.Status.ACTIVE and g["health"] != TokenStatus.NONE]
    token_ages = []
    for low, high in AGE_BUCKETS:
        css = "ok" if low < 60 else ("warn" if high is not None and high <= 90 and low < 76 else "bad")
        label = f"{low}-{high} d" if high is not None else f"{low}+ d"
        token_ages.append(Bar(label, sum(g[f"b{low}"] for g in tokens), css, f"tokens last renewed {label} ago"))

    kind_to_group = {kind: key for key, _, _, kinds in RENEWAL_GROUPS for kind in kinds}
    per_day: dict[date, dict[str, int]] = {}
    for row in (
        TokenEvent.objects.filter(created_at__gte=since)
        .annotate(day=TruncDate("created_at"))
        .order_by()
        .values("day", "kind")
        .annotate(n=Count("id"))
    ):
        group = kind_to_group.get(row["kind"])
        if group is not None:
            per_day.setdefault(row["day"], {}).setdefault(group, 0)
            per_day[row["day"]][group] += row["n"]
    first = since.date()
    renewals = [
        DaySeries(first + timedelta(days=i), per_day.get(first + timedelta(days=i), {})) for i in range(days + 1)
    ]
    return Trends(
        as_of=now,
        by_status=by_status,
        by_health=by_health,
        funnel=funnel,
        token_ages=token_ages,
        renewals=renewals,
    )


ATTENTION_REASONS = {
    "reconsent": "Re-consent needed",
    "failing": "Token renewal failing",
    "expiring": "Token expires soon",
    "customers": "Customers failing ApplicationConsent",
}


def needs_attention(*, now: datetime | None = None, limit: int = 25) -> list[Partner]:
    """Partners someone should act on, worst first: re-consent needed, renewals failing, tokens close to the
    90-day limit, customers failing ApplicationConsent. Each carries `reasons` (a list of labels), its `health`
    and its number of `failed_customers` (two queries).

    Ranking looks at every partner, so it reads only the ids; the rows shown are read after, by id.
    """
    now = now or timezone.now()
    expiring_before = now - (TOKEN_LIFETIME - EXPIRY_WARNING)
    # From the coverage counters (a join on one row per partner), not from the customers.
    failed_customers = Coalesce("coverage_counters__failed", 0)
    ranked = (
        Partner.objects.exclude(status=Partner.Status.DEACTIVATED)
        .annotate(health=token_health_expression(now=now), failed_customers=failed_customers)
        .filter(
            Q(status=Partner.Status.RECONSENT_NEEDED)
            | Q(health=TokenStatus.FAILING)
            | Q(status=Partner.Status.ACTIVE, token__last_renewed_at__lte=expiring_before)
            | Q(failed_customers__gt=0)
        )
        .annotate(
            rank=Case(
                When(status=Partner.Status.RECONSENT_NEEDED, then=Value(0)),
                When(health=TokenStatus.FAILING, then=Value(1)),
                When(token__last_renewed_at__lte=expiring_before, then=Value(2)),
                default=Value(3),
            )
        )
        .order_by("rank", "token__last_renewed_at", "name", "id")
        .values_list("pk", flat=True)[:limit]
    )
    ids = list(ranked)
    rows = Partner.objects.filter(pk__in=ids).select_related("token").annotate(failed_customers=failed_customers)
    by_id = {partner.pk: partner for partner in rows}
    partners: list[Any] = [by_id[pk] for pk in ids]
    for partner in partners:
        partner.health = token_status(partner, getattr(partner, "token", None), now=now)
        reasons = []
        if partner.status == Partner.Status.RECONSENT_NEEDED:
            reasons.append(ATTENTION_REASONS["reconsent"])
        if partner.health == TokenStatus.FAILING:
            reasons.append(ATTENTION_REASONS["failing"])
        token = getattr(partner, "token", None)
        if (
            partner.status == Partner.Status.ACTIVE
            and token is not None
            and token.last_renewed_at is not None
            and token.last_renewed_at <= expiring_before
        ):
            reasons.append(ATTENTION_REASONS["expiring"])
        if partner.failed_customers:
            reasons.append(ATTENTION_REASONS["customers"])
        partner.reasons = reasons
    return partners


# --- a partner's page --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenHealth:
    """What a person needs to know about a partner's token, never the token."""

    status: str
    label: str
    token: PartnerToken | None
    age: timedelta | None = None
    expires_at: datetime | None = None
    next_renewal_at: datetime | None = None
    versions_left: int = MAX_VERSIONS
    fingerprint_prefix: str = ""

    @property
    def age_days(self) -> int | None:
        return self.age.days if self.age is not None else None

    @property
    def life_used_percent(self) -> int:
        if self.age is None:
            return 0
        return min(100, round(100 * self.age / TOKEN_LIFETIME))

    @property
    def in_words(self) -> str:
        """Token health for the partner, in plain words."""
        if self.status == TokenStatus.NONE:
            return "We do not hold a consent from your organisation yet."
        if self.status == TokenStatus.INVALID:
            return "Your consent no longer works: an administrator needs to consent again."
        if self.status == TokenStatus.FAILING:
            return "We could not renew your consent on our last try; we are trying again."
        if self.status == TokenStatus.DUE:
            return "Your consent works and is due for its routine renewal, which happens automatically."
        return "Your consent works and is renewed automatically."


def token_health(partner: Partner, *, now: datetime | None = None) -> TokenHealth:
    """The partner's token health, from the token row the partner was loaded with (no query if it came with
    `select_related("token")`)."""
    now = now or timezone.now()
    try:
        pointer: PartnerToken | None = partner.token
    except PartnerToken.DoesNotExist:
        pointer = None
    status = token_status(partner, pointer, now=now)
    if pointer is None or status == TokenStatus.NONE:
        return TokenHealth(status=status, label=HEALTH_LABELS[status], token=pointer)
    last = pointer.last_renewed_at or pointer.obtained_at
    next_renewal = last + renewal_interval() if last else now
    if pointer.next_attempt_at and pointer.next_attempt_at > next_renewal:
        next_renewal = pointer.next_attempt_at
    return TokenHealth(
        status=status,
        label=HEALTH_LABELS[status],
        token=pointer,
        age=(now - last) if last else None,
        expires_at=(last + TOKEN_LIFETIME) if last else None,
        next_renewal_at=next_renewal,
        versions_left=max(0, MAX_VERSIONS - pointer.version_count),
        fingerprint_prefix=pointer.fingerprint[:8],
    )


def partner_with_token(code: uuid.UUID | str) -> QuerySet[Partner]:
    return Partner.objects.select_related("token__consent_flow").filter(code=code)


def consent_flows(partner: Partner, *, limit: int = 10) -> list[ConsentFlow]:
    """The partner's latest consent attempts, each with its timeline (two queries)."""
    return list(
        ConsentFlow.objects.filter(partner=partner)
        .prefetch_related(Prefetch("events", queryset=ConsentFlowEvent.objects.order_by("created_at", "id")))
        .order_by("-created_at", "-id")[:limit]
    )


def customers_of(partner: Partner, *, state: str = "") -> QuerySet[Customer]:
    """The partner's present customers with their ApplicationConsent state; `state` filters on it
    (applied, failed, pending: missing or not applied yet)."""
    qs = Customer.objects.filter(partner=partner, removed_at__isnull=True).select_related("application_consent")
    if state == CustomerConsent.Status.PENDING:
        qs = qs.filter(
            Q(application_consent__isnull=True) | Q(application_consent__status=CustomerConsent.Status.PENDING)
        )
    elif state in (CustomerConsent.Status.APPLIED, CustomerConsent.Status.FAILED):
        qs = qs.filter(application_consent__status=state)
    return qs.order_by("company_name", "id")


CUSTOMER_PAGE_SIZE = 25


@dataclass(frozen=True)
class CustomerPage:
    """A page of a partner's customers (see `customer_page`). The cursors are the values of the links to the
    pages before and after it, "" when there is none."""

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
    """The sort key in a cursor, or None for anything that is not a cursor `customer_cursor` could have made."""
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
    """A page of `customers_of(partner, state=state)`: the first, or the one right after (`after`) or right
    before (`before`) the customer a cursor names.

    The page is found from the cursor's sort key through an index (keyset pagination), never an OFFSET, so a
    late page of a partner with thousands of customers costs what the first one does. A cursor stays valid
    when customers come and go (it holds a position, not a row number). A cursor that does not decode, or
    leads to no customer (past the end, or fewer than a page before the start), gives the first page.
    """
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


def token_events(partner: Partner, *, limit: int = 15) -> list[TokenEvent]:
    return list(TokenEvent.objects.filter(partner=partner).order_by("-created_at", "-id")[:limit])


# Partner Center's and Entra's answers, in words for a person. The first pattern that matches wins.
_ERROR_WORDS: list[tuple[str, str]] = [
    (r"AADSTS(700082|70008|70043|50173|50132|50133)|invalid_grant",
     "The partner's consent has expired or was revoked: the partner must consent again."),
    (r"AADSTS5007[689]|interaction_required", "The partner's sign-in needs MFA: consent again with MFA."),
    (r"AADSTS53003", "A Conditional Access policy in the partner's tenant blocks the integration account."),
    (r"AADSTS(65001|90099|700016)", "The vendor's app is not consented in this customer's tenant yet."),
    (r"AADSTS(50020|90072)", "The partner's account has no access to this customer's tenant."),
    (r"invalid_client|AADSTS(7000215|7000222|700027)",
     "The control panel's own app credential was refused: an operator must rotate it."),
    (r"answered 401", "Partner Center did not accept the partner's token (expired, or signed in without MFA)."),
    (r"answered 403",
     "Partner Center refused: the consenting account lacks the Admin Agent role, or the customer has no "
     "relationship with the partner (GDAP/DAP)."),
    (r"answered 404", "Partner Center does not know this customer (it may have left the partner)."),
    (r"answered 429|throttl", "Partner Center asked us to slow down; it will be retried."),
    (r"answered 5\d\d|timeout|timed out|connection", "Partner Center was unavailable; it will be retried."),
    (r"answered 400", "Partner Center refused the request as invalid (check the application grants)."),
    (r"the partner is", "Not applied because the partner is not active."),
]  # fmt: skip


def error_in_words(message: str) -> str:
    """A stored error message explained for a person (the raw message stays available beside it)."""
    if not message:
        return ""
    for pattern, words in _ERROR_WORDS:
        if re.search(pattern, message, flags=re.IGNORECASE):
            return words
    return "An unexpected error; the technical detail is below."


# --- the audit log -----------------------------------------------------------------------------------------


def audit_log(
    *,
    actor: str = "",
    action: str = "",
    partner: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[AuditEvent]:
    """Audit events, newest first, filtered by the actor's name, the action (a prefix: "partner." matches
    every partner action), a partner's code or name, and a time range."""
    qs = AuditEvent.objects.select_related("partner").order_by("-created_at", "-id")
    if actor:
        qs = qs.filter(actor_label__iexact=actor.strip())
    if action:
        qs = qs.filter(action__startswith=action.strip())
    if partner:
        try:
            qs = qs.filter(partner__code=uuid.UUID(partner.strip()))
        except ValueError:
            qs = qs.filter(partner__name__icontains=partner.strip())
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    if until is not None:
        qs = qs.filter(created_at__lt=until)
    return qs


def audit_actions() -> list[str]:
    return list(AuditEvent.objects.order_by("action").values_list("action", flat=True).distinct()[:200])

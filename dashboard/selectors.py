"""Reads for the staff dashboard: the partner directory, the overview, the partners needing attention and the
audit log, each in a fixed number of queries whatever the data."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, TruncDate
from django.template.defaultfilters import pluralize
from django.utils import timezone

from consent.models import ConsentFlow, ConsentFlowEvent
from cpv.cache import cache_drop, cache_read, cache_write
from customers.coverage import Coverage
from customers.models import PartnerCoverage
from customers.selectors import gdap_notice_counts, proof_totals, without_access_total
from partners.audit_words import action_label, actor_in_words, detail_in_words
from partners.models import AuditEvent, Customer, Partner
from tokens.models import PartnerToken, TokenEvent
from tokens.selectors import (
    EXPIRY_WARNING,
    HEALTH_CHOICES,
    TOKEN_LIFETIME,
    TokenStatus,
    renewal_interval,
    token_health_expression,
    token_health_filter,
    token_status,
)

# --- token health ------------------------------------------------------------------------------------------


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
    """Partners filtered and sorted for the list, annotated with `health`, with their token row; `search` matches name,
    domain, contact email, a present customer's name or domain, or a tenant id (prefix)."""
    qs = (
        Partner.objects.filter(deleted_at__isnull=True)
        .select_related("token")
        .annotate(health=token_health_expression(now=now))
    )
    search = search.strip()
    if search:
        match = Q(name__icontains=search) | Q(default_domain__icontains=search) | Q(contact_email__icontains=search)
        # A partner whose present customers include one by that name or domain.
        match |= Q(
            Exists(
                Customer.objects.filter(partner=OuterRef("pk"), removed_at__isnull=True).filter(
                    Q(company_name__icontains=search) | Q(domain__icontains=search)
                )
            )
        )
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
        qs = qs.filter(token_health_filter(health, now=now))
    if mfa in MFA_FILTERS:
        qs = (
            qs.filter(mfa_compliant=MFA_FILTERS[mfa])
            if MFA_FILTERS[mfa] is not None
            else qs.filter(mfa_compliant__isnull=True)
        )
    return qs.order_by(*SORTS.get(sort, SORTS["name"]))


@dataclass(frozen=True)
class LookAlike:
    """An existing partner an invitation may duplicate, and what they share, in words."""

    partner: Partner
    shared: list[str]


# Mailbox providers many unrelated partners share: one of these in two addresses says nothing.
SHARED_MAIL_DOMAINS = {"gmail.com", "outlook.com", "hotmail.com", "live.com", "yahoo.com", "icloud.com"}


def partners_like(*, name: str, contact_email: str, tenant_id: uuid.UUID | None = None) -> list[LookAlike]:
    """The partners (not deleted) an invitation with these facts may duplicate: the same name, contact email, email
    domain (as a contact's or as a partner's default domain) or tenant; at most ten, by name."""
    name, email = name.strip(), contact_email.strip()
    domain = email.rpartition("@")[2].lower()
    match = Q(name__iexact=name) | Q(contact_email__iexact=email)
    if domain and domain not in SHARED_MAIL_DOMAINS:
        match |= Q(contact_email__iendswith="@" + domain) | Q(default_domain__iexact=domain)
    if tenant_id is not None:
        match |= Q(tenant_id=tenant_id)
    found = []
    for partner in Partner.objects.filter(match, deleted_at__isnull=True).order_by("name", "id")[:10]:
        shared = []
        if partner.name.lower() == name.lower():
            shared.append("name")
        if partner.contact_email.lower() == email.lower():
            shared.append("contact email")
        elif (
            domain
            and domain not in SHARED_MAIL_DOMAINS
            and (partner.contact_email.lower().endswith("@" + domain) or partner.default_domain.lower() == domain)
        ):
            shared.append(f"domain {domain}")
        if tenant_id is not None and partner.tenant_id == tenant_id:
            shared.append("tenant")
        found.append(LookAlike(partner, shared))
    return found


# The list's MFA filter: Partner Center's last isMfaCompliant for the partner, or none seen yet.
MFA_FILTERS: dict[str, bool | None] = {"compliant": True, "not_compliant": False, "unknown": None}


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
    # Customers the GDAP pre-flight holds back, and GDAP relationships ending or ended that are still open.
    without_access: int = 0
    gdap_ending: int = 0
    gdap_ended: int = 0
    # Applied consents by what their customer's tenant showed (customers/selectors.py PROOF_FILTERS' keys).
    proof: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Ranked:
    """A partner who needs attention, by id, and why, in words."""

    partner_id: int
    reasons: list[str]


@dataclass(frozen=True)
class Trends:
    """The overview's counts over every partner and the period's events, as they were at `as_of`."""

    as_of: datetime
    by_status: list[Bar]
    by_health: list[Bar]
    funnel: list[Bar]
    token_ages: list[Bar]
    renewals: list[DaySeries]
    # Applied consents by what their customer's tenant showed: a pass over every customer, so reused with the rest.
    proof: dict[str, int] = field(default_factory=dict)
    # Who needs attention, worst first: each partner's id and its reasons in words (`attention_ranked`).
    attention: list[Ranked] = field(default_factory=list)
    # Customers the GDAP pre-flight holds back, and GDAP relationships ending or ended that are still open.
    without_access: int = 0
    gdap_ending: int = 0
    gdap_ended: int = 0

    _BARS = ("by_status", "by_health", "funnel", "token_ages")
    _COUNTS = ("without_access", "gdap_ending", "gdap_ended")

    def as_json(self) -> dict[str, Any]:
        """What the cache keeps (JSON, never a pickled object)."""
        bars = {name: [vars(bar) for bar in getattr(self, name)] for name in self._BARS}
        renewals = [{"day": series.day.isoformat(), "values": series.values} for series in self.renewals]
        attention = [[ranked.partner_id, ranked.reasons] for ranked in self.attention]
        counts = {name: getattr(self, name) for name in self._COUNTS}
        return {"as_of": self.as_of.isoformat(), **bars, "renewals": renewals, "proof": self.proof,
                "attention": attention, **counts}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Trends:
        """Raises KeyError, TypeError or ValueError for anything `as_json` did not make."""
        return cls(
            as_of=datetime.fromisoformat(data["as_of"]),
            **{name: [Bar(**bar) for bar in data[name]] for name in cls._BARS},
            renewals=[DaySeries(day=date.fromisoformat(s["day"]), values=dict(s["values"])) for s in data["renewals"]],
            proof={str(k): int(v) for k, v in data["proof"].items()},
            attention=[Ranked(int(pk), [str(r) for r in reasons]) for pk, reasons in data["attention"]],
            without_access=int(data["without_access"]),
            gdap_ending=int(data["gdap_ending"]),
            gdap_ended=int(data["gdap_ended"]),
        )


OVERVIEW_PERIODS = (7, 30, 90)
# The trends take a pass over every partner and the period's events and rank who needs attention: the page reuses
# them this long and says as of when, and a beat task (`overview_trends_refresh`) makes the default period's anew
# twice as often, so that no request waits for them while it runs. Coverage (counters), tokens due and the rows of
# the partners needing attention are read for each request.
TRENDS_SECONDS = 60
DEFAULT_PERIOD = 30


def _trends_key(days: int) -> str:
    return f"cpv:overview-trends:v4:{days}"


AGE_BUCKETS = [(0, 7), (7, 14), (14, 30), (30, 45), (45, 60), (60, 76), (76, 90), (90, None)]
# How renewal outcomes are grouped in the chart: good, retried, failed.
RENEWAL_GROUPS = [
    ("renewed", "Renewed", "ok", [*TokenEvent.MOVED, TokenEvent.Kind.RECONCILED]),
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
    *, days: int = DEFAULT_PERIOD, now: datetime | None = None, attention_limit: int = 25, cached: bool = False
) -> Overview:
    """Everything the overview shows over the last `days` days (three queries with cached trends, up to fourteen
    making them); `cached` reuses trends younger than TRENDS_SECONDS."""
    now = now or timezone.now()
    trends = _trends_cached(days) if cached else None
    if trends is None:
        trends = overview_trends_refresh(days=days, now=now, attention_limit=attention_limit)
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
        attention=attention_rows(trends.attention[:attention_limit], now=now),
        without_access=trends.without_access,
        gdap_ending=trends.gdap_ending,
        gdap_ended=trends.gdap_ended,
        proof=trends.proof,
    )


def _trends_cached(days: int) -> Trends | None:
    data = cache_read(_trends_key(days), what="the overview's trends")
    try:
        return Trends.from_json(data) if isinstance(data, dict) else None
    except (KeyError, TypeError, ValueError):
        return None


def overview_trends_refresh(
    *, days: int = DEFAULT_PERIOD, now: datetime | None = None, attention_limit: int = 25
) -> Trends:
    """Make the trends of the last `days` days anew and keep them for the overview for TRENDS_SECONDS; returns them."""
    trends = overview_trends(days=days, now=now, attention_limit=attention_limit)
    cache_write(_trends_key(days), trends.as_json(), TRENDS_SECONDS, what="the overview's trends")
    return trends


def overview_trends_forget() -> None:
    """Drop the cached trends of every period (after a staff action)."""
    cache_drop([_trends_key(days) for days in OVERVIEW_PERIODS], what="the overview's trends")


def overview_trends(*, days: int = DEFAULT_PERIOD, now: datetime | None = None, attention_limit: int = 25) -> Trends:
    """The overview's counts over every partner, over every customer's proof and the last `days` days of events, and
    who needs attention (eleven queries at most)."""
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
        Partner.objects.filter(deleted_at__isnull=True)
        .order_by()
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
        proof=proof_totals(),
        attention=attention_ranked(now=now, limit=attention_limit),
        without_access=without_access_total(),
        **gdap_notice_counts(),
    )


ATTENTION_REASONS = {
    "reconsent": "Re-consent needed",
    "failing": "Token renewal failing",
    "expiring": "Token expires soon",
}
# A failed consent attempt's reason (ConsentFlow.failure_reason), in a few words for the overview.
FAILURE_WORDS = {
    "declined": "the admin declined the consent",
    "not_global_admin": "not a Global Administrator",
    "role_unproven": "the Global Administrator role could not be proven",
    "not_admin_agent": "not an Admin Agent in Partner Center",
    "no_mfa": "signed in without MFA",
    "conditional_access": "blocked by a Conditional Access policy",
    "wrong_tenant": "an account of another organisation",
    "tenant_taken": "the tenant is registered to another partner",
    "expired_link": "the link had expired",
    "expired": "the sign-in was not finished in time",
    "microsoft_error": "Microsoft answered with an error",
    "our_error": "an error on our side",
}
# An invitation is flagged this long before its link stops working (and after, until a new link is sent).
INVITATION_WARNING = timedelta(days=3)
# Statuses in which a partner has yet to consent (or consent again).
ONBOARDING = (Partner.Status.INVITED, Partner.Status.PENDING, Partner.Status.RECONSENT_NEEDED)
UNSUCCESSFUL = (ConsentFlow.Status.FAILED, ConsentFlow.Status.DECLINED, ConsentFlow.Status.EXPIRED)
# The audit actions that issue a partner a new consent link.
LINK_ISSUED = ("partner.invited", "partner.reconsent_link_created")


def _onboarding_annotations() -> dict[str, Any]:
    """Per partner: its latest consent attempt, failed attempts since its last consent, and its link's issue time."""
    latest = ConsentFlow.objects.filter(partner=OuterRef("pk")).order_by("-created_at", "-id")
    last_consent = (
        ConsentFlow.objects.filter(partner=OuterRef(OuterRef("pk")), status=ConsentFlow.Status.VAULTED)
        .order_by("-created_at")
        .values("created_at")[:1]
    )
    failures = (
        ConsentFlow.objects.filter(partner=OuterRef("pk"), status__in=UNSUCCESSFUL)
        .filter(Q(created_at__gt=Subquery(last_consent)) | ~Exists(last_consent))
        .order_by()
        .values("partner")
        .annotate(n=Count("id"))
        .values("n")
    )
    link = (
        AuditEvent.objects.filter(partner=OuterRef("pk"), action__in=LINK_ISSUED)
        .order_by("-created_at")
        .values("created_at")[:1]
    )
    return {
        "last_flow_status": Subquery(latest.values("status")[:1]),
        "last_flow_reason": Subquery(latest.values("failure_reason")[:1]),
        "last_flow_at": Subquery(latest.values("created_at")[:1]),
        "last_flow_expires_at": Subquery(latest.values("expires_at")[:1]),
        "failed_attempts": Coalesce(Subquery(failures[:1]), 0),
        "link_issued_at": Coalesce(Subquery(link), F("created_at")),
    }


def _onboarding_stuck(*, now: datetime) -> Q:
    """The last consent attempt failed, or was started and never finished."""
    return Q(status__in=ONBOARDING) & (
        Q(last_flow_status__in=UNSUCCESSFUL) | Q(last_flow_status__in=ConsentFlow.OPEN, last_flow_expires_at__lt=now)
    )


def _invitation_ending(*, now: datetime) -> Q:
    """Invited, no consent started with the current link, which ends within INVITATION_WARNING (or has)."""
    max_age = timedelta(days=settings.CPV_INVITATION_MAX_AGE_DAYS)
    return (
        Q(status__in=(Partner.Status.INVITED, Partner.Status.PENDING))
        & (Q(last_flow_at__isnull=True) | Q(last_flow_at__lt=F("link_issued_at")))
        & Q(link_issued_at__lte=now - max_age + INVITATION_WARNING)
    )


def _days(delta: timedelta) -> str:
    days = max(0, round(delta.total_seconds() / 86400))
    if days == 0:
        hours = max(1, round(delta.total_seconds() / 3600))
        return f"{hours} hour{pluralize(hours)}"
    return f"{days} day{pluralize(days)}"


def onboarding_words(partner: Any, *, now: datetime) -> list[str]:
    """Why a partner is stuck in onboarding, in words; reads `_onboarding_annotations`."""
    reasons = []
    status = partner.last_flow_status
    if partner.status in ONBOARDING and status in ConsentFlow.OPEN and partner.last_flow_expires_at < now:
        reasons.append(f"Started a consent {_days(now - partner.last_flow_at)} ago and never finished")
    elif partner.status in ONBOARDING and status in UNSUCCESSFUL:
        n = partner.failed_attempts or 1
        last = FAILURE_WORDS.get(partner.last_flow_reason or "", "an unexplained failure")
        if status == ConsentFlow.Status.EXPIRED:
            last = "started and never finished"
        counted = f"{n} failed consent attempts" if n > 1 else "A failed consent attempt"
        reasons.append(f"{counted}, the last: {last}")
    if partner.status in (Partner.Status.INVITED, Partner.Status.PENDING) and (
        partner.last_flow_at is None or partner.last_flow_at < partner.link_issued_at
    ):
        ends = partner.link_issued_at + timedelta(days=settings.CPV_INVITATION_MAX_AGE_DAYS)
        if ends <= now + INVITATION_WARNING:
            if ends > now:
                reasons.append(f"Invitation expires in {_days(ends - now)}, nobody has signed in")
            else:
                reasons.append(f"Invitation expired {_days(now - ends)} ago, nobody signed in: send a new link")
    return reasons


def attention_ranked(*, now: datetime | None = None, limit: int = 25) -> list[Ranked]:
    """Partners someone should act on, worst first, each with its reasons in words (at most seven queries: the ranking
    reads only ids, a rank at a time, then the rows of those ranked)."""
    now = now or timezone.now()
    expiring_before = now - (TOKEN_LIFETIME - EXPIRY_WARNING)
    stuck = _onboarding_stuck(now=now)
    ending = _invitation_ending(now=now)
    # The reasons in rank order; a partner takes the rank of the first that holds (the last rank: none of them), and
    # is listed when any holds (an old token counts for active partners only).
    ranks = [
        Q(status=Partner.Status.RECONSENT_NEEDED),
        # FAILING needs a failure after the last renewal: the first condition lets the database skip other tokens.
        Q(token__last_failure_at__isnull=False) & Q(health=TokenStatus.FAILING),
        Q(token__last_renewed_at__lte=expiring_before),
        stuck,
        Q(failed_customers__gt=0),
    ]
    listed = (
        ranks[0]
        | ranks[1]
        | Q(status=Partner.Status.ACTIVE, token__last_renewed_at__lte=expiring_before)
        | stuck
        | ranks[4]
        | ending
    )
    candidates = (
        Partner.objects.exclude(status=Partner.Status.DEACTIVATED)
        .filter(deleted_at__isnull=True)
        .annotate(
            health=token_health_expression(now=now), failed_customers=FAILED_CUSTOMERS, **_onboarding_annotations()
        )
        .filter(listed)
        .annotate(
            rank=Case(*(When(condition, then=Value(n)) for n, condition in enumerate(ranks)), default=Value(len(ranks)))
        )
        .order_by("token__last_renewed_at", "link_issued_at", "name", "id")
    )
    # Rank by rank, each a query of its own that stops at the partners still wanted: the first ranks (a status, a
    # token's failure, its age) are found from their indexes, so the page does not weigh every partner when the
    # worst already fill it. (`rank=` keeps each partner in the first rank that holds, as one ordering would.)
    ids: list[int] = []
    for rank in range(len(ranks) + 1):
        in_rank = candidates.filter(ranks[rank], rank=rank) if rank < len(ranks) else candidates.filter(rank=rank)
        ids += list(in_rank.values_list("pk", flat=True)[: limit - len(ids)])
        if len(ids) >= limit:
            break
    rows = (
        Partner.objects.filter(pk__in=ids)
        .select_related("token")
        .annotate(failed_customers=FAILED_CUSTOMERS, **_onboarding_annotations())
    )
    by_id = {partner.pk: partner for partner in rows}
    return [Ranked(pk, attention_words(by_id[pk], now=now)) for pk in ids if pk in by_id]


# A partner's customers failing ApplicationConsent, from the coverage counters (a join on one row per partner).
FAILED_CUSTOMERS = Coalesce("coverage_counters__failed", 0)


def attention_words(partner: Any, *, now: datetime) -> list[str]:
    """Why a partner needs attention, in words; reads its token and `_onboarding_annotations` and `failed_customers`."""
    expiring_before = now - (TOKEN_LIFETIME - EXPIRY_WARNING)
    token = getattr(partner, "token", None)
    reasons = []
    if partner.status == Partner.Status.RECONSENT_NEEDED:
        reasons.append(ATTENTION_REASONS["reconsent"])
    if token_status(partner, token, now=now) == TokenStatus.FAILING:
        reasons.append(ATTENTION_REASONS["failing"])
    if (
        partner.status == Partner.Status.ACTIVE
        and token is not None
        and token.last_renewed_at is not None
        and token.last_renewed_at <= expiring_before
    ):
        reasons.append(ATTENTION_REASONS["expiring"])
    reasons += onboarding_words(partner, now=now)
    if partner.failed_customers:
        n = partner.failed_customers
        reasons.append(f"{n} customer{pluralize(n)} failing ApplicationConsent")
    return reasons


def attention_rows(ranked: list[Ranked], *, now: datetime | None = None) -> list[Partner]:
    """The partners `ranked` names, in its order, each with its `reasons`, and `health` and `failed_customers` as they
    are now (one query); a partner deleted since it was ranked is left out."""
    now = now or timezone.now()
    rows = (
        Partner.objects.filter(pk__in=[r.partner_id for r in ranked], deleted_at__isnull=True)
        .select_related("token")
        .annotate(failed_customers=FAILED_CUSTOMERS)
    )
    by_id: dict[int, Any] = {partner.pk: partner for partner in rows}
    partners: list[Any] = []
    for entry in ranked:
        partner = by_id.get(entry.partner_id)
        if partner is not None:
            partner.health = token_status(partner, getattr(partner, "token", None), now=now)
            partner.reasons = entry.reasons
            partners.append(partner)
    return partners


def needs_attention(*, now: datetime | None = None, limit: int = 25) -> list[Partner]:
    """Partners someone should act on, worst first, each with `reasons` in words, `health` and `failed_customers`
    (ranked now: `attention_ranked`, then `attention_rows`)."""
    now = now or timezone.now()
    return attention_rows(attention_ranked(now=now, limit=limit), now=now)


# --- a partner's page --------------------------------------------------------------------------------------


# --- the audit log -----------------------------------------------------------------------------------------


def audit_log(
    *,
    actor: str = "",
    action: str = "",
    partner: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[AuditEvent]:
    """Audit events newest first, with partner and actor, filtered by actor, action ("partner." for an area), partner
    and time range."""
    qs = AuditEvent.objects.select_related("partner", "actor").order_by("-created_at", "-id")
    if actor:
        qs = qs.filter(actor_label__iexact=actor.strip())
    action = action.strip()
    if action.endswith("."):
        qs = qs.filter(action__startswith=action)
    elif action:
        qs = qs.filter(action=action)
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
    """The distinct actions already in the log (at most 200)."""
    return list(AuditEvent.objects.order_by("action").values_list("action", flat=True).distinct()[:200])


@dataclass(frozen=True)
class AuditRow:
    """An audit event as a person reads it: when, who, what, about whom, and the detail in words."""

    event: AuditEvent
    when: datetime
    who: str
    what: str
    target: str
    detail: list[tuple[str, str]]

    @property
    def detail_text(self) -> str:
        return "; ".join(f"{label}: {value}" for label, value in self.detail)


def audit_rows(events: Iterable[AuditEvent]) -> Iterator[AuditRow]:
    """The events in words (select their partner and actor with them), one query for the usernames they are about."""
    events = list(events)
    user_ids = {int(e.target_id) for e in events if e.target_type == USER_LABEL and e.target_id.isdigit()}
    names = dict(User.objects.filter(pk__in=user_ids).values_list("pk", "username")) if user_ids else {}
    for event in events:
        yield audit_row(event, names)


USER_LABEL = "auth.user"


def audit_row(event: AuditEvent, usernames: dict[int, str]) -> AuditRow:
    """One event in words; `usernames` names the staff accounts events are about (by id)."""
    if event.partner is not None:
        target = event.partner.name
    elif event.target_type == USER_LABEL:
        name = usernames.get(int(event.target_id)) if event.target_id.isdigit() else None
        target = f"Staff account {name}" if name else "A staff account"
    elif event.target_type:
        target = event.target_type.rpartition(".")[2].replace("_", " ").capitalize()
    else:
        target = ""
    return AuditRow(
        event=event,
        when=event.created_at,
        who=actor_in_words(event),
        what=action_label(event.action),
        target=target,
        detail=detail_in_words(event.detail),
    )

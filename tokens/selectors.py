"""Reads of a partner's token: its status in Python and as SQL, its health in words, its events. Never the token."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Case, CharField, Count, F, Q, Value, When
from django.utils import timezone

from partners.models import Partner
from tokens.models import PartnerToken, TokenEvent
from tokens.vault import MAX_VERSIONS, vault_urls


class TokenStatus:
    NONE = "none"
    HEALTHY = "healthy"
    DUE = "due"
    FAILING = "failing"
    INVALID = "invalid"


def renewal_interval() -> timedelta:
    return timedelta(days=settings.CPV_RENEWAL_INTERVAL_DAYS)


def is_due(pointer: PartnerToken, *, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    if not pointer.current_version:
        return False
    return pointer.last_renewed_at is None or pointer.last_renewed_at <= now - renewal_interval()


# The failures after which the token no longer works: only a new consent brings it back (tokens/failures.py).
DEAD_KINDS = ("reconsent_required", "mfa_required", "conditional_access")


def token_status(partner: Partner, pointer: PartnerToken | None, *, now: datetime | None = None) -> str:
    """none, healthy, due, failing or invalid, from the token's own facts whatever the partner's status: what every
    page, the CSV, the portal and `partners --json` show."""
    if pointer is None or not pointer.current_version:
        return TokenStatus.NONE
    if pointer.revoked_at is not None:
        return TokenStatus.INVALID
    if pointer.last_failure_at is not None and (
        pointer.last_renewed_at is None or pointer.last_failure_at > pointer.last_renewed_at
    ):
        return TokenStatus.INVALID if pointer.last_error_kind in DEAD_KINDS else TokenStatus.FAILING
    if is_due(pointer, now=now):
        return TokenStatus.DUE
    return TokenStatus.HEALTHY


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


def _health_cases(*, now: datetime | None, prefix: str) -> list[tuple[Q, str]]:
    """token_status's conditions in its order, as SQL: the first that holds gives the status (else healthy)."""
    now = now or timezone.now()
    failed_since_renewal = Q(**{f"{prefix}last_failure_at__isnull": False}) & (
        Q(**{f"{prefix}last_renewed_at__isnull": True})
        | Q(**{f"{prefix}last_failure_at__gt": F(f"{prefix}last_renewed_at")})
    )
    return [
        (Q(**{f"{prefix}isnull": True}) | Q(**{f"{prefix}current_version": ""}), TokenStatus.NONE),
        (Q(**{f"{prefix}revoked_at__isnull": False}), TokenStatus.INVALID),
        (failed_since_renewal & Q(**{f"{prefix}last_error_kind__in": DEAD_KINDS}), TokenStatus.INVALID),
        (failed_since_renewal, TokenStatus.FAILING),
        (
            Q(**{f"{prefix}last_renewed_at__isnull": True})
            | Q(**{f"{prefix}last_renewed_at__lte": now - renewal_interval()}),
            TokenStatus.DUE,
        ),
    ]


def token_health_expression(*, now: datetime | None = None, prefix: str = "token__") -> Case:
    """token_status as SQL (`prefix` leads to PartnerToken), so lists can filter and sort on it; the two must agree."""
    return Case(
        *(When(condition, then=Value(status)) for condition, status in _health_cases(now=now, prefix=prefix)),
        default=Value(TokenStatus.HEALTHY),
        output_field=CharField(),
    )


def token_health_filter(health: str, *, now: datetime | None = None, prefix: str = "token__") -> Q:
    """The rows whose token_health_expression is `health`, as conditions on the token's own columns: PostgreSQL
    estimates those from its statistics, where it takes an equality on the expression for one row in two hundred (and
    so sorts every match of a filtered list rather than walk its order's index to the first page)."""
    earlier = Q()
    matches = Q(pk__in=[])
    for condition, status in _health_cases(now=now, prefix=prefix):
        if status == health:
            matches |= earlier & condition
        earlier &= ~condition
    return matches | earlier if health == TokenStatus.HEALTHY else matches


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
    """The partner's token health, from the token row loaded with it (no query after `select_related("token")`)."""
    now = now or timezone.now()
    try:
        pointer: PartnerToken | None = partner.token
    except PartnerToken.DoesNotExist:
        pointer = None
    status = token_status(partner, pointer, now=now)
    if pointer is None or status == TokenStatus.NONE:
        return TokenHealth(status=status, label=HEALTH_LABELS[status], token=pointer)
    last = pointer.last_renewed_at or pointer.obtained_at
    next_renewal: datetime | None = last + renewal_interval() if last else now
    if pointer.next_attempt_at and next_renewal is not None and pointer.next_attempt_at > next_renewal:
        next_renewal = pointer.next_attempt_at
    if status == TokenStatus.INVALID or partner.status != Partner.Status.ACTIVE:
        next_renewal = None  # nothing renews a dead token, nor the token of a partner that is not active
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


def token_events(partner: Partner, *, limit: int = 15) -> list[TokenEvent]:
    return list(TokenEvent.objects.filter(partner=partner).order_by("-created_at", "-id")[:limit])


@dataclass(frozen=True)
class VaultShare:
    """A vault and how many partners' tokens it keeps; `configured` False for one VAULT_URLS no longer names."""

    url: str
    partners: int
    configured: bool = True

    @property
    def problem(self) -> str:
        """What is wrong with this vault in words, "" for a configured one."""
        if self.configured:
            return ""
        return (
            f"Key Vault {self.url} keeps the tokens of {self.partners} partner(s), but VAULT_URLS no longer names it: "
            "add it back (a token stays in the vault it was stored in)"
        )


def vault_shares() -> list[VaultShare]:
    """Each vault of `vault_urls()` in order with its partners (a token with no vault recorded counts in the first),
    then each Key Vault that still keeps partners' tokens but is no longer configured."""
    configured = vault_urls()
    counts = {url.lower(): 0 for url in configured}
    gone: dict[str, int] = {}
    for recorded, partners in (
        PartnerToken.objects.order_by()
        .values_list("vault_url")
        .annotate(partners=Count("pk"))
        .values_list("vault_url", "partners")
    ):
        key = (recorded or configured[0]).lower()
        if configured == ("",) or key in counts:
            counts[configured[0].lower() if configured == ("",) else key] += partners
        else:
            gone[recorded] = gone.get(recorded, 0) + partners
    return [VaultShare(url, counts[url.lower()]) for url in configured] + [
        VaultShare(url, partners, configured=False) for url, partners in sorted(gone.items())
    ]


def vaults_unnamed() -> list[str]:
    """A sentence per Key Vault that keeps partners' tokens but VAULT_URLS no longer names (those partners' renewals,
    reads and revocations fail until it is named again): empty when every vault in use is configured."""
    return [share.problem for share in vault_shares() if not share.configured]

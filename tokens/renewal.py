"""Keeping every partner's refresh token alive: renewal, its error classes, and the redemption they share
with the access-token service.

Every redemption returns a new refresh token. The stored one moves forward only under the partner's
PartnerToken row lock (`select_for_update`), in this order: read the current version from the vault, redeem
it, write the new token as a new vault version, move the pointer and record the event in one transaction,
and disable the old version after the commit. Entra does not revoke a refresh token when it is redeemed, so
a crash anywhere in between leaves the pointer on a version that still works: before the commit nothing in
the database moved, and a version written but never pointed to is disabled by the next renewal that lists the
secret's versions (one in RECONCILE_EVERY, and every one near the version budget).

The sweep's batches renew many partners in one such transaction (`partners_token_renew`): their rows locked in
one query, each redeemed and written to the vault in turn, the moved pointers and their events written in one
statement each before the one commit. A rollback undoes them all and loses none, for the same reason.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from microsoft import identity, partner_center
from microsoft.retrying import backoff_delay, max_countdown
from partners.invitations import partner_reconsent_link
from partners.models import Partner
from partners.registrations import app_for, cloud_for
from partners.services import Actor, PartnerError, audit_record, partner_mfa_record
from tokens.models import PartnerToken, TokenEvent
from tokens.pointers import Obtained, partner_token_disable_previous, pointer_move, pointers_moved_write
from tokens.selectors import is_due, renewal_interval
from tokens.vault import (
    MAX_VERSIONS,
    SecretVersion,
    VaultError,
    WriteResult,
    get_vault,
    secret_name_for,
    secret_tags,
)

logger = logging.getLogger(__name__)

Kind = TokenEvent.Kind

# Refuse to renew (and alert) when a secret is this close to the vault's 500-version budget: the versions
# left are kept for re-consents and for an operator's rescue.
VERSION_RESERVE = 10
# A version that no pointer names and is older than this was left by an interrupted write: disable it.
# Younger ones may belong to a consent that has written its token and is about to move the pointer.
ORPHAN_MIN_AGE = timedelta(minutes=15)
# A rotation lists the secret's versions (the true count, and versions interrupted writes left behind) once
# every this many generations, and at every rotation near the version budget. In between, the pointer's own
# count is exact unless a write was interrupted since the last listing, and VERSION_RESERVE absorbs that.
# Listing on every renewal was one vault call in six.
RECONCILE_EVERY = 8
# After the bounded retries of one run, the next try waits in the database this long (never as a long ETA).
GAVE_UP_PAUSE = timedelta(hours=6)
# A duplicate sweep does not queue a partner again within this time.
QUEUE_HOLD = timedelta(minutes=55)
# Renewal tasks of one sweep are spread over this many seconds (at most half the visibility timeout).
SPREAD_SECONDS = 3000
# A sweep queues renewals in batches: one message renews up to BATCH_SIZE partners whose moments in the spread
# fall within BATCH_WINDOW seconds of the first one's. A message per partner cost the workers more (the
# broker's round trips and Celery's own work per task) than the renewal did.
BATCH_SIZE = 20
BATCH_WINDOW = 60.0
# A batch renews its partners in one transaction holding their row locks, committed after this many seconds
# at most (and the rest locked again in the next): the access-token service waits for a lock no longer.
BATCH_LOCK_SECONDS = 2.0


@dataclass(frozen=True)
class RenewalResult:
    """What a renewal did: `outcome` is renewed, not_due, busy, skipped, retry or failed."""

    partner_id: int
    outcome: str
    message: str = ""
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.outcome in {"renewed", "not_due", "busy", "skipped"}


class RenewalRetry(Exception):
    """A transient failure (429, 5xx, timeout) that should be tried again after `delay` seconds."""

    def __init__(self, message: str, *, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


# --- status and due-ness --------------------------------------------------------------------------------


def _event(partner: Partner, event_kind: str, message: str, *, save: bool = True, **detail: Any) -> TokenEvent:
    event = TokenEvent(partner=partner, kind=event_kind, message=message[:500], detail=detail)
    if save:
        event.save(force_insert=True)
    return event


@dataclass
class BatchWrites:
    """The rows a batch of renewals writes together, just before its one commit: each renewed pointer's
    POINTER_MOVED columns and its event. (A failure's rows are written when it happens.)"""

    pointers: list[PartnerToken] = field(default_factory=list)
    events: list[TokenEvent] = field(default_factory=list)

    def add(self, pointer: PartnerToken, event: TokenEvent) -> None:
        self.pointers.append(pointer)
        self.events.append(event)

    def flush(self) -> None:
        if self.pointers:
            pointers_moved_write(self.pointers)
            TokenEvent.objects.bulk_create(self.events)
        self.pointers, self.events = [], []


# --- the redemption under the lock, shared with tokens/access_tokens.py --------------------------------


@dataclass(frozen=True)
class Redemption:
    token: identity.TokenResult
    written: WriteResult | None
    orphans: tuple[str, ...]


def _orphans(versions: list[SecretVersion], pointer: PartnerToken, now: datetime) -> tuple[str, ...]:
    keep = {pointer.current_version, pointer.previous_version if not pointer.previous_disabled else ""}
    return tuple(
        v.version
        for v in versions
        if v.enabled and v.version not in keep and v.created_at is not None and v.created_at < now - ORPHAN_MIN_AGE
    )


def reconcile_due(pointer: PartnerToken) -> bool:
    """Whether this rotation lists the secret's versions instead of trusting the pointer's count."""
    return (
        pointer.version_count == 0
        or pointer.generation % RECONCILE_EVERY == 0
        or pointer.version_count >= MAX_VERSIONS - VERSION_RESERVE - RECONCILE_EVERY
    )


def redeem_locked(
    *,
    pointer: PartnerToken,
    scopes: list[str],
    tenant: str | None,
    store: bool,
    kind: str,
    now: datetime,
    writes: BatchWrites | None = None,
) -> Redemption:
    """Redeem the partner's current token; with `store`, keep the rotated one as a new version and move the
    pointer. The caller holds `pointer`'s row lock (select_for_update) inside its transaction. With `writes`,
    the moved pointer and its event are left there for the caller to write (before its commit).

    Returns the Redemption. Raises identity's typed errors, VaultError, or VersionBudgetExceeded.
    """
    partner = pointer.partner
    vault = get_vault()
    current = vault.read(name=pointer.secret_name, version=pointer.current_version)
    token = identity.refresh_token_redeem(
        cloud=cloud_for(partner),
        app=app_for(partner),
        tenant=tenant or str(partner.tenant_id),
        refresh_token=current.value.reveal(),
        scopes=scopes,
        home_tenant=tenant is None or tenant.lower() == str(partner.tenant_id).lower(),
    )
    if not store or not token.refresh_token:
        return Redemption(token=token, written=None, orphans=())
    # Now and then (reconcile_due), a listing: the true version count for the budget, and any version an
    # interrupted write left behind (it is enabled, and no pointer names it).
    orphans: tuple[str, ...] = ()
    known_count = pointer.version_count
    if reconcile_due(pointer):
        versions = vault.versions(name=pointer.secret_name)
        orphans = _orphans(versions, pointer, now)
        known_count = len(versions)
    written = vault.write(
        name=pointer.secret_name,
        value=token.refresh_token,
        tags=secret_tags(partner_code=partner.code, cloud=partner.cloud),
        known_count=known_count,
    )
    old = pointer.current_version
    # The previous version, if it was never disabled, is superseded too: disable it with the orphans.
    orphans = (
        *orphans,
        *pointer_move(
            pointer,
            version=written.version,
            version_count=written.version_count,
            token_value=token.refresh_token,
            now=now,
            save=writes is None,
        ),
    )
    event = _event(
        partner,
        kind,
        "The refresh token was renewed and the new one stored in the vault"
        if kind == Kind.RENEWED
        else "An access-token request rotated the refresh token; the new one is stored in the vault",
        version=written.version,
        previous_version=old,
        versions=written.version_count,
        generation=pointer.generation,
        save=writes is None,
    )
    if writes is not None:
        writes.add(pointer, event)
    return Redemption(token=token, written=written, orphans=orphans)


def after_commit_cleanup(
    pointer: PartnerToken, orphans: tuple[str, ...], *, flags: list[tuple[int, str]] | None = None
) -> None:
    """Disable the version the pointer moved away from, and versions left by interrupted writes.

    With `flags`, the row's `previous_disabled` flag is not written here: (row id, version) is appended for
    the caller to write with `previous_disabled_record`. Failures are only logged: the previous version stays
    flagged as enabled and the sweep retries it.
    """
    if flags is not None and pointer.previous_version and not pointer.previous_disabled:
        if partner_token_disable_previous(pointer=pointer, record=False):
            flags.append((pointer.pk, pointer.previous_version))
    else:
        partner_token_disable_previous(pointer=pointer)
    vault = get_vault()
    disabled = []
    for version in orphans:
        try:
            vault.disable(name=pointer.secret_name, version=version)
        except VaultError as exc:
            logger.warning("could not disable stray version %s of %s: %s", version, pointer.secret_name, exc)
        else:
            disabled.append(version)
    if disabled:
        _event(
            pointer.partner,
            Kind.RECONCILED,
            f"Disabled {len(disabled)} vault version(s) left behind by an interrupted write",
            versions=disabled,
        )


# --- failures -------------------------------------------------------------------------------------------

_PERMANENT_REASONS: dict[str, tuple[str, str]] = {
    identity.ReconsentRequired.kind: (
        Kind.RECONSENT_NEEDED,
        "Microsoft no longer accepts the partner's consent (expired after 90 days unused, revoked, or the "
        "account's password was reset by an administrator): the partner must consent again",
    ),
    identity.MfaRequired.kind: (
        Kind.MFA_REQUIRED,
        "Microsoft requires multi-factor authentication for the account that consented: the partner must "
        "consent again with an account that uses MFA",
    ),
    identity.ConditionalAccessBlocked.kind: (
        Kind.CONDITIONAL_ACCESS,
        "A Conditional Access policy in the partner's tenant blocks the control panel: the partner must "
        "exclude the integration account from the policy, then consent again",
    ),
}


def _record_failure(
    pointer: PartnerToken, *, kind: str, message: str, now: datetime, next_attempt_at: datetime | None = None
) -> None:
    pointer.failure_count += 1
    pointer.last_error = message[:500]
    pointer.last_error_kind = kind[:32]
    pointer.last_failure_at = now
    pointer.next_attempt_at = next_attempt_at
    pointer.save(
        update_fields=[
            "failure_count",
            "last_error",
            "last_error_kind",
            "last_failure_at",
            "next_attempt_at",
            "updated_at",
        ]
    )


def partner_mark_reconsent_needed(*, pointer: PartnerToken, error: identity.IdentityError, now: datetime) -> bool:
    """Mark the partner "re-consent needed" with the reason in words, email its contact a fresh consent
    link and write the audit row, once: a partner already marked gets no second email.

    Runs inside the caller's transaction holding the pointer's lock. Returns True when it marked the partner.
    """
    event_kind, reason = _PERMANENT_REASONS.get(error.kind, _PERMANENT_REASONS[identity.ReconsentRequired.kind])
    partner = Partner.objects.select_for_update().get(pk=pointer.partner_id)
    _record_failure(pointer, kind=error.kind, message=f"{reason}. {error}", now=now)
    _event(partner, event_kind, reason, error=error.error, codes=list(error.codes), kind=error.kind)
    if partner.status == Partner.Status.RECONSENT_NEEDED or partner.status == Partner.Status.DEACTIVATED:
        return False
    previous = partner.status
    partner.status = Partner.Status.RECONSENT_NEEDED
    partner.status_reason = reason[:500]
    partner.save(update_fields=["status", "status_reason", "updated_at"])
    audit_record(
        actor=None,
        action="partner.reconsent_needed",
        partner=partner,
        detail={"previous_status": previous, "kind": error.kind, "codes": list(error.codes), "reason": reason},
    )
    try:
        partner_reconsent_link(actor=None, partner=partner, send_email=True)
    except PartnerError as exc:
        logger.warning("no re-consent link for partner %s: %s", partner.code, exc)
    # Staff see the partner's state on the dashboard; the log line reaches whoever watches the logs.
    logger.warning("partner %s needs re-consent: %s (%s)", partner.code, error.kind, list(error.codes))
    return True


def partner_mfa_refused(*, partner_id: int, detail: str) -> bool:
    """Partner Center refused the partner's token for want of MFA (401 with code 900421, or isMfaCompliant
    false): a fresh access token from the same consent would not have it either, so nothing is retried. Marks
    the partner "re-consent needed" with MFA as the reason and emails the re-consent link, once (as an expired
    consent does); the stored token is kept until a new consent replaces it.

    Runs its own transaction (the pointer's lock, then the partner's). Returns True when it marked the partner.
    """
    error = identity.MfaRequired(
        f"Partner Center requires multi-factor authentication: {detail}", error="mfa_required", codes=(900421,)
    )
    now = timezone.now()
    with transaction.atomic():
        pointer = (
            PartnerToken.objects.select_for_update(of=("self",))
            .select_related("partner")
            .filter(partner_id=partner_id)
            .first()
        )
        if pointer is None:
            return False
        partner_mfa_record(partner=pointer.partner, compliant=False, now=now)
        return partner_mark_reconsent_needed(pointer=pointer, error=error, now=now)


def partner_mfa_verify(*, partner: Partner, access_token: str) -> bool | None:
    """Ask Partner Center (`ValidateMfa`) whether the partner's token satisfies its MFA rule, with `access_token`
    (for Partner Center, from the partner's refresh token), and act on the answer: a refusal marks the partner
    (partner_mfa_refused). Returns isMfaCompliant (None when Partner Center could not say, which is only logged).
    """
    client = partner_center.PartnerCenterClient(
        base_url=cloud_for(partner).partner_center_url, access_token=access_token
    )
    try:
        client.organization_profile()
    except partner_center.MfaRequired as exc:
        partner_mfa_refused(partner_id=partner.pk, detail=str(exc))
        return False
    except partner_center.PartnerCenterError as exc:
        logger.warning("partner %s: Partner Center could not confirm MFA: %s", partner.code, exc)
        return client.mfa_compliant
    if client.mfa_compliant is False:
        partner_mfa_refused(partner_id=partner.pk, detail="Partner Center answered isMfaCompliant: false")
    else:
        partner_mfa_record(partner=partner, compliant=client.mfa_compliant)
    return client.mfa_compliant


# --- renewal --------------------------------------------------------------------------------------------


def partner_token_renew(
    *,
    partner_id: int,
    force: bool = False,
    attempt: int = 1,
    max_attempts: int | None = None,
    interrupted: str = "",
    flags: list[tuple[int, str]] | None = None,
) -> RenewalResult:
    """Renew one partner's refresh token if it is due (or `force`), under the pointer's row lock, in its own
    transaction.

    `interrupted` says why an earlier run of this renewal stopped before it could record anything (its worker
    was killed, the database went away): when the token is still due, that failure is recorded as an event
    before this attempt, so that it shows on the dashboard. With `flags`, the flag that the old version is
    disabled is left for the caller to write (see after_commit_cleanup). A forced renewal (an operator's
    "renew now", the `renew_tokens --force` command) is also audited; the scheduled ones are the partner's
    token events.

    Returns a RenewalResult: renewed; not_due; busy (another worker holds the lock and is renewing it);
    skipped (no token, a partner that is not active, the version budget reached); failed (a permanent
    error, recorded with its reason; not retried). Raises RenewalRetry for a transient error while
    `attempt` < `max_attempts` (the failure is recorded as an event first).
    """
    with transaction.atomic():
        try:
            pointer = (
                PartnerToken.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("partner")
                .get(partner_id=partner_id)
            )
        except PartnerToken.DoesNotExist:
            return _unlocked([partner_id])[partner_id]
        result, redemption = renew_locked(
            pointer,
            force=force,
            attempt=attempt,
            max_attempts=max_attempts or settings.CPV_RENEWAL_MAX_ATTEMPTS,
            interrupted=interrupted,
        )
        if redemption is not None:
            transaction.on_commit(lambda: after_commit_cleanup(pointer, redemption.orphans, flags=flags))
    if result.outcome == "retry":
        raise RenewalRetry(result.message, delay=result.retry_after or 0.0)
    if redemption is not None:
        _renewed(pointer, redemption)
    return result


@dataclass(frozen=True)
class BatchRenewal:
    """What one transaction of a batch committed: a result per partner it reached, in order (a prefix of the
    batch), and the renewals whose clean-up (`renewal_finish`) is still to run."""

    results: list[RenewalResult]
    renewed: list[tuple[PartnerToken, Redemption]]


def partners_token_renew(*, partner_ids: list[int], interrupted: str = "", hold: float | None = None) -> BatchRenewal:
    """Renew the due partners among `partner_ids` as `partner_token_renew` would, in one transaction: their rows
    are locked in one query, and the moved pointers and their events are written in one statement each before
    the commit. It stops taking partners after `hold` seconds (BATCH_LOCK_SECONDS), to bound how long it holds
    the locks.

    A rollback (the database lost, the worker stopped) loses no partner: Entra does not revoke a redeemed
    token, so every pointer stays on a version that works, and the versions written for it are left to
    reconciliation. `interrupted` is recorded against the first partner still due.

    Returns the BatchRenewal once committed; a transient failure is the outcome `retry` with its delay in
    `retry_after` (recorded, not raised). Nothing runs after the commit here: the caller counts what committed,
    then runs `renewal_finish` for each renewal (disabling the old version), so that a failure there cannot be
    taken for a rollback.
    """
    if connection.in_atomic_block:
        # Its clean-up disables the old versions once it returns: inside an outer transaction that could still
        # roll back, a pointer could be left on a disabled version.
        raise RuntimeError("partners_token_renew commits its own transaction: call it outside any other")
    started = time.monotonic()
    now = timezone.now()  # one time for the batch: its rows agree on it and are written more cheaply
    hold = BATCH_LOCK_SECONDS if hold is None else hold
    if connection.vendor == "sqlite":
        # One writer at a time, and the embedded vault writes to the same database: a transaction per partner
        # keeps its write lock off the other partners' calls to Microsoft.
        hold = 0.0
    max_attempts = settings.CPV_RENEWAL_MAX_ATTEMPTS
    results: list[RenewalResult] = []
    renewed: list[tuple[PartnerToken, Redemption]] = []
    with transaction.atomic():
        pointers = {
            pointer.partner_id: pointer
            for pointer in PartnerToken.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("partner")
            .filter(partner_id__in=partner_ids)
        }
        unlocked = _unlocked([partner_id for partner_id in partner_ids if partner_id not in pointers])
        writes = BatchWrites()
        for partner_id in partner_ids:
            if results and time.monotonic() - started > hold:
                break
            pointer = pointers.get(partner_id)
            if pointer is None:
                result = unlocked[partner_id]
            else:
                result, redemption = renew_locked(
                    pointer, attempt=1, max_attempts=max_attempts, interrupted=interrupted, writes=writes, now=now
                )
                if redemption is not None:
                    renewed.append((pointer, redemption))
            if result.outcome not in {"not_due", "busy"}:
                interrupted = ""  # this partner was the one in progress (or none was): the rest start afresh
            results.append(result)
        writes.flush()
    return BatchRenewal(results=results, renewed=renewed)


def renewal_finish(pointer: PartnerToken, redemption: Redemption, *, flags: list[tuple[int, str]]) -> None:
    """After a batch's commit, for one renewal: disable the old version (its flag appended to `flags`) and the
    orphans, and keep the access token that came with it."""
    after_commit_cleanup(pointer, redemption.orphans, flags=flags)
    _renewed(pointer, redemption)


def _unlocked(partner_ids: list[int]) -> dict[int, RenewalResult]:
    """Why the rows of these partners could not be locked: busy (another worker holds the lock), or skipped."""
    if not partner_ids:
        return {}
    held = set(PartnerToken.objects.filter(partner_id__in=partner_ids).values_list("partner_id", flat=True))
    return {
        partner_id: RenewalResult(partner_id, "busy", "another worker is renewing this token")
        if partner_id in held
        else RenewalResult(partner_id, "skipped", "the partner has no token")
        for partner_id in partner_ids
    }


def renew_locked(
    pointer: PartnerToken,
    *,
    attempt: int,
    max_attempts: int,
    interrupted: str,
    force: bool = False,
    writes: BatchWrites | None = None,
    now: datetime | None = None,
) -> tuple[RenewalResult, Redemption | None]:
    """Renew the partner whose row the caller holds locked, if it is due (or `force`); a failure is recorded in
    the caller's transaction. With `writes`, the moved pointer and its event are left there for the caller.

    Returns the RenewalResult (`retry` for a transient failure with attempts left) and, when it renewed, the
    Redemption, whose orphans the caller disables after its commit.
    """
    now = now or timezone.now()
    partner_id = pointer.partner_id
    partner = pointer.partner
    if not pointer.current_version:
        return RenewalResult(partner_id, "skipped", "the partner has no token"), None
    if partner.status != Partner.Status.ACTIVE:
        return RenewalResult(partner_id, "skipped", f"the partner is {partner.get_status_display().lower()}"), None
    if not force and not is_due(pointer, now=now):
        return RenewalResult(partner_id, "not_due", "renewed recently"), None
    if pointer.version_count >= MAX_VERSIONS - VERSION_RESERVE:
        message = (
            f"The vault secret has {pointer.version_count} of its {MAX_VERSIONS} versions: renewal stopped "
            "to keep the budget; an operator must move the partner to a new secret"
        )
        logger.error("OPERATOR ALERT: partner %s: %s", partner.code, message)
        _record_failure(pointer, kind="budget", message=message, now=now)
        _event(partner, Kind.BUDGET, message, versions=pointer.version_count)
        return RenewalResult(partner_id, "failed", message), None
    if interrupted:
        _event(
            partner,
            Kind.RETRYING,
            f"An earlier attempt stopped before it finished ({interrupted}); trying again",
            attempt=attempt,
            interrupted=interrupted,
        )
    try:
        redemption = redeem_locked(
            pointer=pointer,
            scopes=[cloud_for(partner).partner_center_scope],
            tenant=None,
            store=True,
            kind=Kind.RENEWED,
            now=now,
            writes=writes,
        )
        if redemption.written is None:
            # Nothing was stored: the token is as old as it was, so this is no renewal.
            raise identity.IdentityError("Microsoft's answer held no new refresh token")  # noqa: TRY301
    except (identity.IdentityError, VaultError) as exc:
        return _renewal_failed(pointer, exc, now=now, attempt=attempt, max_attempts=max_attempts), None
    if force:
        audit_record(
            actor=None,
            action="partner.token_renewed",
            partner=partner,
            detail={"version": pointer.current_version, "generation": pointer.generation, "forced": force},
        )
    return RenewalResult(partner_id, "renewed", "renewed"), redemption


def _renewed(pointer: PartnerToken, redemption: Redemption) -> None:
    """After the commit: the Partner Center access token that came with the renewal serves the next calls of
    this process."""
    from tokens.access_tokens import PARTNER_CENTER, cache_put

    cache_put(partner=pointer.partner, audience=PARTNER_CENTER, tenant=None, token=redemption.token)
    logger.info("renewed the token of partner %s (generation %s)", pointer.partner.code, pointer.generation)
    # Partner Center refuses a token whose sign-in had no MFA (its `amr`, which renewal carries over): when the
    # renewed one shows none, Partner Center is asked before anything relies on it (a rare call, so renewal
    # does not spend Partner Center's request budget otherwise).
    if not identity.claims_have_mfa(identity.access_token_claims(redemption.token.access_token)):
        partner_mfa_verify(partner=pointer.partner, access_token=redemption.token.access_token)


def _renewal_failed(
    pointer: PartnerToken, exc: Exception, *, now: datetime, attempt: int, max_attempts: int
) -> RenewalResult:
    """Record a failed renewal in the caller's transaction.

    Returns a RenewalResult: `retry` (with the delay in `retry_after`) for a transient error with attempts
    left, `failed` otherwise.
    """
    partner = pointer.partner
    transient = (isinstance(exc, identity.IdentityError) and not exc.permanent) or (
        isinstance(exc, VaultError) and exc.transient
    )
    kind = getattr(exc, "kind", "") or exc.__class__.__name__
    if transient:
        retry_after = getattr(exc, "retry_after", None)
        if attempt < max_attempts:
            delay = backoff_delay(attempt=attempt, retry_after=retry_after)
            message = f"Attempt {attempt} of {max_attempts} failed ({exc}); trying again in {delay:.0f} s"
            _record_failure(pointer, kind="transient", message=message, now=now)
            _event(partner, Kind.RETRYING, message, attempt=attempt, retry_after=retry_after, delay=round(delay, 1))
            # Returned, not raised, so the failure rows commit; the caller raises RenewalRetry after the block.
            return RenewalResult(partner.pk, "retry", message, retry_after=delay)
        message = f"Renewal failed {max_attempts} times ({exc}); the next sweep tries again later"
        _record_failure(pointer, kind="transient", message=message, now=now, next_attempt_at=now + GAVE_UP_PAUSE)
        _event(partner, Kind.GAVE_UP, message, attempts=max_attempts)
        logger.warning("renewal of partner %s gave up after %d attempts: %s", partner.code, max_attempts, exc)
        return RenewalResult(partner.pk, "failed", message)
    if isinstance(exc, identity.ReconsentRequired | identity.MfaRequired | identity.ConditionalAccessBlocked):
        partner_mark_reconsent_needed(pointer=pointer, error=exc, now=now)
        return RenewalResult(partner.pk, "failed", str(exc))
    if isinstance(exc, identity.InvalidClient | identity.IdentityMisconfigured):
        message = f"The control panel's own app credential was refused ({exc}): rotate it"
        logger.error("OPERATOR ALERT: %s (partner %s)", message, partner.code)
    else:
        message = f"Renewal failed ({exc})"
        logger.error("renewal of partner %s failed permanently: %s", partner.code, exc)
    _record_failure(pointer, kind=kind, message=message, now=now, next_attempt_at=now + GAVE_UP_PAUSE)
    _event(partner, Kind.OPERATOR_ALERT, message, kind=kind)
    return RenewalResult(partner.pk, "failed", message)


def partner_token_renew_now(
    *, partner_id: int, force: bool = False, sleep: Callable[[float], None] = time.sleep
) -> RenewalResult:
    """Renew in this process (management commands), retrying transient errors with backoff in-process.

    Returns the final RenewalResult; never raises RenewalRetry.
    """
    attempt = 1
    while True:
        try:
            return partner_token_renew(partner_id=partner_id, force=force, attempt=attempt)
        except RenewalRetry as retry:
            sleep(retry.delay)
            attempt += 1


@dataclass(frozen=True)
class SweepResult:
    queued: list[tuple[int, float]]  # partner id, countdown in seconds
    previous_disabled: int


def spread_countdown(partner_id: int, *, window: float | None = None) -> float:
    """Where in the hour a partner's renewal runs: stable per partner, so the load is spread evenly and a
    duplicate sweep picks the same moment."""
    window = min(float(window if window is not None else SPREAD_SECONDS), max_countdown())
    return float(zlib.crc32(str(partner_id).encode()) % max(1, int(window)))


def renewal_batches(
    queued: list[tuple[int, float]], *, size: int = BATCH_SIZE, window: float = BATCH_WINDOW
) -> list[tuple[float, list[int]]]:
    """Group (partner id, countdown) pairs into batches in countdown order: at most `size` partners each, all
    within `window` seconds of the batch's first. Returns (countdown of the batch's first partner, ids) pairs.
    """
    batches: list[tuple[float, list[int]]] = []
    for partner_id, countdown in sorted(queued, key=lambda item: (item[1], item[0])):
        if batches and len(batches[-1][1]) < size and countdown - batches[-1][0] <= window:
            batches[-1][1].append(partner_id)
        else:
            batches.append((countdown, [partner_id]))
    return batches


def renewal_sweep(*, now: datetime | None = None, limit: int = 5000) -> SweepResult:
    """Find the partners whose token is due and claim them for queueing; retry disabling old versions.

    A partner claimed by a sweep within QUEUE_HOLD is not claimed again, so a duplicate beat run queues
    nothing twice. Returns the claimed partner ids with their countdowns (the task queues them).
    """
    now = now or timezone.now()
    # The claim is one transaction: a sweep cut off half-way (the database restarted under it) has claimed
    # nobody, so running it again loses no partner for QUEUE_HOLD. Of two sweeps running at once, the second
    # skips the rows the first holds; rows locked by a renewal in progress are skipped too (it is renewing them).
    with transaction.atomic():
        due = list(
            PartnerToken.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(partner__status=Partner.Status.ACTIVE)
            .exclude(current_version="")
            .filter(Q(last_renewed_at__isnull=True) | Q(last_renewed_at__lte=now - renewal_interval()))
            .filter(version_count__lt=MAX_VERSIONS - VERSION_RESERVE)
            .exclude(next_attempt_at__gt=now)
            .exclude(renewal_queued_at__gt=now - QUEUE_HOLD)
            .order_by("pk")
            .values_list("pk", "partner_id")[:limit]
        )
        PartnerToken.objects.filter(pk__in=[pk for pk, _ in due]).update(renewal_queued_at=now)
    queued = [(partner_id, spread_countdown(partner_id)) for _, partner_id in due]
    try:
        previous_disabled = previous_versions_disable()
    except DatabaseError as exc:
        # The claims are committed and must be queued now; the next sweep retries the clean-up.
        logger.warning("renewal sweep: disabling previous versions failed: %s", exc.__class__.__name__)
        previous_disabled = 0
    return SweepResult(queued=queued, previous_disabled=previous_disabled)


def previous_versions_disable(*, limit: int = 500) -> int:
    """Retry disabling the versions pointers moved away from (a vault error after a renewal left them on).

    Pointers locked by a renewal in progress are skipped. Returns how many were disabled.
    """
    done = 0
    ids = list(PartnerToken.objects.filter(previous_disabled=False).values_list("pk", flat=True)[:limit])
    for pk in ids:
        with transaction.atomic():
            pointer = (
                PartnerToken.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("partner")
                .filter(pk=pk, previous_disabled=False)
                .first()
            )
            if pointer is not None and partner_token_disable_previous(pointer=pointer):
                done += 1
    return done


def partner_token_import(*, actor: Actor, partner: Partner, refresh_token: str) -> PartnerToken:
    """Store a refresh token obtained elsewhere (a migration from another system) as the partner's current
    token, and make the partner active. The token goes to the vault; the database keeps the pointer.

    Returns the PartnerToken. Raises VaultError, or PartnerError when the partner has no tenant id.
    """
    if not partner.tenant_id:
        raise PartnerError("A partner needs its tenant id before a token can be imported.")
    name = secret_name_for(partner.code)
    written = get_vault().write(
        name=name, value=refresh_token, tags=secret_tags(partner_code=partner.code, cloud=partner.cloud)
    )
    now = timezone.now()
    with transaction.atomic():
        # The same lock order as everywhere: the token row, then the partner.
        existing = PartnerToken.objects.select_for_update().filter(partner=partner).first()
        locked = Partner.objects.select_for_update().get(pk=partner.pk)
        pointer = existing or PartnerToken.objects.create(partner=locked, secret_name=name)
        superseded = pointer_move(
            pointer,
            version=written.version,
            version_count=written.version_count,
            token_value=refresh_token,
            now=now,
            obtained=Obtained(),
        )
        locked.status = Partner.Status.ACTIVE
        locked.status_reason = ""
        locked.save(update_fields=["status", "status_reason", "updated_at"])
        audit_record(actor=actor, action="partner.token_imported", partner=locked, detail={"version": written.version})
        transaction.on_commit(lambda: after_commit_cleanup(pointer, superseded))
    return pointer

"""Renewing partners' refresh tokens under their row locks: one partner per transaction (`renew_one`) or many
(`renew_batch`), both through `renew_if_due`; failures are classified by tokens/failures.py."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from microsoft import identity
from partners.models import Partner
from partners.registrations import cloud_for
from partners.services import audit_record
from tokens.access_tokens import PARTNER_CENTER, cache_put
from tokens.failures import failure_record, partner_mfa_verify, renewal_failure_record
from tokens.models import PartnerToken, TokenEvent
from tokens.outcomes import RenewalOutcome, RenewalResult, RenewalRetry
from tokens.pointers import token_event
from tokens.redemption import (
    VERSION_RESERVE,
    Redemption,
    moved_write,
    redeem_current_token,
    superseded_versions_disable,
)
from tokens.selectors import is_due
from tokens.vault import (
    MAX_VERSIONS,
    VaultError,
)

logger = logging.getLogger(__name__)

Kind = TokenEvent.Kind

# A batch renews its partners in one transaction holding their row locks, committed after this many seconds
# at most (and the rest locked again in the next): the access-token service waits for a lock no longer.
BATCH_LOCK_SECONDS = 2.0


# --- renewal --------------------------------------------------------------------------------------------


def renew_one(
    *,
    partner_id: int,
    force: bool = False,
    attempt: int = 1,
    max_attempts: int | None = None,
    interrupted: str = "",
    flag_later: bool = False,
) -> RenewalResult:
    """Renew one partner's token if due (or `force`) in its own transaction under its row lock: renewed, not_due,
    busy, skipped or failed. Raises RenewalRetry for a transient error with attempts left (recorded first)."""
    # Inside a caller's transaction that may still roll back, the old version waits for that commit.
    outer = connection.in_atomic_block
    with transaction.atomic():
        try:
            pointer = (
                PartnerToken.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("partner")
                .get(partner_id=partner_id)
            )
        except PartnerToken.DoesNotExist:
            return _unlocked([partner_id])[partner_id]
        result, redemption = renew_if_due(
            pointer,
            force=force,
            attempt=attempt,
            max_attempts=max_attempts or settings.CPV_RENEWAL_MAX_ATTEMPTS,
            interrupted=interrupted,
        )
        if redemption is not None and outer:
            orphans = redemption.orphans
            transaction.on_commit(lambda: superseded_versions_disable(pointer, orphans))
    if result.outcome == RenewalOutcome.RETRY:
        raise RenewalRetry(result.message, delay=result.retry_after or 0.0)
    if redemption is None:
        return result
    if not outer:
        flag = superseded_versions_disable(pointer, redemption.orphans, record=not flag_later)
        result = replace(result, disabled_previous=flag)
    _renewed(pointer, redemption)
    return result


@dataclass(frozen=True)
class BatchRenewal:
    """What a batch's transaction committed: a result per partner reached (a prefix), and the renewals to finish."""

    results: list[RenewalResult]
    renewed: list[tuple[PartnerToken, Redemption]]


def renew_batch(
    *,
    partner_ids: list[int],
    interrupted: str = "",
    cut_off: Collection[int] | None = None,
    on_begin: Callable[[int], None] | None = None,
    hold: float | None = None,
) -> BatchRenewal:
    """Renew the due partners as `renew_one` would, in one transaction committed here (call it outside any other),
    taking partners for `hold` seconds; `on_begin` hears each id first. A transient failure is the outcome `retry`;
    the caller runs `batch_renewal_finish` for each renewal afterwards."""
    if connection.in_atomic_block:
        # Its clean-up disables the old versions once it returns: inside an outer transaction that could still
        # roll back, a pointer could be left on a disabled version.
        raise RuntimeError("renew_batch commits its own transaction: call it outside any other")
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
    # A rollback loses no partner (Entra does not revoke a redeemed token, so every pointer stays on a version that
    # works), but it may hide redemptions: hence `on_begin`, which notes each partner where the rollback cannot reach.
    with transaction.atomic():
        pointers = {
            pointer.partner_id: pointer
            for pointer in PartnerToken.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("partner")
            .filter(partner_id__in=partner_ids)
        }
        unlocked = _unlocked([partner_id for partner_id in partner_ids if partner_id not in pointers])
        for partner_id in partner_ids:
            if results and time.monotonic() - started > hold:
                break
            pointer = pointers.get(partner_id)
            if pointer is None:
                result = unlocked[partner_id]
            else:
                if on_begin is not None:
                    on_begin(partner_id)
                says = interrupted if cut_off is None or partner_id in cut_off else ""
                result, redemption = renew_if_due(
                    pointer, attempt=1, max_attempts=max_attempts, interrupted=says, defer=True, now=now
                )
                if redemption is not None:
                    renewed.append((pointer, redemption))
            if cut_off is None and result.outcome not in (RenewalOutcome.NOT_DUE, RenewalOutcome.BUSY):
                interrupted = ""  # this partner was the one in progress (or none was): the rest start afresh
            results.append(result)
        moved_write(renewed)
    return BatchRenewal(results=results, renewed=renewed)


def batch_renewal_finish(pointer: PartnerToken, redemption: Redemption) -> tuple[int, str] | None:
    """After a batch's commit: disable one renewal's superseded versions and cache its access token. Returns the
    `previous_disabled_record` flag to write."""
    flag = superseded_versions_disable(pointer, redemption.orphans, record=False)
    _renewed(pointer, redemption)
    return flag


def _unlocked(partner_ids: list[int]) -> dict[int, RenewalResult]:
    """Busy (another worker holds the lock) or skipped (no token), for partners whose rows were not locked."""
    if not partner_ids:
        return {}
    held = set(PartnerToken.objects.filter(partner_id__in=partner_ids).values_list("partner_id", flat=True))
    return {
        partner_id: RenewalResult(partner_id, RenewalOutcome.BUSY, "another worker is renewing this token")
        if partner_id in held
        else RenewalResult(partner_id, RenewalOutcome.SKIPPED, "the partner has no token")
        for partner_id in partner_ids
    }


def renew_if_due(
    pointer: PartnerToken,
    *,
    attempt: int,
    max_attempts: int,
    interrupted: str,
    force: bool = False,
    defer: bool = False,
    now: datetime | None = None,
) -> tuple[RenewalResult, Redemption | None]:
    """Renew the partner whose row the caller holds locked, if due; a failure is recorded in the caller's transaction.
    Returns the result and the Redemption (whose rows, with `defer`, the caller writes with `moved_write`)."""
    now = now or timezone.now()
    partner_id = pointer.partner_id
    partner = pointer.partner
    if not pointer.current_version:
        return RenewalResult(partner_id, RenewalOutcome.SKIPPED, "the partner has no token"), None
    if partner.status != Partner.Status.ACTIVE:
        return RenewalResult(
            partner_id, RenewalOutcome.SKIPPED, f"the partner is {partner.get_status_display().lower()}"
        ), None
    if not force and not is_due(pointer, now=now):
        return RenewalResult(partner_id, RenewalOutcome.NOT_DUE, "renewed recently"), None
    if pointer.version_count >= MAX_VERSIONS - VERSION_RESERVE:
        message = (
            f"The vault secret has {pointer.version_count} of its {MAX_VERSIONS} versions: renewal stopped "
            "to keep the budget; an operator must move the partner to a new secret"
        )
        logger.error("OPERATOR ALERT: partner %s: %s", partner.code, message)
        failure_record(pointer, kind="budget", message=message, now=now)
        token_event(partner, Kind.BUDGET, message, versions=pointer.version_count)
        return RenewalResult(partner_id, RenewalOutcome.FAILED, message), None
    if interrupted:
        token_event(
            partner,
            Kind.RETRYING,
            f"An earlier attempt stopped before it finished ({interrupted}); trying again",
            attempt=attempt,
            interrupted=interrupted,
        )
    try:
        redemption = redeem_current_token(
            pointer=pointer,
            scopes=[cloud_for(partner).partner_center_scope],
            tenant=None,
            store=True,
            kind=Kind.RENEWED,
            now=now,
            defer=defer,
        )
        if redemption.written is None:
            # Nothing was stored: the token is as old as it was, so this is no renewal.
            raise identity.IdentityError("Microsoft's answer held no new refresh token")  # noqa: TRY301
    except (identity.IdentityError, VaultError) as exc:
        return renewal_failure_record(pointer, exc, now=now, attempt=attempt, max_attempts=max_attempts), None
    if force:
        audit_record(
            actor=None,
            action="partner.token_renewed",
            partner=partner,
            detail={"version": pointer.current_version, "generation": pointer.generation, "forced": force},
        )
    return RenewalResult(partner_id, RenewalOutcome.RENEWED, "renewed"), redemption


def _renewed(pointer: PartnerToken, redemption: Redemption) -> None:
    """After the commit: cache the access token that came with the renewal, and check its MFA."""
    cache_put(partner=pointer.partner, audience=PARTNER_CENTER, tenant=None, token=redemption.token)
    logger.info("renewed the token of partner %s (generation %s)", pointer.partner.code, pointer.generation)
    # Partner Center refuses a token whose sign-in had no MFA (its `amr`, which renewal carries over): when the
    # renewed one shows none, Partner Center is asked before anything relies on it (a rare call, so renewal
    # does not spend Partner Center's request budget otherwise).
    if not identity.claims_have_mfa(identity.access_token_claims(redemption.token.access_token)):
        partner_mfa_verify(partner=pointer.partner, access_token=redemption.token.access_token)


def renew_one_retrying(
    *, partner_id: int, force: bool = False, sleep: Callable[[float], None] = time.sleep
) -> RenewalResult:
    """Renew in this process, retrying transient errors with backoff: the final RenewalResult, never RenewalRetry."""
    attempt = 1
    while True:
        try:
            return renew_one(partner_id=partner_id, force=force, attempt=attempt)
        except RenewalRetry as retry:
            sleep(retry.delay)
            attempt += 1

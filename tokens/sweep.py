"""The hourly sweep: claim the partners whose token is due, most overdue first and, in each vault of VAULT_URLS, as many
as that vault can write before the next sweep (a duplicate sweep queues nobody twice), spread each vault's evenly over
the hour in batches, and retry disabling superseded versions."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F, Q
from django.utils import timezone

from microsoft.retrying import max_countdown
from partners.models import Partner
from tokens.models import PartnerToken
from tokens.pointers import partner_token_disable_previous
from tokens.redemption import VERSION_RESERVE
from tokens.selectors import renewal_interval
from tokens.vault import MAX_VERSIONS, vault_urls

logger = logging.getLogger(__name__)


# A duplicate sweep does not queue a partner again within this time.
QUEUE_HOLD = timedelta(minutes=55)


# Renewal tasks of one sweep are spread over this many seconds (at most half the visibility timeout).
SPREAD_SECONDS = 3000
# The beat runs the sweep this often (cpv/celery.py): one sweep claims what the vault can write until the next.
SWEEP_EVERY_SECONDS = 3600


# A sweep queues renewals in batches: one message renews up to BATCH_SIZE partners whose moments in the spread
# fall within BATCH_WINDOW seconds of the first one's, so the broker's and Celery's work per message is shared.
BATCH_SIZE = 20


BATCH_WINDOW = 60.0


@dataclass(frozen=True)
class SweepResult:
    queued: list[tuple[int, float]]  # partner id, countdown in seconds
    previous_disabled: int


def spread_evenly(partner_ids: list[int], *, window: float | None = None) -> list[tuple[int, float]]:
    """Each partner's moment in the window, evenly spaced in the given order (the most overdue first), so that the
    renewals, and with them the vault's writes, run at one steady rate: (partner id, countdown in seconds)."""
    window = min(float(window if window is not None else SPREAD_SECONDS), max_countdown())
    step = window / len(partner_ids) if partner_ids else 0.0
    return [(partner_id, round(n * step, 3)) for n, partner_id in enumerate(partner_ids)]


def sweep_capacity() -> int | None:
    """How many renewals one sweep may claim in each vault: what Key Vault's write limit (one per vault) lets a vault
    take until the next sweep (each renewal creates one secret version, paced at CPV_VAULT_CREATES_PER_SECOND per
    vault), or None, no limit, for a vault without one (the embedded vault, or pacing off). A vault's due partners
    beyond it wait for the next sweep, oldest first."""
    rate = int(getattr(settings, "CPV_VAULT_CREATES_PER_SECOND", 0) or 0)
    if settings.VAULT_BACKEND != "azure" or rate <= 0:
        return None
    return rate * SWEEP_EVERY_SECONDS


def renewal_batches(
    queued: list[tuple[int, float]], *, size: int = BATCH_SIZE, window: float = BATCH_WINDOW
) -> list[tuple[float, list[int]]]:
    """(countdown, ids) batches of at most `size` partners within `window` seconds, in countdown order."""
    batches: list[tuple[float, list[int]]] = []
    for partner_id, countdown in sorted(queued, key=lambda item: (item[1], item[0])):
        if batches and len(batches[-1][1]) < size and countdown - batches[-1][0] <= window:
            batches[-1][1].append(partner_id)
        else:
            batches.append((countdown, [partner_id]))
    return batches


def renewal_sweep(*, now: datetime | None = None, limit: int | None = None) -> SweepResult:
    """Claim the due partners (not those claimed within QUEUE_HOLD), the most overdue first and at most `limit` (by
    default `sweep_capacity()`) in each vault, and retry disabling old versions: the claimed ids with their countdowns,
    each vault's evenly spread over the window."""
    now = now or timezone.now()
    limit = limit if limit is not None else sweep_capacity()
    # The claim is one transaction: a sweep cut off half-way (the database restarted under it) has claimed
    # nobody, so running it again loses no partner for QUEUE_HOLD. Of two sweeps running at once, the second
    # skips the rows the first holds; rows locked by a renewal in progress are skipped too (it is renewing them).
    with transaction.atomic():
        claim = (
            PartnerToken.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(partner__status=Partner.Status.ACTIVE)
            .exclude(current_version="")
            .filter(Q(last_renewed_at__isnull=True) | Q(last_renewed_at__lte=now - renewal_interval()))
            .filter(version_count__lt=MAX_VERSIONS - VERSION_RESERVE)
            .exclude(next_attempt_at__gt=now)
            .exclude(renewal_queued_at__gt=now - QUEUE_HOLD)
            .order_by(F("last_renewed_at").asc(nulls_first=True), "pk")
            .values_list("pk", "partner_id")
        )
        due: dict[str, list[tuple[int, int]]] = {}
        for url in vault_urls():
            in_vault = claim.filter(_in_vault(url))
            due[url] = list(in_vault[:limit] if limit is not None else in_vault)
        PartnerToken.objects.filter(pk__in=[pk for claimed in due.values() for pk, _ in claimed]).update(
            renewal_queued_at=now
        )
    queued = [item for claimed in due.values() for item in spread_evenly([partner_id for _, partner_id in claimed])]
    try:
        previous_disabled = previous_versions_disable()
    except DatabaseError as exc:
        # The claims are committed and must be queued now; the next sweep retries the clean-up.
        logger.warning("renewal sweep: disabling previous versions failed: %s", exc.__class__.__name__)
        previous_disabled = 0
    return SweepResult(queued=queued, previous_disabled=previous_disabled)


def _in_vault(url: str) -> Q:
    """The pointers whose secret `url` keeps (of `vault_urls()`): with the embedded vault, all of them; the first Key
    Vault keeps those stored before vaults were recorded too. A vault VAULT_URLS no longer names is swept by none:
    its partners' renewals would fail (the settings page and `manage.py check --database` name it)."""
    urls = vault_urls()
    if urls == ("",):
        return Q()
    if url.lower() == urls[0].lower():
        return Q(vault_url__iexact=url) | Q(vault_url="")
    return Q(vault_url__iexact=url)


def previous_versions_disable(*, limit: int = 500) -> int:
    """Retry disabling the versions pointers moved away from, skipping locked pointers: how many were disabled."""
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

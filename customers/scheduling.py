"""Fair scheduling of ApplicationConsent under Partner Center's shared limit (50 requests a second per application id
for the whole vendor). Pending work is recorded per customer (ConsentWork) with a class; each partner with pending
work has a lane (ConsentLane) with a virtual time: the customers handed out to it since its work began. A worker asks
`consent_work_claim` for the next batch: among the lanes with claimable work, new and repair work before routine
re-checks, the lane with the least virtual time goes next (weighted fair queueing with equal weights, so each partner
gets an equal share of the limit whatever its size), and a lane that gets work starts at the least virtual time of
the busy lanes, neither ahead of them nor behind. The broker's order decides nothing: a bounded set of puller slots
(ConsentPuller, CPV_CONSENT_PULLERS of them) each runs a chain of tasks, one batch (CPV_CONSENT_BATCH customers) each.

Claims: a claimed row names its puller task (its id survives a redelivery, which takes its own rows back first) and
lapses after WORK_LEASE, longer than the customer's own claim (customers/services.py LEASE), so a killed worker's
rows go to another worker once nobody can still be calling Partner Center for them."""

from __future__ import annotations

import logging
import math
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case, Exists, F, IntegerField, Min, OuterRef, Q, Value, When
from django.utils import timezone

from cpv.task_kit import MAX_TASK_RETRIES
from customers.models import ConsentLane, ConsentPuller, ConsentWork
from customers.services import LEASE
from partners.models import Operation
from partners.operations import operation_share
from partners.services import audit_record

logger = logging.getLogger(__name__)

Kind = ConsentWork.Kind

WORK_LEASE = LEASE + timedelta(minutes=1)
# A slot whose chain stopped (its message lost) is started again after this long without a batch. Short: a chain
# still running in a slot started again only finds, at its next hand-over, that the slot is no longer its own.
PULLER_LEASE = timedelta(minutes=2)
# Lanes tried by one claim before it gives up (each found with claimable work, but taken by another in between).
CLAIM_TRIES = 3
# Customers recorded per INSERT.
INSERT_BATCH = 2000

PRIORITY: dict[str, int] = {Kind.NEW: 0, Kind.REPAIR: 0, Kind.ROUTINE: 1}


def consent_pullers() -> int:
    """Puller slots (CPV_CONSENT_PULLERS): batches in flight at once, across every worker. More than the workers'
    threads only queues messages; fewer leaves the limit unused while Partner Center answers."""
    return int(settings.CPV_CONSENT_PULLERS)


def consent_batch_size() -> int:
    """Customers in one scheduled batch (CPV_CONSENT_BATCH): small, so that a partner whose work arrives waits at
    most one batch per puller (batch x pullers / 50 s at the limit) before its first is handed out."""
    return int(settings.CPV_CONSENT_BATCH)


@dataclass(frozen=True)
class Claim:
    """A batch handed to a puller: one partner's customers, in the order to apply them."""

    partner_id: int
    customer_ids: list[int]
    correlation_id: str


@dataclass(frozen=True)
class Progress:
    """A partner's scheduled ApplicationConsent since its work began, and when it should finish at its share."""

    pending: int
    done: int
    failed: int
    share_per_s: float
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def total(self) -> int:
        return self.pending + self.done + self.failed

    @property
    def percent(self) -> int:
        return round(100 * (self.done + self.failed) / self.total) if self.total else 100

    @property
    def eta_seconds(self) -> int:
        return math.ceil(self.pending / self.share_per_s) if self.share_per_s else 0

    @property
    def eta_at(self) -> datetime:
        return timezone.now() + timedelta(seconds=self.eta_seconds)


def consent_work_add(*, partner_id: int, customer_ids: list[int], kind: str, correlation_id: str = "") -> int:
    """Record ApplicationConsent as pending for the partner's customers in class `kind` (a customer already pending
    keeps its place, moved up to `kind`'s class if that goes first), under the lane's lock: how many were added."""
    priority = PRIORITY[kind]
    now = timezone.now()
    ConsentLane.objects.bulk_create([ConsentLane(partner_id=partner_id)], ignore_conflicts=True)
    with transaction.atomic():
        lane = ConsentLane.objects.select_for_update().get(partner_id=partner_id)
        held = dict(ConsentWork.objects.filter(partner_id=partner_id).values_list("customer_id", "priority"))
        new = [pk for pk in dict.fromkeys(customer_ids) if pk not in held]
        raised = [pk for pk in customer_ids if held.get(pk, priority) > priority]
        if raised:
            ConsentWork.objects.filter(customer_id__in=raised).update(priority=priority, kind=kind)
        ConsentWork.objects.bulk_create(
            [
                ConsentWork(
                    customer_id=pk,
                    partner_id=partner_id,
                    kind=kind,
                    priority=priority,
                    correlation_id=correlation_id,
                    queued_at=now,
                )
                for pk in new
            ],
            batch_size=INSERT_BATCH,
        )
        if new and lane.pending == 0:
            # A lane getting work starts at the busy lanes' least virtual time: an equal share from now on, no
            # credit for the time it was idle and no debt for what it had before.
            busy = ConsentLane.objects.filter(pending__gt=0).exclude(pk=partner_id)
            lane.virtual_time = busy.aggregate(least=Min("virtual_time"))["least"] or 0
            lane.done = lane.failed = 0
            lane.started_at, lane.finished_at = now, None
        lane.pending += len(new)
        if priority == 0:
            lane.urgent += len(new) + len(raised)
        lane.save()
    return len(new)


def consent_work_claim(*, owner: str, size: int | None = None) -> Claim | None:
    """The next batch for the puller task `owner`: the rows it already holds (a redelivered run), else up to `size`
    (CPV_CONSENT_BATCH) claimable customers of the lane that goes next, held for WORK_LEASE. None when no work is
    claimable now."""
    size = size or consent_batch_size()
    now = timezone.now()
    with transaction.atomic():
        mine = list(
            ConsentWork.objects.select_for_update()
            .filter(held_by=owner)
            .order_by("priority", "customer_id")
            .values_list("partner_id", "customer_id", "correlation_id")
        )
        if mine:
            ConsentWork.objects.filter(held_by=owner).update(held_until=now + WORK_LEASE)
            partner_id = mine[0][0]
            return Claim(partner_id, [c for p, c, _ in mine if p == partner_id], mine[0][2])
    claimable = Q(held_until__isnull=True) | Q(held_until__lt=now)
    tried: list[int] = []
    for attempt in range(CLAIM_TRIES):
        with transaction.atomic():
            # Another puller's claim or close holds a lane for a moment: the next lane goes instead. When every lane
            # with work is held so (one partner busy), the last try waits for it rather than leave it idle.
            lane = (
                ConsentLane.objects.select_for_update(skip_locked=attempt < CLAIM_TRIES - 1)
                .filter(pending__gt=0)
                .exclude(partner_id__in=tried)
                .filter(Exists(ConsentWork.objects.filter(claimable, partner_id=OuterRef("partner_id"))))
                .order_by(
                    Case(When(urgent__gt=0, then=Value(0)), default=Value(1), output_field=IntegerField()),
                    "virtual_time",
                    "started_at",
                    "partner_id",
                )
                .first()
            )
            if lane is None:
                continue
            rows = list(
                ConsentWork.objects.select_for_update(skip_locked=True)
                .filter(claimable, partner_id=lane.partner_id)
                .order_by("priority", "customer_id")
                .values_list("customer_id", "correlation_id")[:size]
            )
            if not rows:
                tried.append(lane.partner_id)
                continue
            ids = [pk for pk, _ in rows]
            ConsentWork.objects.filter(customer_id__in=ids).update(held_by=owner, held_until=now + WORK_LEASE)
            ConsentLane.objects.filter(pk=lane.pk).update(virtual_time=F("virtual_time") + len(ids))
            return Claim(lane.partner_id, ids, rows[0][1])
    return None


def consent_work_finish(
    *,
    owner: str,
    partner_id: int,
    customer_ids: list[int],
    failed_ids: Iterable[int],
    retry_ids: Iterable[int],
    retry_in: float,
    held_ids: Iterable[int] = (),
    held_for: float = 0.0,
) -> ConsentLane:
    """Close the batch `owner` held: its customers are done (`failed_ids` of them refused), except `retry_ids`,
    handed back to be claimed again after `retry_in` seconds (counted failed once they have had MAX_TASK_RETRIES
    tries), and `held_ids` (another worker held their claim), handed back for after `held_for` seconds, when that
    claim has lapsed, with no try counted. Each staff operation whose customers these were gets its share in the
    same transaction (partners/operations.py), so a batch closed once counts once. When the lane has nothing left,
    one audit row says what its work came to. Returns the lane."""
    retry = set(retry_ids)
    held = set(held_ids) - retry
    now = timezone.now()
    with transaction.atomic():
        lane = ConsentLane.objects.select_for_update().get(partner_id=partner_id)
        rows = list(
            ConsentWork.objects.select_for_update()
            .filter(held_by=owner, customer_id__in=customer_ids)
            .values_list("customer_id", "priority", "attempts", "correlation_id")
        )
        again = [pk for pk, _, attempts, _ in rows if pk in retry and attempts + 1 < MAX_TASK_RETRIES]
        waiting = [pk for pk, *_ in rows if pk in held]
        gone = [row for row in rows if row[0] not in again and row[0] not in held]
        if again:
            ConsentWork.objects.filter(customer_id__in=again).update(
                held_by="", held_until=now + timedelta(seconds=retry_in), attempts=F("attempts") + 1
            )
        if waiting:
            ConsentWork.objects.filter(customer_id__in=waiting).update(
                held_by="", held_until=now + timedelta(seconds=held_for)
            )
        ConsentWork.objects.filter(customer_id__in=[pk for pk, *_ in gone]).delete()
        # Refused for good, or out of tries.
        lost = set(failed_ids) | retry
        closed = [(pk, code, pk in lost) for pk, _, _, code in gone]
        failed = sum(1 for *_, bad in closed if bad)
        lane.pending -= len(gone)
        lane.urgent -= sum(1 for _, priority, _, _ in gone if priority == 0)
        lane.failed += failed
        lane.done += len(gone) - failed
        _operations_share(closed, lane=lane)
        if lane.pending <= 0 and gone:
            lane.pending = lane.urgent = 0
            lane.finished_at = now
            audit_record(
                actor=None,
                action="partner.consents_scheduled",
                partner=lane.partner,
                detail={"done": lane.done, "failed": lane.failed, "started_at": _iso(lane.started_at)},
            )
        lane.save()
    return lane


def _operations_share(closed: list[tuple[int, str, bool]], *, lane: ConsentLane) -> None:
    """Give each staff operation its customers among `closed` (customer, correlation id, failed): counted done, and
    failed where they failed; the share that completes an operation writes its outcome and one audit row. Work of no
    operation (a sync's, a sweep's) changes nothing."""
    shares: dict[str, list[int]] = {}
    for _, code, bad in closed:
        counts = shares.setdefault(code, [0, 0])
        counts[0] += 1
        counts[1] += int(bad)
    for code, (done, failed) in shares.items():
        finished = operation_share(code=code, done=done, failed=failed)
        if finished is not None:
            audit_record(
                actor=None,
                action="partner.consents_finished",
                partner=lane.partner,
                detail={"operation": code, "tried": finished.done, "failed": finished.failed},
            )


def consent_work_drop(*, partner_id: int) -> int:
    """Forget a partner's pending work (a partner no longer in the database, or being offboarded), each operation's
    customers among it counted failed: how many rows."""
    with transaction.atomic():
        codes = list(ConsentWork.objects.filter(partner_id=partner_id).values_list("correlation_id", flat=True))
        deleted, _ = ConsentWork.objects.filter(partner_id=partner_id).delete()
        ConsentLane.objects.filter(partner_id=partner_id).update(pending=0, urgent=0, finished_at=timezone.now())
        for code, count in Counter(codes).items():
            operation_share(code=code, done=count, failed=count)
    return deleted


def operation_work_add(*, partner_id: int, customer_ids: list[int], kind: str, operation: str) -> int:
    """Schedule a staff operation's customers (consent_work_add) under the operation's id: a customer already pending
    for no unfinished operation (a sync's, a sweep's work) becomes this one's, one pending for another unfinished
    operation stays that one's, so each customer's outcome is counted by one operation. Called in the transaction
    that records the operation, whose total it returns: how many customers carry its id."""
    wanted = set(customer_ids)
    with transaction.atomic():
        consent_work_add(partner_id=partner_id, customer_ids=customer_ids, kind=kind, correlation_id=operation)
        # The lane's lock, taken by the add, holds until the commit: none of these customers' batches closes meanwhile.
        pending = ConsentWork.objects.filter(partner_id=partner_id).values_list("customer_id", "correlation_id")
        codes = {pk: code for pk, code in pending if pk in wanted}
        running = _operations_running({code for code in codes.values() if code != operation})
        adopted = [pk for pk, code in codes.items() if code != operation and code not in running]
        for start in range(0, len(adopted), INSERT_BATCH):
            ConsentWork.objects.filter(customer_id__in=adopted[start : start + INSERT_BATCH]).update(
                correlation_id=operation
            )
    return sum(1 for code in codes.values() if code not in running)


def _operations_running(codes: set[str]) -> set[str]:
    """Those of the correlation ids `codes` that are unfinished operations' ids."""
    ids = []
    for code in codes:
        try:
            ids.append(uuid.UUID(code))
        except ValueError:
            continue
    found = Operation.objects.filter(code__in=ids, finished_at__isnull=True).values_list("code", flat=True)
    return {str(code) for code in found}


def consent_pullers_wanted() -> list[tuple[int, str]]:
    """Take the idle or lapsed puller slots, as many as the pending work fills: (slot, owner) for each, whose task
    the caller queues with `owner` as its id."""
    pullers = consent_pullers()
    pending = sum(ConsentLane.objects.filter(pending__gt=0).values_list("pending", flat=True))
    wanted = min(pullers, math.ceil(pending / consent_batch_size()))
    if not wanted:
        return []
    ConsentPuller.objects.bulk_create([ConsentPuller(slot=n) for n in range(pullers)], ignore_conflicts=True)
    now = timezone.now()
    wanted -= ConsentPuller.objects.filter(held_until__gte=now).count()
    taken: list[tuple[int, str]] = []
    for slot in range(pullers):
        if len(taken) >= wanted:
            break
        owner = str(uuid.uuid4())
        won = (
            ConsentPuller.objects.filter(slot=slot)
            .filter(Q(held_until__isnull=True) | Q(held_until__lt=now))
            .update(owner=owner, held_until=now + PULLER_LEASE)
        )
        if won:
            taken.append((slot, owner))
    return taken


def consent_puller_pass(*, slot: int, owner: str, found: bool) -> tuple[int, str, float]:
    """What follows the puller task `owner` in its slot: (the successor's slot, its id, its countdown in seconds), or
    (slot, "", 0) when the slot is freed (or no longer `owner`'s). After a batch (`found`) the slot goes straight on;
    a puller that found nothing frees its slot, then takes it again when work is claimable after all (recorded
    meanwhile, which saw the slot held and started none), or when work waits for a lapse or a retry time and no other
    puller runs. A slot beyond CPV_CONSENT_PULLERS (lowered since it started) is freed, its successor, if work calls
    for one, taking an idle slot within the count."""
    now = timezone.now()
    successor = str(uuid.uuid4())
    if slot >= consent_pullers():
        return _puller_slot_leave(slot=slot, owner=owner, found=found, now=now, successor=successor)
    if found:
        moved = ConsentPuller.objects.filter(slot=slot, owner=owner).update(
            owner=successor, held_until=now + PULLER_LEASE
        )
        return (slot, successor, 0.0) if moved else (slot, "", 0.0)
    ConsentPuller.objects.filter(slot=slot, owner=owner).update(owner="", held_until=None)
    countdown = _next_work_in(now)
    if countdown is None:
        return slot, "", 0.0
    taken = ConsentPuller.objects.filter(slot=slot, owner="").update(owner=successor, held_until=now + PULLER_LEASE)
    return (slot, successor, countdown) if taken else (slot, "", 0.0)


def _puller_slot_leave(*, slot: int, owner: str, found: bool, now: datetime, successor: str) -> tuple[int, str, float]:
    """Free a slot beyond CPV_CONSENT_PULLERS; when `owner` held it and work remains, its successor takes the first
    idle slot within the count (none idle: the busy ones carry the work on)."""
    if not ConsentPuller.objects.filter(slot=slot, owner=owner).update(owner="", held_until=None):
        return slot, "", 0.0
    countdown = 0.0 if found else _next_work_in(now)
    if countdown is None:
        return slot, "", 0.0
    idle = Q(held_until__isnull=True) | Q(held_until__lt=now)
    for free in range(consent_pullers()):
        if ConsentPuller.objects.filter(idle, slot=free).update(owner=successor, held_until=now + PULLER_LEASE):
            return free, successor, countdown
    return slot, "", 0.0


# The longest a puller waits for held or delayed work before it looks again.
IDLE_WAIT = 30.0


def _next_work_in(now: datetime) -> float | None:
    """Seconds until some pending work can be claimed (0: now), or None when there is none, or when another puller
    runs on and will find it."""
    if ConsentWork.objects.filter(Q(held_until__isnull=True) | Q(held_until__lt=now)).exists():
        return 0.0
    if ConsentPuller.objects.filter(held_until__gte=now).exists():
        return None
    earliest = ConsentWork.objects.aggregate(earliest=Min("held_until"))["earliest"]
    if earliest is None:
        return None
    return min(IDLE_WAIT, max(0.5, (earliest - now).total_seconds()))


def consent_puller_holds(*, slot: int, owner: str) -> bool:
    """Whether the task `owner` still holds its slot (a stale message, superseded, runs nothing)."""
    return ConsentPuller.objects.filter(slot=slot, owner=owner).exists()


def consent_progress(partner_ids: list[int]) -> dict[int, Progress]:
    """The partners' scheduled ApplicationConsent (only partners with work pending or finished), each pending
    partner's share of the limit being the limit over the partners with work pending: one query, and a count of
    the busy partners when one of them is."""
    lanes = list(ConsentLane.objects.filter(partner_id__in=partner_ids, started_at__isnull=False))
    busy = ConsentLane.objects.filter(pending__gt=0).count() if any(lane.pending for lane in lanes) else 0
    share = float(settings.CPV_PC_REQUESTS_PER_SECOND) / max(1, busy)
    return {
        lane.partner_id: Progress(lane.pending, lane.done, lane.failed, share, lane.started_at, lane.finished_at)
        for lane in lanes
    }


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""

"""Celery tasks that keep every partner's refresh token alive: thin callers of tokens/renewal.py, taking ids,
never tokens. Their names keep the `consent.` prefix they were first published under (queued messages and the
beat schedule name them).

Renewal re-checks under the row lock whether the token is still due, so its tasks are idempotent.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.cache import cache

from cpv.task_kit import DATABASE_LOST, IDEMPOTENT, MAX_TASK_RETRIES, cut_off, queue_follow_up, same_queue
from microsoft.retrying import backoff_delay
from tokens import alerts, pointers, renewal, sweep
from tokens.outcomes import RenewalOutcome, RenewalResult, RenewalRetry

logger = logging.getLogger(__name__)


@shared_task(name="consent.tokens_renew_sweep", bind=True, ignore_result=True, max_retries=MAX_TASK_RETRIES)
def tokens_renew_sweep(self: Task, spread: float | None = None) -> int:
    """Queue the renewal of every partner whose token is due, in batches spread over the hour (a duplicate run
    queues none)."""
    try:
        result = sweep.renewal_sweep()
    except DATABASE_LOST as exc:
        # The claims are one transaction: a sweep cut off claimed nobody, so running it again loses no partner.
        logger.warning("renewal sweep: the database failed (%s); trying again", exc.__class__.__name__)
        raise self.retry(exc=exc, countdown=backoff_delay(attempt=self.request.retries + 1)) from None
    moments = [
        (partner_id, countdown if spread is None else sweep.spread_countdown(partner_id, window=spread))
        for partner_id, countdown in result.queued
    ]
    batches = sweep.renewal_batches(moments)
    for countdown, partner_ids in batches:
        tokens_renew_batch.apply_async(kwargs={"partner_ids": partner_ids}, countdown=countdown, **same_queue(self))
    logger.info("renewal sweep queued %d partner(s) in %d batch(es), disabled %d previous version(s)",
                len(result.queued), len(batches), result.previous_disabled)  # fmt: skip
    try:
        alerts.alerts_evaluate()
    except DATABASE_LOST as exc:
        # The renewals are queued; the next sweep counts the conditions again.
        logger.warning("renewal sweep: could not evaluate the operator alerts: %s", exc.__class__.__name__)
    return len(result.queued)


class BegunNote:
    """The partners whose renewal a run of a batch has begun (with those an earlier run had, carried in its message
    or read from its note), kept in the cache too. The cache (Redis in production) is where the rollback of the
    run's transaction does not reach: should its worker die with partners redeemed and nothing committed, the run
    that gets the message back reads the note and tells each of them that an earlier attempt stopped. Where the
    cache is the database or this process's memory, the note is lost with the run, and the first partner still due
    is the one told. A cache that fails costs the note, never the renewal."""

    def __init__(self, run_id: str, *, carried: list[int]) -> None:
        self._key = f"cpv:renewal-batch:{run_id}:begun"
        self.partner_ids = list(dict.fromkeys(carried))

    def read(self) -> None:
        """Add the partners a stopped run of the same message noted."""
        try:
            noted = cache.get(self._key)
        except Exception as exc:  # noqa: BLE001 - whatever the cache raised, the batch goes on without the note
            logger.warning("renewal batch: could not read the note of a stopped run: %s", exc.__class__.__name__)
            return
        if isinstance(noted, list):
            self.partner_ids = list(dict.fromkeys([*self.partner_ids, *(int(p) for p in noted)]))

    def add(self, partner_id: int) -> None:
        """Note a partner before its renewal begins. The note outlives the visibility timeout, after which the
        broker hands back the message of a worker that died."""
        if partner_id not in self.partner_ids:
            self.partner_ids.append(partner_id)
        try:
            cache.set(self._key, self.partner_ids, timeout=2 * settings.CPV_VISIBILITY_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - whatever the cache raised, the renewal goes on
            logger.warning("renewal batch: could not note partner %s: %s", partner_id, exc.__class__.__name__)

    def forget(self) -> None:
        try:
            cache.delete(self._key)
        except Exception as exc:  # noqa: BLE001 - the note expires on its own
            logger.warning("renewal batch: could not remove its note: %s", exc.__class__.__name__)


# The share of the soft time limit a batch may run before it hands the partners it has not reached to a new
# message (each renewal is bounded by its HTTP timeouts, so a slow Microsoft cannot stretch a batch past it).
BATCH_TIME_SHARE = 0.5


@shared_task(name="consent.tokens_renew_batch", bind=True, ignore_result=True, max_retries=None, **IDEMPOTENT)
def tokens_renew_batch(
    self: Task, partner_ids: list[int], attempt: int = 1, interrupted: str = "", begun: list[int] | None = None
) -> dict[str, int]:
    """Renew a batch of partners, each only if still due, in transactions of many (renewal.renew_batch:
    one lock query and one commit for up to BATCH_LOCK_SECONDS of renewals).

    A partner's transient failure goes on as its own `token_renew` retry; the batch carries on. When the
    database fails, the batch comes back with the partners not yet committed. An unexpected failure rolls its
    transaction back and the batch renews the rest one at a time, each in its own transaction. `interrupted`
    (or a message the broker handed back) is recorded against each partner still due whose renewal a stopped
    run had begun, which may have redeemed its token: those of `begun`, and those the run noted (BegunNote).
    When none are known, it is recorded against the first partner still due. Returns the count of each outcome.
    """
    note = BegunNote(self.request.id or "", carried=begun or [])
    if (self.request.delivery_info or {}).get("redelivered"):
        interrupted = interrupted or "its worker stopped before finishing"
        note.read()
    begun_before = set(note.partner_ids) if interrupted and note.partner_ids else None
    budget = settings.CELERY_TASK_SOFT_TIME_LIMIT * BATCH_TIME_SHARE
    started = time.monotonic()
    tally = BatchTally()
    try:
        _renew_each(self, partner_ids, attempt=attempt, interrupted=interrupted, begun_before=begun_before,
                    note=note, tally=tally, deadline=started + budget)  # fmt: skip
    finally:
        # A run that stops here (done, or its partners handed on with what it began) needs no note. One whose
        # worker dies never gets here: its note is what the next delivery reads.
        note.forget()
        tally.flags_record()
    logger.info("renewal batch of %d partner(s): %s", len(partner_ids),
                ", ".join(f"{n} {outcome}" for outcome, n in sorted(tally.outcomes.items())))  # fmt: skip
    return dict(tally.outcomes)


@dataclass
class BatchTally:
    """What one run of a batch message has done so far: the count of each outcome, and the rows whose old version
    it disabled, flagged in one write when the run stops (done, handed on, or retried), not one per renewal."""

    outcomes: Counter[str] = field(default_factory=Counter)
    flags: list[tuple[int, str]] = field(default_factory=list)

    def flag(self, disabled: tuple[int, str] | None) -> None:
        if disabled is not None:
            self.flags.append(disabled)

    def flags_record(self) -> None:
        try:
            pointers.previous_disabled_record(self.flags)
        except DATABASE_LOST as exc:
            # The versions are disabled in the vault; the sweep disables them again (harmlessly) and flags them.
            logger.warning("renewal batch: could not flag %d disabled version(s): %s", len(self.flags),
                           exc.__class__.__name__)  # fmt: skip


def _renew_each(
    task: Task,
    partner_ids: list[int],
    *,
    attempt: int,
    interrupted: str,
    begun_before: set[int] | None,
    note: BegunNote,
    tally: BatchTally,
    deadline: float,
) -> None:
    """Renew the partners in transactions of many (renewal.renew_batch); after an unexpected failure
    of one of those, the rest one at a time, so that one partner's failure does not stop the others. Each
    partner is noted before its renewal begins. `interrupted` is said to the partners of `begun_before` still
    due, or when that is None to the first still due."""
    index = 0
    alone = False
    while index < len(partner_ids):
        rest = partner_ids[index:]
        if index and time.monotonic() > deadline:
            if _hand_on(task, rest, tally.outcomes):
                logger.info("renewal batch: %d partner(s) handed to a new batch for time", len(rest))
                return
            deadline = float("inf")  # the broker cannot take them: this batch renews them after all
        committed: list[tuple[Any, Any]] = []
        try:
            if alone:
                note.add(rest[0])
                says = interrupted if begun_before is None or rest[0] in begun_before else ""
                results = [_renew_alone(rest[0], interrupted=says)]
                tally.flag(results[0].disabled_previous)
            else:
                batch = renewal.renew_batch(partner_ids=rest, interrupted=interrupted, cut_off=begun_before,
                                            on_begin=note.add)  # fmt: skip
                results, committed = batch.results, batch.renewed
        except DATABASE_LOST as exc:
            if attempt >= settings.CPV_RENEWAL_MAX_ATTEMPTS:
                logger.exception(
                    "renewal batch: the database failed %d times; the next sweep tries %d partner(s) again",
                    attempt,
                    len(rest),
                )
                tally.outcomes[RenewalOutcome.FAILED] += len(rest)
                return
            reason = f"the database connection failed: {exc.__class__.__name__}"
            logger.warning("renewal batch: %s; trying %d partner(s) again", reason, len(rest))
            raise task.retry(
                kwargs={"partner_ids": rest, "attempt": attempt + 1, "interrupted": reason, "begun": note.partner_ids},
                countdown=backoff_delay(attempt=attempt),
            ) from None
        except SoftTimeLimitExceeded:
            # The renewals in progress rolled back; they and the rest go on in a new batch.
            if _hand_on(task, rest, tally.outcomes, interrupted="its batch ran out of time", begun=note.partner_ids):
                return
            # The broker cannot take them: carry on here, from the same partner. Should the hard time limit
            # stop this process, the message is handed back (reject_on_worker_lost) and the batch runs again.
            deadline = float("inf")
            continue
        except Exception:
            if not alone:
                # Everything it did rolled back (the versions it wrote are left to reconciliation).
                logger.exception("renewal batch: a transaction of %d partner(s) failed; renewing them one at a time",
                                 len(rest))  # fmt: skip
                alone = True
                continue
            # One partner's unexpected failure (its transaction rolled back) does not stop the others.
            logger.exception("renewal of partner %s failed unexpectedly; the batch goes on", rest[0])
            results = [RenewalResult(rest[0], RenewalOutcome.FAILED, "an unexpected error; see the worker's log")]
        for result in results:
            outcome: str = result.outcome
            if outcome == RenewalOutcome.RETRY:
                # Unqueued, the partner waits for a sweep after QUEUE_HOLD; its failure is recorded either way.
                queued = queue_follow_up(
                    token_renew, task, {"partner_id": result.partner_id, "attempt": 2}, countdown=result.retry_after
                )
                outcome = RenewalOutcome.RETRY if queued else "retry_not_queued"
            if begun_before is None and outcome not in (RenewalOutcome.NOT_DUE, RenewalOutcome.BUSY):
                interrupted = ""  # this partner was the one in progress (or none was): the rest start afresh
            tally.outcomes[outcome] += 1
        index += len(results)
        # Committed and counted: what follows cannot undo them.
        try:
            for pointer, redemption in committed:
                tally.flag(_finish(pointer, redemption))
        except SoftTimeLimitExceeded:
            if index < len(partner_ids) and _hand_on(task, partner_ids[index:], tally.outcomes):
                return
            deadline = float("inf")


def _finish(pointer: Any, redemption: Any) -> tuple[int, str] | None:
    """After a commit, one renewal's clean-up on its own: one that fails (the vault, the database) leaves its old
    version for the sweep to disable and does not stop the others'. Returns the flag to write (or None)."""
    try:
        return renewal.batch_renewal_finish(pointer, redemption)
    except SoftTimeLimitExceeded:
        raise
    except Exception:
        logger.exception("renewal of partner %s: the clean-up after the commit failed; the sweep retries it",
                         pointer.partner_id)  # fmt: skip
        return None


def _hand_on(
    task: Task, rest: list[int], outcomes: Counter[str], *, interrupted: str = "", begun: list[int] | None = None
) -> bool:
    """Queue the partners a batch has not renewed as a new batch (with why it stopped and the partners it had
    begun, when it was cut off); False (nothing counted) if the broker refuses."""
    kwargs: dict[str, Any] = {"partner_ids": rest}
    if interrupted:
        kwargs.update(interrupted=interrupted, begun=begun or [])
    if not queue_follow_up(tokens_renew_batch, task, kwargs):
        return False
    outcomes["handed_on"] += len(rest)
    return True


def _renew_alone(partner_id: int, *, interrupted: str) -> RenewalResult:
    """One partner in its own transaction; a transient failure is the outcome `retry`, as in a batch. The flag of
    the old version it disabled is the result's `disabled_previous`."""
    try:
        return renewal.renew_one(partner_id=partner_id, interrupted=interrupted, flag_later=True)
    except RenewalRetry as retry:
        return RenewalResult(partner_id, RenewalOutcome.RETRY, str(retry), retry_after=retry.delay)


@shared_task(name="consent.token_renew", bind=True, max_retries=None, **IDEMPOTENT)
def token_renew(
    self: Task, partner_id: int, attempt: int = 1, force: bool = False, interrupted: str = ""
) -> dict[str, Any]:
    """Renew one partner's token if due; transient failures come back after a backoff, a bounded number
    of times (CPV_RENEWAL_MAX_ATTEMPTS). A run cut off without a trace (its worker killed, the database
    gone) says so to the next one, which records it where staff can see it."""
    if not interrupted and (self.request.delivery_info or {}).get("redelivered"):
        # The broker handed this message back: the worker that had it stopped before acknowledging it.
        interrupted = "its worker stopped before finishing"
    try:
        result = renewal.renew_one(partner_id=partner_id, force=force, attempt=attempt, interrupted=interrupted)
    except RenewalRetry as retry:
        raise self.retry(
            kwargs={"partner_id": partner_id, "attempt": attempt + 1, "force": force}, countdown=retry.delay
        ) from None
    except (SoftTimeLimitExceeded, *DATABASE_LOST) as exc:
        # Its transaction rolled back, and nothing could be recorded if the database is what failed: the next
        # attempt records why this one stopped. Acknowledged now, the renewal would wait for a sweep.
        reason = cut_off(exc)
        if attempt >= settings.CPV_RENEWAL_MAX_ATTEMPTS:
            logger.exception("renewal of partner %s: stopped %d times (%s); the next sweep tries again",
                         partner_id, attempt, reason)  # fmt: skip
            return {"partner_id": partner_id, "outcome": RenewalOutcome.FAILED}
        logger.warning("renewal of partner %s: %s; trying again", partner_id, reason)
        raise self.retry(
            kwargs={"partner_id": partner_id, "attempt": attempt + 1, "force": force, "interrupted": reason},
            countdown=backoff_delay(attempt=attempt),
        ) from None
    return {"partner_id": partner_id, "outcome": result.outcome}

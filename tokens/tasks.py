"""Celery tasks that keep every partner's refresh token alive: thin, idempotent callers of tokens/renewal.py.
Their names keep the `consent.` prefix queued messages and the beat schedule know them by."""

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
from partners.operations import operation_share
from tokens import alerts, pointers, renewal, sweep
from tokens.outcomes import RenewalOutcome, RenewalResult, RenewalRetry

logger = logging.getLogger(__name__)


@shared_task(name="consent.tokens_renew_sweep", bind=True, ignore_result=True, max_retries=MAX_TASK_RETRIES)
def tokens_renew_sweep(self: Task, spread: float | None = None) -> int:
    """Queue the due partners' renewals (as many as the vault can write before the next sweep) in batches spread
    evenly over the hour; returns how many it queued."""
    try:
        result = sweep.renewal_sweep()
    except DATABASE_LOST as exc:
        # The claims are one transaction: a sweep cut off claimed nobody, so running it again loses no partner.
        logger.warning("renewal sweep: the database failed (%s); trying again", exc.__class__.__name__)
        raise self.retry(exc=exc, countdown=backoff_delay(attempt=self.request.retries + 1)) from None
    moments = result.queued if spread is None else sweep.spread_evenly([p for p, _ in result.queued], window=spread)
    batches = sweep.renewal_batches(moments)
    for countdown, partner_ids in batches:
        tokens_renew_batch.apply_async(kwargs={"partner_ids": partner_ids}, countdown=countdown, **same_queue(self))
    logger.info(
        "renewal sweep queued %d partner(s) in %d batch(es), disabled %d previous version(s)",
        len(result.queued),
        len(batches),
        result.previous_disabled,
    )
    try:
        alerts.alerts_evaluate()
    except DATABASE_LOST as exc:
        # The renewals are queued; the next sweep counts the conditions again.
        logger.warning("renewal sweep: could not evaluate the operator alerts: %s", exc.__class__.__name__)
    return len(result.queued)


class BegunNote:
    """The partners a batch run has begun, kept in the cache where its transaction's rollback does not reach, so the
    run that gets the message back can tell them (without a shared cache, the first still due is told). A failing
    cache costs the note, never the renewal."""

    def __init__(self, run_id: str, *, carried: list[int]) -> None:
        self._key = f"cpv:renewal-batch:{run_id}:begun"
        self.partner_ids = list(dict.fromkeys(carried))

    def read(self) -> None:
        try:
            noted = cache.get(self._key)
        except Exception as exc:  # noqa: BLE001 - whatever the cache raised, the batch goes on without the note
            logger.warning("renewal batch: could not read the note of a stopped run: %s", exc.__class__.__name__)
            return
        if isinstance(noted, list):
            self.partner_ids = list(dict.fromkeys([*self.partner_ids, *(int(p) for p in noted)]))

    def add(self, partner_id: int) -> None:
        """Note a partner before its renewal begins, for longer than the visibility timeout."""
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
    """Renew a batch of partners, each only if still due, in transactions of many; returns the count of each outcome.
    A partner's transient failure becomes its own `token_renew`; the database failing hands the rest on."""
    note = BegunNote(self.request.id or "", carried=begun or [])
    if (self.request.delivery_info or {}).get("redelivered"):
        interrupted = interrupted or "its worker stopped before finishing"
        note.read()
    begun_before = set(note.partner_ids) if interrupted and note.partner_ids else None
    budget = settings.CELERY_TASK_SOFT_TIME_LIMIT * BATCH_TIME_SHARE
    started = time.monotonic()
    tally = BatchTally()
    try:
        _renew_each(
            self,
            partner_ids,
            attempt=attempt,
            interrupted=interrupted,
            begun_before=begun_before,
            note=note,
            tally=tally,
            deadline=started + budget,
        )
    finally:
        # A run that stops here (done, or its partners handed on with what it began) needs no note. One whose
        # worker dies never gets here: its note is what the next delivery reads.
        note.forget()
        tally.flags_record()
    logger.info(
        "renewal batch of %d partner(s): %s",
        len(partner_ids),
        ", ".join(f"{n} {outcome}" for outcome, n in sorted(tally.outcomes.items())),
    )
    return dict(tally.outcomes)


@dataclass
class BatchTally:
    """A batch run's outcome counts, and the disabled-version flags it writes in one go when it stops."""

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
            logger.warning(
                "renewal batch: could not flag %d disabled version(s): %s", len(self.flags), exc.__class__.__name__
            )


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
    """Renew the partners in transactions of many, then, after an unexpected failure, one at a time."""
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
                batch = renewal.renew_batch(
                    partner_ids=rest, interrupted=interrupted, cut_off=begun_before, on_begin=note.add
                )
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
                logger.exception(
                    "renewal batch: a transaction of %d partner(s) failed; renewing them one at a time", len(rest)
                )
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
    """One renewal's post-commit clean-up on its own (a failure is logged and left to the sweep): the flag, or None."""
    try:
        return renewal.batch_renewal_finish(pointer, redemption)
    except SoftTimeLimitExceeded:
        raise
    except Exception:
        logger.exception(
            "renewal of partner %s: the clean-up after the commit failed; the sweep retries it", pointer.partner_id
        )
        return None


def _hand_on(
    task: Task, rest: list[int], outcomes: Counter[str], *, interrupted: str = "", begun: list[int] | None = None
) -> bool:
    """Queue the partners not yet renewed as a new batch; False if the broker refuses."""
    kwargs: dict[str, Any] = {"partner_ids": rest}
    if interrupted:
        kwargs.update(interrupted=interrupted, begun=begun or [])
    if not queue_follow_up(tokens_renew_batch, task, kwargs):
        return False
    outcomes["handed_on"] += len(rest)
    return True


def _renew_alone(partner_id: int, *, interrupted: str) -> RenewalResult:
    """One partner in its own transaction; a transient failure is the outcome `retry`, as in a batch."""
    try:
        return renewal.renew_one(partner_id=partner_id, interrupted=interrupted, flag_later=True)
    except RenewalRetry as retry:
        return RenewalResult(partner_id, RenewalOutcome.RETRY, str(retry), retry_after=retry.delay)


@shared_task(name="consent.token_renew", bind=True, max_retries=None, **IDEMPOTENT)
def token_renew(
    self: Task, partner_id: int, attempt: int = 1, force: bool = False, interrupted: str = "", operation: str = ""
) -> dict[str, Any]:
    """Renew one partner's token if due, retrying transient failures with backoff up to CPV_RENEWAL_MAX_ATTEMPTS; a
    staff `operation` gets its outcome once it is final."""
    if not interrupted and (self.request.delivery_info or {}).get("redelivered"):
        # The broker handed this message back: the worker that had it stopped before acknowledging it.
        interrupted = "its worker stopped before finishing"
    try:
        result = renewal.renew_one(partner_id=partner_id, force=force, attempt=attempt, interrupted=interrupted)
    except RenewalRetry as retry:
        raise self.retry(
            kwargs={"partner_id": partner_id, "attempt": attempt + 1, "force": force, "operation": operation},
            countdown=retry.delay,
        ) from None
    except (SoftTimeLimitExceeded, *DATABASE_LOST) as exc:
        # Its transaction rolled back, and nothing could be recorded if the database is what failed: the next
        # attempt records why this one stopped. Acknowledged now, the renewal would wait for a sweep.
        reason = cut_off(exc)
        if attempt >= settings.CPV_RENEWAL_MAX_ATTEMPTS:
            logger.exception(
                "renewal of partner %s: stopped %d times (%s); the next sweep tries again", partner_id, attempt, reason
            )
            outcome = RenewalOutcome.FAILED
            operation_share(code=operation, done=1, failed=1, message=outcome.in_words)
            return {"partner_id": partner_id, "outcome": outcome}
        logger.warning("renewal of partner %s: %s; trying again", partner_id, reason)
        raise self.retry(
            kwargs={
                "partner_id": partner_id,
                "attempt": attempt + 1,
                "force": force,
                "interrupted": reason,
                "operation": operation,
            },
            countdown=backoff_delay(attempt=attempt),
        ) from None
    outcome = RenewalOutcome(result.outcome)
    operation_share(code=operation, done=1, failed=0 if outcome.ok else 1, message=outcome.in_words)
    return {"partner_id": partner_id, "outcome": result.outcome}

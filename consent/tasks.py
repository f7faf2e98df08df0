"""Celery tasks of the consent app: thin callers of services, taking ids, never tokens.

Only idempotent tasks use `acks_late` with `reject_on_worker_lost` (a worker killed mid-task hands the
message back): renewal re-checks under the row lock whether the token is still due, customer sync is an
upsert, and ApplicationConsent treats an existing consent as success. Retries are bounded, with backoff,
jitter and Retry-After (microsoft/retrying.py), and no countdown exceeds half the visibility timeout.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from typing import Any

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction

from consent import customers, renewal, services
from microsoft.retrying import backoff_delay
from partners.models import Customer, Partner

logger = logging.getLogger(__name__)

IDEMPOTENT: dict[str, Any] = {"acks_late": True, "reject_on_worker_lost": True}
MAX_TASK_RETRIES = 5


def _same_queue(task: Task) -> dict[str, Any]:
    """Follow-up work goes to the queue its parent came from, so a dedicated queue keeps its whole run."""
    queue = (task.request.delivery_info or {}).get("routing_key")
    return {"queue": queue} if queue else {}


@shared_task(name="consent.flows_expire", ignore_result=True)
def flows_expire() -> int:
    """Mark consent flows that never came back from Microsoft as expired (harmless if run twice)."""
    return services.consent_flows_expire()


# The database went away (a restart, a failover, a dropped connection): worth trying again shortly.
DATABASE_LOST = (OperationalError, InterfaceError)


@shared_task(name="consent.tokens_renew_sweep", bind=True, ignore_result=True, max_retries=MAX_TASK_RETRIES)
def tokens_renew_sweep(self: Task, spread: float | None = None) -> int:
    """Queue the renewal of every partner whose token is due, in batches spread over the hour (a duplicate run
    queues none)."""
    try:
        result = renewal.renewal_sweep()
    except DATABASE_LOST as exc:
        # The claims are one transaction: a sweep cut off claimed nobody, so running it again loses no partner.
        logger.warning("renewal sweep: the database failed (%s); trying again", exc.__class__.__name__)
        raise self.retry(exc=exc, countdown=backoff_delay(attempt=self.request.retries + 1)) from None
    moments = [
        (partner_id, countdown if spread is None else renewal.spread_countdown(partner_id, window=spread))
        for partner_id, countdown in result.queued
    ]
    batches = renewal.renewal_batches(moments)
    for countdown, partner_ids in batches:
        tokens_renew_batch.apply_async(kwargs={"partner_ids": partner_ids}, countdown=countdown, **_same_queue(self))
    logger.info("renewal sweep queued %d partner(s) in %d batch(es), disabled %d previous version(s)",
                len(result.queued), len(batches), result.previous_disabled)  # fmt: skip
    return len(result.queued)


# The share of the soft time limit a batch may run before it hands the partners it has not reached to a new
# message (each renewal is bounded by its HTTP timeouts, so a slow Microsoft cannot stretch a batch past it).
BATCH_TIME_SHARE = 0.5


@shared_task(name="consent.tokens_renew_batch", bind=True, ignore_result=True, max_retries=None, **IDEMPOTENT)
def tokens_renew_batch(self: Task, partner_ids: list[int], attempt: int = 1, interrupted: str = "") -> dict[str, int]:
    """Renew a batch of partners, each only if still due, in transactions of many (renewal.partners_token_renew:
    one lock query and one commit for up to BATCH_LOCK_SECONDS of renewals).

    A partner's transient failure goes on as its own `token_renew` retry; the batch carries on. When the
    database fails, the batch comes back with the partners not yet committed. An unexpected failure rolls its
    transaction back and the batch renews the rest one at a time, each in its own transaction. `interrupted`
    (or a message the broker handed back) is recorded against the first partner still due: the first of the
    transaction a stopped run was in. Returns the count of each outcome.
    """
    if not interrupted and (self.request.delivery_info or {}).get("redelivered"):
        interrupted = "its worker stopped before finishing"
    budget = settings.CELERY_TASK_SOFT_TIME_LIMIT * BATCH_TIME_SHARE
    started = time.monotonic()
    outcomes: Counter[str] = Counter()
    # The rows whose old version the batch disabled: flagged in one write at the end, not one per renewal.
    flags: list[tuple[int, str]] = []
    try:
        _renew_each(self, partner_ids, attempt=attempt, interrupted=interrupted, flags=flags, outcomes=outcomes,
                    deadline=started + budget)  # fmt: skip
    finally:
        _flags_record(flags)
    logger.info("renewal batch of %d partner(s): %s", len(partner_ids),
                ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items())))  # fmt: skip
    return dict(outcomes)


def _flags_record(flags: list[tuple[int, str]]) -> None:
    try:
        services.previous_disabled_record(flags)
    except DATABASE_LOST as exc:
        # The versions are disabled in the vault; the sweep disables them again (harmlessly) and flags them.
        logger.warning("renewal batch: could not flag %d disabled version(s): %s", len(flags), exc.__class__.__name__)


def _queue(target: Task, parent: Task, kwargs: dict[str, Any], *, countdown: float | None = None) -> bool:
    """Publish follow-up work to the parent's queue. Returns False (and logs) when the broker cannot take it."""
    options = {**_same_queue(parent), **({"countdown": countdown} if countdown is not None else {})}
    try:
        target.apply_async(kwargs=kwargs, **options)
    except Exception as exc:  # noqa: BLE001 - whatever the broker raised, the caller carries on without it
        logger.warning("could not queue %s: %s", target.name, exc.__class__.__name__)
        return False
    return True


def _renew_each(
    task: Task,
    partner_ids: list[int],
    *,
    attempt: int,
    interrupted: str,
    flags: list[tuple[int, str]],
    outcomes: Counter[str],
    deadline: float,
) -> None:
    """Renew the partners in transactions of many (renewal.partners_token_renew); after an unexpected failure
    of one of those, the rest one at a time, so that one partner's failure does not stop the others."""
    index = 0
    alone = False
    while index < len(partner_ids):
        rest = partner_ids[index:]
        if index and time.monotonic() > deadline:
            if _hand_on(task, rest, outcomes):
                logger.info("renewal batch: %d partner(s) handed to a new batch for time", len(rest))
                return
            deadline = float("inf")  # the broker cannot take them: this batch renews them after all
        committed: list[tuple[Any, Any]] = []
        try:
            if alone:
                results = [_renew_alone(rest[0], interrupted=interrupted, flags=flags)]
            else:
                batch = renewal.partners_token_renew(partner_ids=rest, interrupted=interrupted)
                results, committed = batch.results, batch.renewed
        except DATABASE_LOST as exc:
            if attempt >= settings.CPV_RENEWAL_MAX_ATTEMPTS:
                logger.exception(
                    "renewal batch: the database failed %d times; the next sweep tries %d partner(s) again",
                    attempt,
                    len(rest),
                )
                outcomes["failed"] += len(rest)
                return
            reason = f"the database connection failed: {exc.__class__.__name__}"
            logger.warning("renewal batch: %s; trying %d partner(s) again", reason, len(rest))
            raise task.retry(
                kwargs={"partner_ids": rest, "attempt": attempt + 1, "interrupted": reason},
                countdown=backoff_delay(attempt=attempt),
            ) from None
        except SoftTimeLimitExceeded:
            # The renewals in progress rolled back; they and the rest go on in a new batch.
            if _hand_on(task, rest, outcomes, interrupted="its batch ran out of time"):
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
            results = [renewal.RenewalResult(rest[0], "error")]
        for result in results:
            outcome = result.outcome
            if outcome == "retry":
                # Unqueued, the partner waits for a sweep after QUEUE_HOLD; its failure is recorded either way.
                queued = _queue(
                    token_renew, task, {"partner_id": result.partner_id, "attempt": 2}, countdown=result.retry_after
                )
                outcome = "retry" if queued else "retry_not_queued"
            if outcome not in {"not_due", "busy"}:
                interrupted = ""  # this partner was the one in progress (or none was): the rest start afresh
            outcomes[outcome] += 1
        index += len(results)
        # Committed and counted: what follows cannot undo them.
        try:
            _finish(committed, flags=flags)
        except SoftTimeLimitExceeded:
            if index < len(partner_ids) and _hand_on(task, partner_ids[index:], outcomes):
                return
            deadline = float("inf")


def _finish(committed: list[tuple[Any, Any]], *, flags: list[tuple[int, str]]) -> None:
    """After a commit, each renewal's clean-up on its own: one that fails (the vault, the database) leaves its old
    version for the sweep to disable and does not stop the others'."""
    for pointer, redemption in committed:
        try:
            renewal.renewal_finish(pointer, redemption, flags=flags)
        except SoftTimeLimitExceeded:
            raise
        except Exception:
            logger.exception("renewal of partner %s: the clean-up after the commit failed; the sweep retries it",
                             pointer.partner_id)  # fmt: skip


def _hand_on(task: Task, rest: list[int], outcomes: Counter[str], *, interrupted: str = "") -> bool:
    """Queue the partners a batch has not renewed as a new batch; False (nothing counted) if the broker refuses."""
    kwargs: dict[str, Any] = {"partner_ids": rest, **({"interrupted": interrupted} if interrupted else {})}
    if not _queue(tokens_renew_batch, task, kwargs):
        return False
    outcomes["handed_on"] += len(rest)
    return True


def _renew_alone(partner_id: int, *, interrupted: str, flags: list[tuple[int, str]]) -> renewal.RenewalResult:
    """One partner in its own transaction; a transient failure is the outcome `retry`, as in a batch."""
    try:
        return renewal.partner_token_renew(partner_id=partner_id, interrupted=interrupted, flags=flags)
    except renewal.RenewalRetry as retry:
        return renewal.RenewalResult(partner_id, "retry", str(retry), retry_after=retry.delay)


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
        result = renewal.partner_token_renew(
            partner_id=partner_id, force=force, attempt=attempt, interrupted=interrupted
        )
    except renewal.RenewalRetry as retry:
        raise self.retry(
            kwargs={"partner_id": partner_id, "attempt": attempt + 1, "force": force}, countdown=retry.delay
        ) from None
    except (SoftTimeLimitExceeded, *DATABASE_LOST) as exc:
        # Its transaction rolled back, and nothing could be recorded if the database is what failed: the next
        # attempt records why this one stopped. Acknowledged now, the renewal would wait for a sweep.
        reason = _cut_off(exc)
        if attempt >= settings.CPV_RENEWAL_MAX_ATTEMPTS:
            logger.exception("renewal of partner %s: stopped %d times (%s); the next sweep tries again",
                         partner_id, attempt, reason)  # fmt: skip
            return {"partner_id": partner_id, "outcome": "failed"}
        logger.warning("renewal of partner %s: %s; trying again", partner_id, reason)
        raise self.retry(
            kwargs={"partner_id": partner_id, "attempt": attempt + 1, "force": force, "interrupted": reason},
            countdown=backoff_delay(attempt=attempt),
        ) from None
    return {"partner_id": partner_id, "outcome": result.outcome}


@shared_task(name="consent.customers_sync", bind=True, max_retries=MAX_TASK_RETRIES, **IDEMPOTENT)
def customers_sync(self: Task, partner_id: int, correlation_id: str = "", apply: bool = True) -> dict[str, Any]:
    """Sync one partner's customers, then queue ApplicationConsent for each customer that needs it."""
    correlation_id = correlation_id or str(uuid.uuid4())
    # A retry goes on with the same MS-CorrelationId.
    retry_kwargs = {"partner_id": partner_id, "correlation_id": correlation_id, "apply": apply}
    try:
        result = customers.customers_sync(partner_id=partner_id, correlation_id=correlation_id)
        queued = 0
        if apply:
            queued = application_consents_queue(
                partner_id=partner_id, correlation_id=correlation_id, **_same_queue(self)
            )
    except Partner.DoesNotExist:
        # Partners are never deleted: a message queued against another database (one reset since, or a broker
        # folder shared with a test run) has nothing to sync here.
        logger.warning("customer sync of partner %s: no such partner in the database; nothing to do", partner_id)
        return {"partner_id": partner_id, "outcome": "gone"}
    except customers.CallFailed as exc:
        if not exc.transient:
            logger.warning("customer sync of partner %s failed: %s", partner_id, exc)
            return {"partner_id": partner_id, "outcome": "failed"}
        countdown = backoff_delay(attempt=self.request.retries + 1, retry_after=exc.retry_after)
        raise self.retry(kwargs=retry_kwargs, countdown=countdown) from None
    except (SoftTimeLimitExceeded, *DATABASE_LOST) as exc:
        # The sync is an upsert and the ApplicationConsents it queues claim their customers: both run again.
        logger.warning("customer sync of partner %s: %s; trying again", partner_id, _cut_off(exc))
        raise self.retry(kwargs=retry_kwargs, countdown=backoff_delay(attempt=self.request.retries + 1)) from None
    return {"partner_id": partner_id, "outcome": "synced", "customers": result.listed, "queued": queued}


def application_consents_queue(*, partner_id: int, correlation_id: str, queue: str | None = None) -> int:
    """Queue one ApplicationConsent task per customer of the partner that needs one; returns how many."""
    ids = customers.customers_needing_consent(partner_id=partner_id)
    options = {"queue": queue} if queue else {}
    for customer_id in ids:
        application_consent_apply.apply_async(
            kwargs={"customer_id": customer_id, "correlation_id": correlation_id}, **options
        )
    return len(ids)


@shared_task(name="consent.application_consent_apply", bind=True, max_retries=MAX_TASK_RETRIES, **IDEMPOTENT)
def application_consent_apply(self: Task, customer_id: int, correlation_id: str = "") -> dict[str, Any]:
    """ApplicationConsent in one customer tenant (idempotent: an existing consent is success).

    The task's id owns the customer's claim: a retry, or the message handed back after its worker died, takes
    over the claim an earlier run of it left, and sends the same MS-RequestId.
    """
    try:
        state = customers.customer_consent_apply(
            customer_id=customer_id, correlation_id=correlation_id or None, owner=self.request.id or ""
        )
    except Customer.DoesNotExist:
        # As above: a message queued against another database.
        logger.warning("ApplicationConsent for customer %s: no such customer in the database; nothing to do",
                       customer_id)  # fmt: skip
        return {"customer_id": customer_id, "status": "gone"}
    except customers.CallFailed as exc:
        countdown = backoff_delay(attempt=self.request.retries + 1, retry_after=exc.retry_after)
        raise self.retry(countdown=countdown) from None
    except (SoftTimeLimitExceeded, *DATABASE_LOST) as exc:
        # Cut off, perhaps holding the customer's claim after Partner Center created the consent: acknowledged
        # now, the customer would wait for the claim to lapse and the daily sweep. The retry (the same task id)
        # takes its claim over and sends the same MS-RequestId, which Partner Center answers as the call it saw.
        logger.warning("ApplicationConsent for customer %s: %s; trying again", customer_id, _cut_off(exc))
        raise self.retry(countdown=backoff_delay(attempt=self.request.retries + 1)) from None
    return {"customer_id": customer_id, "status": state.status}


def _cut_off(exc: BaseException) -> str:
    """What stopped a task, for its log line (the exception's class only: its message may quote SQL)."""
    if isinstance(exc, SoftTimeLimitExceeded):
        return "it ran out of time"
    return f"the database connection failed: {exc.__class__.__name__}"


@shared_task(name="consent.customers_sync_sweep", bind=True, ignore_result=True)
def customers_sync_sweep(self: Task) -> int:
    """Queue a customer sync for every active partner (daily; a second run only repeats harmless upserts)."""
    ids = list(Partner.objects.filter(status=Partner.Status.ACTIVE).values_list("pk", flat=True))
    for partner_id in ids:
        customers_sync.apply_async(kwargs={"partner_id": partner_id}, **_same_queue(self))
    return len(ids)


def after_consent(partner: Partner) -> None:
    """Registered in services.AFTER_CONSENT: a partner that just consented gets its customers synced and
    ApplicationConsent applied to each, in the background."""
    if not getattr(settings, "CPV_SYNC_AFTER_CONSENT", True):
        return

    def queue() -> None:
        try:
            customers_sync.apply_async(kwargs={"partner_id": partner.pk})
        except Exception:
            # The consent itself succeeded; the daily sweep syncs this partner if queueing failed now.
            logger.exception("could not queue the customer sync of partner %s", partner.code)

    transaction.on_commit(queue)

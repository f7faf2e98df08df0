"""Celery tasks that sync partners' customers and apply ApplicationConsent (in batches after a sync, one at a time
from a page): thin, idempotent. Their names keep the `consent.` prefix queued messages and beat know them by."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded

from cpv.task_kit import (
    DATABASE_LOST,
    IDEMPOTENT,
    MAX_TASK_RETRIES,
    THROUGH_A_BROKER_RESTART,
    cut_off,
    same_queue,
    verify_queue,
)
from customers import offboarding, proof, scheduling, services
from customers.models import ConsentWork
from microsoft.retrying import backoff_delay
from partners.models import Customer, Partner
from partners.operations import operation_share

logger = logging.getLogger(__name__)


@shared_task(name="consent.customers_sync", bind=True, max_retries=MAX_TASK_RETRIES, **IDEMPOTENT)
def customers_sync(
    self: Task, partner_id: int, correlation_id: str = "", apply: bool = True, kind: str = ConsentWork.Kind.NEW
) -> dict[str, Any]:
    """Sync one partner's customers, then schedule ApplicationConsent (in class `kind`, a ConsentWork.Kind) for each
    customer that needs it."""
    correlation_id = correlation_id or str(uuid.uuid4())
    # A retry goes on with the same MS-CorrelationId.
    retry_kwargs = {"partner_id": partner_id, "correlation_id": correlation_id, "apply": apply, "kind": kind}
    try:
        result = services.customers_sync(partner_id=partner_id, correlation_id=correlation_id)
        queued = 0
        if apply:
            queued = application_consents_queue(
                partner_id=partner_id, correlation_id=correlation_id, kind=kind, **same_queue(self)
            )
    except Partner.DoesNotExist:
        # Partners are never deleted: a message queued against another database (one reset since, or a broker
        # folder shared with a test run) has nothing to sync here.
        logger.warning("customer sync of partner %s: no such partner in the database; nothing to do", partner_id)
        return {"partner_id": partner_id, "outcome": "gone"}
    except services.CallFailed as exc:
        if not exc.transient:
            logger.warning("customer sync of partner %s failed: %s", partner_id, exc)
            operation_share(code=correlation_id, done=1, failed=1, message="Partner Center refused the listing.")
            return {"partner_id": partner_id, "outcome": "failed"}
        countdown = backoff_delay(attempt=self.request.retries + 1, retry_after=exc.retry_after)
        raise self.retry(kwargs=retry_kwargs, countdown=countdown) from None
    except (SoftTimeLimitExceeded, *DATABASE_LOST) as exc:
        # The sync is an upsert and the ApplicationConsents it queues claim their customers: both run again.
        logger.warning("customer sync of partner %s: %s; trying again", partner_id, cut_off(exc))
        raise self.retry(kwargs=retry_kwargs, countdown=backoff_delay(attempt=self.request.retries + 1)) from None
    operation_share(
        code=correlation_id,
        done=1,
        message=f"{result.listed} customers listed: {result.created} new, {result.updated} changed, "
        f"{result.removed} removed.",
    )
    return {"partner_id": partner_id, "outcome": "synced", "customers": result.listed, "queued": queued}


# Customers in one ApplicationConsent batch of the `apply_consents` command (and of messages queued before the fair
# schedule, staff operations' among them): one audit row each.
BATCH_SIZE = 50


def application_consents_queue(
    *,
    partner_id: int,
    correlation_id: str,
    kind: str = ConsentWork.Kind.NEW,
    queue: str | None = None,
    retry_refused: bool = False,
) -> int:
    """Check GDAP (Graph only), then schedule ApplicationConsent in class `kind` (customers/scheduling.py) for the
    partner's customers that need it and are not without access, and start the pullers: how many customers."""
    services.access_check(partner_id=partner_id, retry_refused=retry_refused)
    ids = services.customers_needing_consent(partner_id=partner_id)
    if ids:
        scheduling.consent_work_add(partner_id=partner_id, customer_ids=ids, kind=kind, correlation_id=correlation_id)
    # Whether or not this added any: work already pending whose puller was lost is taken up again.
    application_consent_pullers_start(queue=queue)
    return len(ids)


def application_consent_pullers_start(*, queue: str | None = None) -> int:
    """Queue a puller for each idle or lapsed slot the pending work fills: how many."""
    options = {"queue": queue} if queue else {}
    started = scheduling.consent_pullers_wanted()
    for slot, owner in started:
        # Should this fail, the slot lapses (PULLER_LEASE) and the next schedule or sweep starts it.
        application_consent_next.apply_async(kwargs={"slot": slot}, task_id=owner, **options)
    return len(started)


@shared_task(name="consent.application_consent_next", bind=True, max_retries=MAX_TASK_RETRIES, **IDEMPOTENT)
def application_consent_next(self: Task, slot: int) -> dict[str, Any]:
    """One batch the scheduler hands to puller slot `slot` (customers/scheduling.py), then its successor in the slot.
    Its id owns the batch's claims, so a redelivery or retry takes them back and goes on with them."""
    owner = self.request.id or ""
    if not scheduling.consent_puller_holds(slot=slot, owner=owner):
        return {"slot": slot, "outcome": "superseded"}
    try:
        claim = scheduling.consent_work_claim(owner=owner)
        counts = _scheduled_batch(self, claim=claim, owner=owner) if claim is not None else {}
    except (SoftTimeLimitExceeded, *DATABASE_LOST) as exc:
        # Cut off: the same id claims its customers again; those it finished are found applied, with no call.
        logger.warning("scheduled ApplicationConsent in slot %s: %s; trying again", slot, cut_off(exc))
        raise self.retry(countdown=backoff_delay(attempt=self.request.retries + 1)) from None
    next_slot, successor, countdown = scheduling.consent_puller_pass(slot=slot, owner=owner, found=claim is not None)
    if successor:
        # The slot is the successor's now: its message must reach the broker, whatever the broker is going through.
        application_consent_next.apply_async(
            kwargs={"slot": next_slot},
            task_id=successor,
            countdown=countdown or None,
            **same_queue(self),
            **THROUGH_A_BROKER_RESTART,
        )
    if claim is None:
        return {"slot": slot, "outcome": "idle"}
    return {"slot": slot, "outcome": "done", "partner_id": claim.partner_id, **counts}


def _scheduled_batch(task: Task, *, claim: scheduling.Claim, owner: str) -> dict[str, int]:
    """ApplicationConsent in a claimed batch, closed in the scheduler, with the verification it calls for."""
    try:
        result = services.application_consent_batch(
            partner_id=claim.partner_id,
            customer_ids=claim.customer_ids,
            correlation_id=claim.correlation_id or str(uuid.uuid4()),
            owner=owner,
            audit=False,
        )
    except Partner.DoesNotExist:
        logger.warning("scheduled ApplicationConsent of partner %s: no such partner; dropped", claim.partner_id)
        scheduling.consent_work_drop(partner_id=claim.partner_id)
        return {}
    # A customer whose claim another worker held goes back too, claimable once that claim has lapsed: should that
    # worker have died, this schedule applies it (found applied, with no call, when the worker did its work).
    scheduling.consent_work_finish(
        owner=owner,
        partner_id=claim.partner_id,
        customer_ids=claim.customer_ids,
        failed_ids=result.failed_ids,
        retry_ids=result.retry_ids,
        retry_in=backoff_delay(attempt=1, retry_after=result.retry_after),
        held_ids=result.held_ids,
        held_for=services.LEASE.total_seconds(),
    )
    if result.consented or result.already_present:
        # As after a batch: Graph is read once it has caught up, on the verification's queue (a read costs a sign-in
        # in the customer's tenant and several Graph requests), so the pullers' next batches never wait behind it.
        consents_verify.apply_async(
            kwargs={"customer_ids": claim.customer_ids, "unread_only": True},
            countdown=VERIFY_AFTER_CONSENT,
            **verify_queue(task),
        )
    return {**result.counts(), "retrying": len(result.retry_ids)}


@shared_task(name="consent.application_consent_batch", bind=True, max_retries=MAX_TASK_RETRIES, **IDEMPOTENT)
def application_consent_batch(
    self: Task,
    partner_id: int,
    customer_ids: list[int],
    correlation_id: str = "",
    tally: dict[str, int] | None = None,
) -> dict[str, Any]:
    """ApplicationConsent in a batch of one partner's customers, audited once; transient failures are retried by this
    task's retry (same id, so it takes over their claims), carrying `tally`."""
    correlation_id = correlation_id or str(uuid.uuid4())
    last_run = self.request.retries >= MAX_TASK_RETRIES
    kwargs = {"partner_id": partner_id, "customer_ids": customer_ids, "correlation_id": correlation_id, "tally": tally}
    try:
        result = services.application_consent_batch(
            partner_id=partner_id,
            customer_ids=customer_ids,
            correlation_id=correlation_id,
            owner=self.request.id or "",
            earlier=tally,
            last_run=last_run,
        )
    except Partner.DoesNotExist:
        logger.warning(
            "ApplicationConsent batch of partner %s: no such partner in the database; nothing to do", partner_id
        )
        return {"partner_id": partner_id, "outcome": "gone"}
    except (SoftTimeLimitExceeded, *DATABASE_LOST) as exc:
        # Cut off: the batch runs again from the start; customers it finished are found applied, with no call.
        logger.warning("ApplicationConsent batch of partner %s: %s; trying again", partner_id, cut_off(exc))
        raise self.retry(kwargs=kwargs, countdown=backoff_delay(attempt=self.request.retries + 1)) from None
    if result.consented or result.already_present:
        # Partner Center's answer proves nothing of the tenant: read what it holds, once Graph has caught up.
        consents_verify.apply_async(
            kwargs={"customer_ids": customer_ids, "unread_only": True},
            countdown=VERIFY_AFTER_CONSENT,
            **verify_queue(self),
        )
    if result.retry_ids and not last_run:
        countdown = backoff_delay(attempt=self.request.retries + 1, retry_after=result.retry_after)
        kwargs.update(customer_ids=result.retry_ids, tally=result.counts())
        raise self.retry(kwargs=kwargs, countdown=countdown)
    # A staff operation (its id is the correlation id) gets this batch's share once the batch is final.
    operation_share(code=correlation_id, done=result.tried, failed=result.failed + len(result.retry_ids))
    return {"partner_id": partner_id, "outcome": "done", **result.counts(), "retrying": len(result.retry_ids)}


@shared_task(name="consent.application_consent_apply", bind=True, max_retries=MAX_TASK_RETRIES, **IDEMPOTENT)
def application_consent_apply(self: Task, customer_id: int, correlation_id: str = "") -> dict[str, Any]:
    """ApplicationConsent in one customer tenant; its id owns the claim, so a retry or redelivery takes it over."""
    try:
        state = services.customer_consent_apply(
            customer_id=customer_id, correlation_id=correlation_id or None, owner=self.request.id or ""
        )
    except Customer.DoesNotExist:
        # As above: a message queued against another database.
        logger.warning(
            "ApplicationConsent for customer %s: no such customer in the database; nothing to do", customer_id
        )
        return {"customer_id": customer_id, "status": "gone"}
    except services.CallFailed as exc:
        countdown = backoff_delay(attempt=self.request.retries + 1, retry_after=exc.retry_after)
        raise self.retry(countdown=countdown) from None
    except (SoftTimeLimitExceeded, *DATABASE_LOST) as exc:
        # Cut off, perhaps holding the customer's claim after Partner Center created the consent: acknowledged
        # now, the customer would wait for the claim to lapse and the daily sweep. The retry (the same task id)
        # takes its claim over and sends the same MS-RequestId, which Partner Center answers as the call it saw.
        logger.warning("ApplicationConsent for customer %s: %s; trying again", customer_id, cut_off(exc))
        raise self.retry(countdown=backoff_delay(attempt=self.request.retries + 1)) from None
    return {"customer_id": customer_id, "status": state.status}


# A new grant can take a moment to show in Graph ("replication delays for delegated permission grants that were
# recently created"): the first read after ApplicationConsent waits this many seconds.
VERIFY_AFTER_CONSENT = 60
# Customers one sweep (every 10 minutes) hands out, VERIFY_BATCH to a task, each held an hour from the next sweep.
VERIFY_SWEEP_LIMIT = 1000
VERIFY_BATCH = 50
VERIFY_HOLD = timedelta(hours=1)


@shared_task(name="consent.consents_verify", bind=True, max_retries=MAX_TASK_RETRIES, **IDEMPOTENT)
def consents_verify(
    self: Task, customer_ids: list[int], unread_only: bool = False, operation: str = ""
) -> dict[str, Any]:
    """Read each customer's tenant in Graph and repair a drifted or missing consent (customers/proof.py); a throttled
    read is deferred in the database, not retried here; a staff `operation` gets this batch's share."""
    try:
        tally = proof.consents_verify(customer_ids=customer_ids, unread_only=unread_only)
    except (SoftTimeLimitExceeded, *DATABASE_LOST) as exc:
        # Each customer's read is stored as it is made: the run starts again and reads the rest (and some again).
        logger.warning("verification of %d customers: %s; trying again", len(customer_ids), cut_off(exc))
        raise self.retry(countdown=backoff_delay(attempt=self.request.retries + 1)) from None
    operation_share(code=operation, done=len(customer_ids), failed=tally.drifted + tally.missing)
    return {"outcome": "done", **tally.counts()}


@shared_task(name="consent.customer_act", bind=True, max_retries=MAX_TASK_RETRIES, **IDEMPOTENT)
def customer_act(self: Task, customer_id: int, action: str) -> dict[str, Any]:
    """One customer as staff asked (verify, apply again, reset), then its proof (customers/proof.py)."""
    try:
        outcome = proof.customer_act(customer_id=customer_id, action=action)
    except Customer.DoesNotExist:
        logger.warning("%s of customer %s: no such customer in the database; nothing to do", action, customer_id)
        return {"customer_id": customer_id, "outcome": "gone"}
    except services.CallFailed as exc:
        raise self.retry(
            countdown=backoff_delay(attempt=self.request.retries + 1, retry_after=exc.retry_after)
        ) from None
    except (SoftTimeLimitExceeded, *DATABASE_LOST) as exc:
        logger.warning("%s of customer %s: %s; trying again", action, customer_id, cut_off(exc))
        raise self.retry(countdown=backoff_delay(attempt=self.request.retries + 1)) from None
    return {"customer_id": customer_id, "outcome": outcome.state.proof or outcome.state.status}


@shared_task(name="consent.partner_offboard", bind=True, max_retries=MAX_TASK_RETRIES * 4, **IDEMPOTENT)
def partner_offboard(self: Task, partner_id: int) -> dict[str, Any]:
    """Take the vendor's app out of the partner's customers, then finish its offboarding; what Partner Center or
    Graph leave for later is tried again by this task's retry, which resumes where the last run stopped."""
    try:
        progress = offboarding.partner_offboard_run(partner_id=partner_id)
    except Partner.DoesNotExist:
        logger.warning("offboarding of partner %s: no such partner in the database; nothing to do", partner_id)
        return {"partner_id": partner_id, "outcome": "gone"}
    except services.CallFailed as exc:
        raise self.retry(
            countdown=backoff_delay(attempt=self.request.retries + 1, retry_after=exc.retry_after)
        ) from None
    except (SoftTimeLimitExceeded, *DATABASE_LOST) as exc:
        logger.warning("offboarding of partner %s: %s; trying again", partner_id, cut_off(exc))
        raise self.retry(countdown=backoff_delay(attempt=self.request.retries + 1)) from None
    if not progress.finished:
        raise self.retry(countdown=backoff_delay(attempt=self.request.retries + 1))
    return {"partner_id": partner_id, "outcome": "offboarded", "removed": progress.removed}


@shared_task(name="consent.consents_verify_sweep", bind=True, ignore_result=True)
def consents_verify_sweep(self: Task) -> int:
    """Queue the reads that are due (each verified customer about daily, spread over the day): how many."""
    ids = proof.verify_claim(limit=VERIFY_SWEEP_LIMIT, hold=VERIFY_HOLD)
    for start in range(0, len(ids), VERIFY_BATCH):
        consents_verify.apply_async(kwargs={"customer_ids": ids[start : start + VERIFY_BATCH]}, **verify_queue(self))
    # A puller chain whose message was lost leaves its slot to lapse: started again here.
    application_consent_pullers_start(**same_queue(self))
    return len(ids)


@shared_task(name="consent.access_check", bind=True, max_retries=MAX_TASK_RETRIES, **IDEMPOTENT)
def access_check(self: Task, partner_id: int) -> dict[str, Any]:
    """Check GDAP again for one partner (asked from the portal or by staff) and queue ApplicationConsent where access
    appeared; a customer Partner Center refused is tried once more."""
    correlation_id = str(uuid.uuid4())
    try:
        queued = application_consents_queue(
            partner_id=partner_id,
            correlation_id=correlation_id,
            kind=ConsentWork.Kind.REPAIR,
            retry_refused=True,
            **same_queue(self),
        )
    except Partner.DoesNotExist:
        logger.warning("GDAP check of partner %s: no such partner in the database; nothing to do", partner_id)
        return {"partner_id": partner_id, "outcome": "gone"}
    except (SoftTimeLimitExceeded, *DATABASE_LOST) as exc:
        logger.warning("GDAP check of partner %s: %s; trying again", partner_id, cut_off(exc))
        raise self.retry(countdown=backoff_delay(attempt=self.request.retries + 1)) from None
    return {"partner_id": partner_id, "outcome": "checked", "queued": queued}


@shared_task(name="consent.customers_sync_sweep", bind=True, ignore_result=True)
def customers_sync_sweep(self: Task) -> int:
    """Queue a customer sync for every active partner (daily; a second run only repeats harmless upserts), its
    ApplicationConsent a routine re-check behind new and repair work."""
    ids = list(Partner.objects.filter(status=Partner.Status.ACTIVE).values_list("pk", flat=True))
    for partner_id in ids:
        customers_sync.apply_async(
            kwargs={"partner_id": partner_id, "kind": ConsentWork.Kind.ROUTINE}, **same_queue(self)
        )
    return len(ids)


def customers_sync_after_consent(*, partner_id: int) -> None:
    """Queue the customer sync (and with it ApplicationConsent) of a partner whose consent just committed."""
    try:
        # Nobody reads this run's result: without one, queueing it does not subscribe this process to the result's
        # channel on Redis (a round trip in the consent's request, and another to leave it).
        customers_sync.apply_async(kwargs={"partner_id": partner_id}, ignore_result=True)
    except Exception:
        # The consent itself succeeded; the daily sweep syncs this partner if queueing failed now.
        logger.exception("could not queue the customer sync of partner %s", partner_id)

"""Celery tasks of the consent app: thin callers of services, taking ids, never tokens.

Only idempotent tasks use `acks_late` with `reject_on_worker_lost` (a worker killed mid-task hands the
message back): renewal re-checks under the row lock whether the token is still due, customer sync is an
upsert, and ApplicationConsent treats an existing consent as success. Retries are bounded, with backoff,
jitter and Retry-After (consent/retrying.py), and no countdown exceeds half the visibility timeout.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from celery import Task, shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction

from consent import customers, renewal, services
from consent.retrying import backoff_delay
from partners.models import Partner

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
    """Queue one renewal per partner whose token is due, spread over the hour (a duplicate run queues none)."""
    try:
        result = renewal.renewal_sweep()
    except DATABASE_LOST as exc:
        # The claims are one transaction: a sweep cut off claimed nobody, so running it again loses no partner.
        logger.warning("renewal sweep: the database failed (%s); trying again", exc.__class__.__name__)
        raise self.retry(exc=exc, countdown=backoff_delay(attempt=self.request.retries + 1)) from None
    for partner_id, countdown in result.queued:
        delay = countdown if spread is None else renewal.spread_countdown(partner_id, window=spread)
        token_renew.apply_async(kwargs={"partner_id": partner_id}, countdown=delay, **_same_queue(self))
    logger.info("renewal sweep queued %d partner(s), disabled %d previous version(s)", len(result.queued),
                result.previous_disabled)  # fmt: skip
    return len(result.queued)


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
    except DATABASE_LOST as exc:
        # Nothing could be recorded: the database is what failed. The next attempt records it.
        if attempt >= settings.CPV_RENEWAL_MAX_ATTEMPTS:
            logger.exception(
                "renewal of partner %s: the database failed %d times; the next sweep tries again", partner_id, attempt
            )
            return {"partner_id": partner_id, "outcome": "failed"}
        reason = f"the database connection failed: {exc.__class__.__name__}"
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
    try:
        result = customers.customers_sync(partner_id=partner_id, correlation_id=correlation_id)
    except customers.CallFailed as exc:
        if not exc.transient:
            logger.warning("customer sync of partner %s failed: %s", partner_id, exc)
            return {"partner_id": partner_id, "outcome": "failed"}
        countdown = backoff_delay(attempt=self.request.retries + 1, retry_after=exc.retry_after)
        raise self.retry(countdown=countdown) from None
    queued = 0
    if apply:
        queued = application_consents_queue(partner_id=partner_id, correlation_id=correlation_id, **_same_queue(self))
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
    """ApplicationConsent in one customer tenant (idempotent: an existing consent is success)."""
    # A message the broker handed back belonged to a worker that died holding the customer's claim.
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    try:
        state = customers.customer_consent_apply(
            customer_id=customer_id, correlation_id=correlation_id or None, take_over=redelivered
        )
    except customers.CallFailed as exc:
        countdown = backoff_delay(attempt=self.request.retries + 1, retry_after=exc.retry_after)
        raise self.retry(countdown=countdown) from None
    return {"customer_id": customer_id, "status": state.status}


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

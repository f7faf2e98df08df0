"""Celery tasks that post webhook deliveries: thin and idempotent (each delivery is claimed with a lease before it is
posted, so a task run twice posts nothing twice)."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded

from cpv.task_kit import DATABASE_LOST, IDEMPOTENT, MAX_TASK_RETRIES, cut_off, same_queue
from events import delivery
from microsoft.retrying import backoff_delay

logger = logging.getLogger(__name__)

# Deliveries one sweep hands out, SWEEP_BATCH to a task.
SWEEP_LIMIT = 500
SWEEP_BATCH = 20


@shared_task(name="events.deliveries_send", bind=True, max_retries=MAX_TASK_RETRIES, **IDEMPOTENT)
def deliveries_send(self: Task, delivery_ids: list[int]) -> dict[str, Any]:
    """Attempt each due delivery this worker wins (events/delivery.py): how many came to each state."""
    tally: dict[str, int] = {}
    try:
        for delivery_id in delivery_ids:
            sent = delivery.delivery_send(delivery_id=delivery_id, owner=self.request.id or "")
            tally[sent.outcome] = tally.get(sent.outcome, 0) + 1
    except (SoftTimeLimitExceeded, *DATABASE_LOST) as exc:
        # A delivery claimed and not recorded waits for its lease to lapse; the rest are tried again.
        logger.warning("webhook deliveries: %s; trying again", cut_off(exc))
        raise self.retry(countdown=backoff_delay(attempt=self.request.retries + 1)) from None
    return tally


@shared_task(name="events.deliveries_sweep", bind=True, ignore_result=True)
def deliveries_sweep(self: Task) -> int:
    """Queue the deliveries that are due (a retry's time come, a lease lapsed, a queueing lost): how many."""
    ids = delivery.deliveries_due(limit=SWEEP_LIMIT)
    for start in range(0, len(ids), SWEEP_BATCH):
        deliveries_send.apply_async(kwargs={"delivery_ids": ids[start : start + SWEEP_BATCH]}, **same_queue(self))
    return len(ids)

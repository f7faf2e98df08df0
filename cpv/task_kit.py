"""What every app's Celery tasks share: the options of idempotent tasks (only they use `acks_late`), the errors
that mean the database went away, and how follow-up work is queued."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from django.db import InterfaceError, OperationalError

logger = logging.getLogger(__name__)


IDEMPOTENT: dict[str, Any] = {"acks_late": True, "reject_on_worker_lost": True}


# Publishing a message that nothing else would ever queue again (the next link of a chain) keeps trying through a
# broker restart, about a minute, instead of Celery's default three tries within a second; a message that still
# cannot be published raises, and the chain's lease lapses for a sweep to start it again.
THROUGH_A_BROKER_RESTART: dict[str, Any] = {
    "retry": True,
    "retry_policy": {"max_retries": 60, "interval_start": 0, "interval_step": 0.5, "interval_max": 1.0},
}


MAX_TASK_RETRIES = 5


def same_queue(task: Task) -> dict[str, Any]:
    """Follow-up work goes to the queue its parent came from, so a dedicated queue keeps its whole run."""
    queue = (task.request.delivery_info or {}).get("routing_key")
    return {"queue": queue} if queue else {}


# The database went away (a restart, a failover, a dropped connection): worth trying again shortly.
DATABASE_LOST = (OperationalError, InterfaceError)


def queue_follow_up(target: Task, parent: Task, kwargs: dict[str, Any], *, countdown: float | None = None) -> bool:
    """Publish follow-up work to the parent's queue. Returns False (and logs) when the broker cannot take it."""
    options = {**same_queue(parent), **({"countdown": countdown} if countdown is not None else {})}
    try:
        target.apply_async(kwargs=kwargs, **options)
    except Exception as exc:  # noqa: BLE001 - whatever the broker raised, the caller carries on without it
        logger.warning("could not queue %s: %s", target.name, exc.__class__.__name__)
        return False
    return True


def cut_off(exc: BaseException) -> str:
    """What stopped a task, for its log line (the exception's class only: its message may quote SQL)."""
    if isinstance(exc, SoftTimeLimitExceeded):
        return "it ran out of time"
    return f"the database connection failed: {exc.__class__.__name__}"

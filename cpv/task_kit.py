"""What every app's Celery tasks share: the options of idempotent tasks (only they use `acks_late`), the errors
that mean the database went away, and how follow-up work is queued (the verification on a queue of its own)."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
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
    queue = _parent_queue(task)
    return {"queue": queue} if queue else {}


def verify_queue(task: Task) -> dict[str, Any]:
    """The verification a task queues goes to the verification's queue beside the parent's (`verify_queue_of`), so
    it never waits in front of the parent queue's work."""
    return {"queue": verify_queue_of(_parent_queue(task), default=task.app.conf.task_default_queue)}


def verify_queue_of(queue: str | None, *, default: str = "celery") -> str:
    """The verification's queue beside `queue`: CPV_VERIFY_QUEUE beside the default queue (or none), and beside a
    queue of its own (a benchmark's, a test's) that queue's name and `.` CPV_VERIFY_QUEUE, so a dedicated run keeps
    its verification too; a verification queue is its own."""
    verify = settings.CPV_VERIFY_QUEUE
    if not queue or queue == default:
        return str(verify)
    if queue == verify or queue.endswith(f".{verify}"):
        return queue
    return f"{queue}.{verify}"


def _parent_queue(task: Task) -> str | None:
    queue = (task.request.delivery_info or {}).get("routing_key")
    return str(queue) if queue else None


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

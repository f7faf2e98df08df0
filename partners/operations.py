"""An operation's outcome written by the work it queued (partners.models.Operation): each task adds its share of the
operation's total as it ends, and the share that completes it writes the state and message, once."""

from __future__ import annotations

import logging
import uuid

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from partners.models import Operation

logger = logging.getLogger(__name__)


def _message(op: Operation) -> str:
    ok = op.done - op.failed
    if op.kind == Operation.Kind.VERIFY:
        return f"{op.done} customers read: {op.failed} left drifted or missing."
    return f"{ok} applied, {op.failed} failed."


def operation_share(*, code: str, done: int, failed: int = 0, message: str = "") -> Operation | None:
    """Add a task's `done` units of work (`failed` of them failed) to the operation `code`; when they reach its total,
    write its state and message (`message`, or one made from the counts) once. Returns the operation when this share
    finished it, else None. Work not started as an operation (a sweep's: no row has its id) changes nothing."""
    try:
        uuid.UUID(str(code))
    except ValueError:
        return None
    with transaction.atomic():
        added = Operation.objects.filter(code=code, finished_at__isnull=True).update(
            done=F("done") + done, failed=F("failed") + failed
        )
        if not added:
            return None
        # The update holds the row's lock: no other share reads it between the add and the check.
        op = Operation.objects.get(code=code)
        if op.done < op.total:
            return None
        op.done = min(op.done, op.total)
        op.failed = min(op.failed, op.done)
        op.state = Operation.State.FAILED if op.failed else Operation.State.DONE
        op.message = (message or _message(op))[:500]
        op.finished_at = timezone.now()
        op.save(update_fields=["done", "failed", "state", "message", "finished_at"])
    logger.info("operation %s (%s) finished: %s", code, op.kind, op.message)
    return op

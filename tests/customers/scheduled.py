"""The fair schedule's messages run in the test's own process, in order."""

from __future__ import annotations

from typing import Any

import pytest

from customers import scheduling
from customers import tasks as customer_tasks
from customers.services import customer_consent_apply


class Broker:
    """What the tasks queue, run here in order, each message with its own task id (a puller's id owns its claim). A
    puller queued to wait (a countdown beyond a few seconds) is kept aside in `later` rather than run at once."""

    WAITS_UP_TO = 5.0

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.messages: list[tuple[Any, dict[str, Any], str | None]] = []
        self.later: list[tuple[Any, dict[str, Any], str | None]] = []
        self.sent: list[dict[str, Any]] = []
        for task in (customer_tasks.application_consent_next, customer_tasks.consents_verify):
            monkeypatch.setattr(task, "apply_async", self._queue(task))

    def _queue(self, task: Any) -> Any:
        def apply_async(kwargs: dict[str, Any], task_id: str | None = None, **options: Any) -> None:
            waits = (options.get("countdown") or 0) > self.WAITS_UP_TO
            (self.later if waits and task is customer_tasks.application_consent_next else self.messages).append(
                (task, kwargs, task_id)
            )
            self.sent.append({"task": task.name, "kwargs": kwargs, "options": options})

        return apply_async

    def drain(self) -> list[dict[str, Any]]:
        results = []
        while self.messages:
            results += self.step()
        return results

    def step(self) -> list[dict[str, Any]]:
        """Run the next message only (a puller's batch: what it returned)."""
        task, kwargs, task_id = self.messages.pop(0)
        if task is customer_tasks.application_consent_next:
            return [task.apply(kwargs=kwargs, task_id=task_id).get()]
        return []

    def puller_killed_after(self, applied: int) -> None:
        """The first puller queued claims its batch and gets through `applied` customers before its worker is
        killed: its message stays queued, to come back with the same id."""
        (_, _, owner), *_ = self.messages
        assert owner is not None
        claim = scheduling.consent_work_claim(owner=owner)
        assert claim is not None
        for customer_id in claim.customer_ids[:applied]:
            customer_consent_apply(customer_id=customer_id, owner=owner)

    def wait_over(self) -> list[dict[str, Any]]:
        """The waits kept aside are over: run them, and what they queue."""
        self.messages += self.later
        self.later = []
        return self.drain()

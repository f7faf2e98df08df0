"""The fair schedule's messages run in the test's own process, in order."""

from __future__ import annotations

from typing import Any

import pytest

from customers import tasks as customer_tasks


class Broker:
    """What the tasks queue, run here in order, each message with its own task id (a puller's id owns its claim)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.messages: list[tuple[Any, dict[str, Any], str | None]] = []
        self.sent: list[dict[str, Any]] = []
        for task in (customer_tasks.application_consent_next, customer_tasks.consents_verify):
            monkeypatch.setattr(task, "apply_async", self._queue(task))

    def _queue(self, task: Any) -> Any:
        def apply_async(kwargs: dict[str, Any], task_id: str | None = None, **options: Any) -> None:
            self.messages.append((task, kwargs, task_id))
            self.sent.append({"task": task.name, "kwargs": kwargs, "options": options})

        return apply_async

    def drain(self) -> list[dict[str, Any]]:
        results = []
        while self.messages:
            task, kwargs, task_id = self.messages.pop(0)
            if task is customer_tasks.application_consent_next:
                results.append(task.apply(kwargs=kwargs, task_id=task_id).get())
        return results

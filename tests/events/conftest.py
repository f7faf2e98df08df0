"""What the outbox's tests share: a real receiver on loopback and a subscription to it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from events.models import EventType
from tests.events.receiver import Receiver, run_receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from run_receiver()


ALL_TYPES = list(EventType.values)

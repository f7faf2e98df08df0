"""The shared limiter when Redis stops answering: each process keeps the pace alone (its own token bucket) and
the renewal or ApplicationConsent in hand goes on; Redis is asked again a few seconds later. And the record it
keeps in Redis of the slots it granted."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
import redis

from microsoft import throttle
from tests.conftest import free_port


class Clock:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_local_bucket_keeps_the_rate_and_the_burst_and_honours_a_pause() -> None:
    clock = Clock()
    bucket = throttle.LocalBucket(rate=10, capacity=2.5, clock=clock)
    takes = []
    for _ in range(22):
        while (wait := bucket.take()) > 0:
            clock.sleep(wait)
        takes.append(clock.now)
    # A burst of 2 at once, then one every 0.1 s: 22 requests in 2.0 s (floor(rate * t + capacity) at most).
    assert takes[1] == takes[0]
    assert takes[-1] - takes[0] == pytest.approx(1.95, abs=0.01)

    bucket.pause(3.0)
    before = clock.now
    while (wait := bucket.take()) > 0:
        clock.sleep(wait)
    assert clock.now - before == pytest.approx(3.0)


@pytest.fixture
def clock(monkeypatch) -> Clock:  # type: ignore[no-untyped-def]
    """A fresh outage state for this process's buckets, timed by a clock the test moves."""
    clock = Clock()
    monkeypatch.setattr(throttle, "_outages", {})
    monkeypatch.setattr(throttle, "_local_buckets", {})
    monkeypatch.setattr(throttle, "_clock", clock)
    return clock


def limiter(url: str, key: str, *, rate: int = 20) -> throttle.RedisLimiter:
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    return throttle.RedisLimiter(client=client, key=key, rate=rate, capacity=1.5, what="test request")


def nobody() -> str:
    """A Redis URL nothing listens on."""
    return f"redis://127.0.0.1:{free_port()}/0"


def test_with_redis_away_requests_go_on_at_the_pace_of_this_process(clock, caplog) -> None:  # type: ignore[no-untyped-def]
    key = f"test-{uuid.uuid4().hex}"
    down = limiter(nobody(), key)

    with caplog.at_level(logging.WARNING, logger="microsoft.throttle"):
        waited = [down.acquire(timeout=5) for _ in range(5)]
        down.pause(0.2)
        waited.append(down.acquire(timeout=5))

    # No exception: one token of the burst at once, then the rate of 20/s, then the pause (real time: the
    # local bucket keeps its own clock).
    assert waited[0] == 0.0 and all(w > 0 for w in waited[1:])
    assert waited[-1] >= 0.15
    # Told once, and asked once: until the retry time, nobody asks the missing Redis again.
    assert [r.getMessage() for r in caplog.records if r.name == "microsoft.throttle"] == [
        f"throttle: Redis did not answer (ConnectionError); this process paces cpv:throttle:{key} alone until it does"
    ]
    assert throttle._outages[f"cpv:throttle:{key}"] == (clock.now + 5.0, 1)


def test_one_caller_asks_again_and_the_wait_between_asks_doubles_up_to_a_minute(clock) -> None:  # type: ignore[no-untyped-def]
    key = f"test-{uuid.uuid4().hex}"
    first, second = limiter(nobody(), key), limiter(nobody(), key)
    first.acquire(timeout=5)
    start = clock.now
    waits = []
    for _ in range(6):
        retry_at, _failures = throttle._outages[f"cpv:throttle:{key}"]
        waits.append(round(retry_at - clock.now, 3))
        clock.now = retry_at
        # The first caller after the retry time asks Redis; one at the same moment keeps the local pace.
        assert first._ask_redis() and not second._ask_redis()
        first._not_answered(redis.exceptions.ConnectionError("Connection refused."))
    assert waits == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]
    assert throttle._outages[f"cpv:throttle:{key}"][1] == 7 and clock.now > start


@pytest.mark.redis
def test_redis_is_asked_again_once_the_retry_time_has_passed(clock, redis_url, caplog) -> None:  # type: ignore[no-untyped-def]
    key = f"test-{uuid.uuid4().hex}"
    limiter(nobody(), key).acquire(timeout=5)
    shared = limiter(redis_url, key)
    server = redis.Redis.from_url(redis_url)
    try:
        # Within the retry time the process keeps its own pace, even with Redis back.
        clock.now += 4.9
        shared.acquire(timeout=5)
        assert not server.exists(f"cpv:throttle:{key}")

        clock.now += 0.2
        with caplog.at_level(logging.INFO, logger="microsoft.throttle"):
            shared.acquire(timeout=5)
        assert server.exists(f"cpv:throttle:{key}")
        assert f"cpv:throttle:{key}" not in throttle._outages
        assert "Redis answers again" in caplog.text
    finally:
        server.delete(f"cpv:throttle:{key}", f"cpv:throttle:{key}:pause")


@pytest.mark.redis
def test_a_redis_that_answers_with_an_error_is_a_fault_not_an_outage(clock, redis_url) -> None:  # type: ignore[no-untyped-def]
    key = f"test-{uuid.uuid4().hex}"
    server = redis.Redis.from_url(redis_url)
    server.set(f"cpv:throttle:{key}", "not a bucket", ex=60)
    try:
        with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
            limiter(redis_url, key).acquire(timeout=5)
        assert throttle._outages == {}
    finally:
        server.delete(f"cpv:throttle:{key}")


def test_partner_center_calls_go_on_with_redis_away(clock, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_THROTTLE_URL = nobody()
    monkeypatch.setattr(throttle, "_clients", {})
    shared: Any = throttle.limiter_for(f"app-{uuid.uuid4().hex}")
    assert isinstance(shared, throttle.RedisLimiter)
    assert shared.acquire(timeout=5) == 0.0
    shared.pause(0.01)


@pytest.mark.redis
def test_the_shared_limiter_records_the_slot_of_each_named_request_by_its_clock(redis_url) -> None:  # type: ignore[no-untyped-def]
    key = f"test-{uuid.uuid4().hex}"
    shared = limiter(redis_url, key)
    server = redis.Redis.from_url(redis_url)
    try:
        seconds, micros = server.time()
        before = seconds * 1000 + micros // 1000
        for request_id in ("first", "second", "third"):
            shared.acquire(timeout=5, request_id=request_id)
        shared.acquire(timeout=5)
        seconds, micros = server.time()
        after = seconds * 1000 + micros // 1000

        slots = shared.slots()
        # A request that named nothing takes a slot and leaves no record.
        assert [slot.request_id for slot in slots] == ["first", "second", "third"]
        assert all(before <= slot.at_ms <= after for slot in slots)
        # At the bucket's pace (20/s, a burst of 1.5): three slots are at least 75 ms apart from first to last.
        assert slots[-1].at_ms - slots[0].at_ms >= (3 - 1.5) / 20 * 1000
    finally:
        server.delete(f"cpv:throttle:{key}", f"cpv:throttle:{key}:pause", f"cpv:throttle:{key}:slots")

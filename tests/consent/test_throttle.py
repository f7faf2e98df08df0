"""The shared limiter when Redis stops answering: each process keeps the pace alone (its own token bucket) and
the renewal or ApplicationConsent in hand goes on; Redis is asked again a few seconds later."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
import redis

from consent import throttle
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
def away(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Forget which buckets found Redis away (module state of this process)."""
    monkeypatch.setattr(throttle, "_redis_away_until", {})
    monkeypatch.setattr(throttle, "_local_buckets", {})


def limiter(url: str, key: str, *, rate: int = 20) -> throttle.RedisLimiter:
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    return throttle.RedisLimiter(client=client, key=key, rate=rate, capacity=1.5, what="test request")


def test_with_redis_away_requests_go_on_at_the_pace_of_this_process(away, caplog) -> None:  # type: ignore[no-untyped-def]
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    key = f"test-{uuid.uuid4().hex}"
    limiter_down = limiter(nobody, key)

    with caplog.at_level(logging.WARNING, logger="consent.throttle"):
        waited = [limiter_down.acquire(timeout=5) for _ in range(5)]
        limiter_down.pause(0.2)
        waited.append(limiter_down.acquire(timeout=5))

    # No exception: one token of the burst at once, then the rate of 20/s, then the pause.
    assert waited[0] == 0.0 and all(w > 0 for w in waited[1:])
    assert waited[-1] >= 0.15
    warnings = [r.getMessage() for r in caplog.records if "Redis did not answer" in r.getMessage()]
    # Told once: for the next REDIS_RETRY_SECONDS nobody asks the missing Redis again.
    assert warnings == [
        f"throttle: Redis did not answer (ConnectionError); this process paces cpv:throttle:{key} alone for 5 s"
    ]


@pytest.mark.redis
def test_redis_is_asked_again_once_the_retry_time_has_passed(away, redis_url, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    key = f"test-{uuid.uuid4().hex}"
    limiter(f"redis://127.0.0.1:{free_port()}/0", key).acquire(timeout=5)
    shared = limiter(redis_url, key)
    server = redis.Redis.from_url(redis_url)
    try:
        # Within the retry time the process keeps its own pace, even with Redis back.
        shared.acquire(timeout=5)
        assert not server.exists(f"cpv:throttle:{key}")

        monkeypatch.setattr(throttle, "_redis_away_until", {})
        shared.acquire(timeout=5)
        assert server.exists(f"cpv:throttle:{key}")
    finally:
        server.delete(f"cpv:throttle:{key}", f"cpv:throttle:{key}:pause")


def test_partner_center_calls_go_on_with_redis_away(away, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_THROTTLE_URL = f"redis://127.0.0.1:{free_port()}/0"
    monkeypatch.setattr(throttle, "_clients", {})
    shared: Any = throttle.limiter_for(f"app-{uuid.uuid4().hex}")
    assert isinstance(shared, throttle.RedisLimiter)
    assert shared.acquire(timeout=5) == 0.0
    shared.pause(0.01)

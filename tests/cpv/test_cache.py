"""The Redis cache stores JSON, raw integers and bytes, never a pickle: what someone writes into Redis is never
run by the web process, and everything the product keeps there still round-trips."""

from __future__ import annotations

import pickle
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from django.core.cache.backends.redis import RedisCache

from cpv.config import load_config
from dashboard.selectors import Trends, _trends_key, overview

pytestmark = pytest.mark.redis


@pytest.fixture
def json_cache(redis_url: str) -> Any:
    cache = RedisCache(
        redis_url, {"KEY_PREFIX": f"test-{uuid.uuid4().hex}", "OPTIONS": {"serializer": "cpv.cache.JsonSerializer"}}
    )
    yield cache
    cache.clear()


class _Planted:
    """What an attacker would write: unpickling it touches a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (Path.touch, (self.marker,))


def test_a_redis_cache_from_the_configuration_uses_the_json_serializer(tmp_path: Path) -> None:
    config = load_config({"CACHE_URL": "redis://127.0.0.1:6379/3"}, base_dir=tmp_path)

    assert config.cache["OPTIONS"]["serializer"] == "cpv.cache.JsonSerializer"


def test_counters_sealed_bytes_and_json_round_trip(json_cache: Any) -> None:
    json_cache.add("failures", 1, timeout=60)
    json_cache.incr("failures")
    json_cache.set("sealed", b"\x00\x01sealed-bytes", timeout=60)
    json_cache.set("data", {"a": [1, "two", None, True]}, timeout=60)
    json_cache.set("digits", "123", timeout=60)

    assert json_cache.get("failures") == 2
    assert json_cache.get("sealed") == b"\x00\x01sealed-bytes"
    assert json_cache.get("data") == {"a": [1, "two", None, True]}
    assert json_cache.get("digits") == "123"
    assert json_cache.get_many(["failures", "data"]) == {"failures": 2, "data": {"a": [1, "two", None, True]}}


def test_an_object_that_is_not_json_is_refused_when_stored_not_pickled(json_cache: Any) -> None:
    with pytest.raises(TypeError):
        json_cache.set("object", object(), timeout=60)


def test_a_pickle_written_into_redis_is_never_unpickled(json_cache: Any, redis_url: str, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    key = json_cache.make_and_validate_key("portal-handoff:planted")
    redis.Redis.from_url(redis_url).set(key, pickle.dumps(_Planted(marker)))

    value = json_cache.get("portal-handoff:planted")

    assert value is None and not marker.exists()
    # the same payload read by Django's default serializer would have run
    pickle.loads(pickle.dumps(_Planted(marker)))  # noqa: S301 - the proof that the payload is live
    assert marker.exists()


@pytest.mark.django_db
def test_the_overviews_trends_round_trip_through_json(json_cache: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cpv.cache.cache", json_cache)

    made = overview(days=30, cached=True)
    reused = overview(days=30, cached=True)

    assert isinstance(Trends.from_json(json_cache.get(_trends_key(30))), Trends)
    assert reused.as_of == made.as_of
    assert reused.by_status == made.by_status and reused.renewals == made.renewals

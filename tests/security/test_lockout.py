"""The staff lockout and the public pages' limits count an attempt before checking it (an atomic add, else
increment), so guesses sent at the same moment cannot pass the limit; an IPv6 client is counted by its /64; a value
under a counter that this site did not write is reset, never a 500."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from cpv import ratelimit
from partners.staff import sign_in_keys
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def redis_cache(settings, redis_url):  # type: ignore[no-untyped-def]
    """The shared cache on the real Redis, as production has it (JSON serializer, no pickle)."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
            "OPTIONS": {"serializer": "cpv.cache.JsonSerializer"},
            "KEY_PREFIX": "lockout-test",
        }
    }
    cache.clear()
    yield
    cache.clear()


def test_guesses_sent_together_are_checked_at_most_the_limit_times(admin_user, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """While the first guess is being checked, nine more arrive. A check-then-count lockout lets all ten reach the
    password check (none was counted yet); counting first lets only the limit's worth through."""
    from django.contrib.auth import forms as auth_forms

    settings.CPV_SIGNIN_MAX_FAILURES = 3
    real_authenticate = auth_forms.authenticate
    checked: list[str] = []
    answers: list[int] = []

    def slow_authenticate(request: Any, **credentials: Any) -> Any:
        checked.append(credentials["username"])
        if len(checked) == 1:  # the first check is slow: the others come in meanwhile
            for n in range(9):
                answers.append(
                    Client(REMOTE_ADDR=f"192.0.2.{n + 10}")
                    .post("/accounts/login/", {"username": "ada-admin", "password": f"guess-{n}"})
                    .status_code
                )
        return real_authenticate(request, **credentials)

    monkeypatch.setattr(auth_forms, "authenticate", slow_authenticate)

    Client(REMOTE_ADDR="192.0.2.1").post("/accounts/login/", {"username": "ada-admin", "password": "guess"})

    assert len(checked) == 3
    monkeypatch.setattr(auth_forms, "authenticate", real_authenticate)
    locked = Client(REMOTE_ADDR="192.0.2.99").post("/accounts/login/", {"username": "ada-admin", "password": PASSWORD})
    assert locked.status_code == 200 and b"Too many failed sign-ins" in locked.content


@pytest.mark.redis
def test_threads_counting_at_once_on_redis_let_exactly_the_limit_through(redis_cache) -> None:  # type: ignore[no-untyped-def]
    allowed: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(24)

    def hit() -> None:
        start.wait()
        verdict = ratelimit.count_hit("race-test", timeout=60) <= 5
        with lock:
            allowed.append(verdict)

    threads = [threading.Thread(target=hit) for _ in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert allowed.count(True) == 5 and len(allowed) == 24


@pytest.mark.parametrize(
    ("address", "bucket"),
    [
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("192.0.2.7", "192.0.2.7"),
        ("fe80::1%eth0", "fe80::/64"),
        ("unknown", "unknown"),
    ],
)
def test_an_ipv6_address_is_counted_by_its_64(address: str, bucket: str) -> None:
    assert ratelimit.address_bucket(address) == bucket


def test_a_public_page_limit_counts_every_address_of_one_ipv6_64_together(monkeypatch, one_rate_window) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(ratelimit.LIMITS, "consent-callback", ratelimit.Limit(2, 60))
    for host in ("1", "2"):
        Client(REMOTE_ADDR=f"2001:db8:5:6::{host}").post("/consent/callback", {"state": "x"})

    same_prefix = Client(REMOTE_ADDR="2001:db8:5:6:dead:beef:0:3").post("/consent/callback", {"state": "x"})
    next_prefix = Client(REMOTE_ADDR="2001:db8:5:7::1").post("/consent/callback", {"state": "x"})

    assert same_prefix.status_code == 429 and next_prefix.status_code != 429


def test_the_staff_lockout_counts_an_ipv6_64_as_one_address(admin_user, settings) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_SIGNIN_MAX_FAILURES = 1  # four per address
    for n in range(4):
        Client(REMOTE_ADDR=f"2001:db8:9:9::{n + 1}").post(
            "/accounts/login/", {"username": f"someone-{n}", "password": "wrong"}
        )

    locked = Client(REMOTE_ADDR="2001:db8:9:9:1:2:3:4").post(
        "/accounts/login/", {"username": "ada-admin", "password": PASSWORD}
    )
    elsewhere = Client(REMOTE_ADDR="2001:db8:9:a::1").post(
        "/accounts/login/", {"username": "ada-admin", "password": PASSWORD}
    )

    assert locked.status_code == 200 and b"Too many failed sign-ins" in locked.content
    assert elsewhere.status_code == 302


@pytest.mark.parametrize("backend", ["locmem", pytest.param("redis", marks=pytest.mark.redis)])
def test_a_foreign_value_under_a_counter_is_reset_not_a_500(backend, admin_user, request, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    if backend == "redis":
        request.getfixturevalue("redis_cache")
    client = Client(REMOTE_ADDR="198.51.100.7")
    keys = sign_in_keys(None, "ada-admin")
    cache.set(keys["username"], "not a number", timeout=60)
    monkeypatch.setitem(ratelimit.LIMITS, "consent-callback", ratelimit.Limit(5, 60))
    page_key = "ratelimit-foreign"
    cache.set(page_key, {"a": "dict"}, timeout=60)

    wrong = client.post("/accounts/login/", {"username": "ada-admin", "password": "wrong"})

    assert wrong.status_code == 200 and b"did not match" in wrong.content
    assert cache.get(keys["username"]) == 1
    assert ratelimit.count_hit(page_key, timeout=60) == 1 and ratelimit.count_hit(page_key, timeout=60) == 2


@pytest.mark.redis
def test_on_redis_a_hit_is_one_round_trip_and_the_counter_lives_its_window(redis_cache, redis_url, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import redis

    ratelimit.count_hit("trips-test", timeout=90)  # the first hit (the script is loaded once per server)
    commands: list[str] = []
    real = redis.Redis.execute_command

    def counted(self: redis.Redis, *args: Any, **options: Any) -> Any:
        commands.append(str(args[0]))
        return real(self, *args, **options)

    monkeypatch.setattr(redis.Redis, "execute_command", counted)
    assert ratelimit.count_hit("trips-test", timeout=90) == 2
    assert commands == ["EVALSHA"]
    monkeypatch.setattr(redis.Redis, "execute_command", real)

    assert cache.get("trips-test") == 2
    assert 85 <= redis.Redis.from_url(redis_url).ttl(cache.make_and_validate_key("trips-test")) <= 90
    ratelimit.uncount_hit("trips-test")
    assert cache.get("trips-test") == 1

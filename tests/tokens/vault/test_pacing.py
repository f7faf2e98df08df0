"""The shared pace of Key Vault creates: every PUT waits for a slot, so a pool of workers stays under Key
Vault's 300 creates per 10 s instead of collecting 429s; and the limiters' bursts stay under each ceiling."""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest

from microsoft import throttle
from tokens.vault import build_vault, secret_name_for
from tokens.vault.azure import AzureVault

pytestmark = pytest.mark.django_db

THROTTLED = {"error": {"code": "Throttled", "message": "Request was not processed because too many requests."}}


class CountingLimiter:
    def __init__(self) -> None:
        self.acquired = 0
        self.paused: list[float] = []

    def acquire(self, *, timeout: float = 120.0) -> float:
        self.acquired += 1
        return 0.0

    def pause(self, seconds: float) -> None:
        self.paused.append(seconds)


def test_each_put_attempt_takes_one_slot_and_nothing_else_does(azure_settings: Any, sim: Any) -> None:
    limiter = CountingLimiter()
    vault = build_vault(creates_limiter=limiter, sleep=lambda s: None)
    assert isinstance(vault, AzureVault)
    name = secret_name_for(uuid.uuid4())

    first = vault.write(name=name, value="one")
    vault.read(name=name)
    vault.versions(name=name)
    vault.disable(name=name, version=first.version)
    assert limiter.acquired == 1

    sim.control.inject_fault("vault", method="PUT", path=r"^/secrets/", status=429, body=THROTTLED, times=1)
    vault.write(name=name, value="two", known_count=1)
    assert limiter.acquired == 3  # the 429'd attempt was a create too


def test_without_a_shared_store_there_is_no_pace(settings: Any) -> None:
    settings.CPV_THROTTLE_URL = ""
    assert throttle.vault_creates_limiter("vault.example:443") is None
    settings.CPV_THROTTLE_URL = "redis://127.0.0.1:6379/12"
    settings.CPV_VAULT_CREATES_PER_SECOND = 0
    assert throttle.vault_creates_limiter("vault.example:443") is None


def test_the_pace_of_creates_stays_within_300_per_10_seconds(settings: Any) -> None:
    settings.CPV_THROTTLE_URL = "redis://127.0.0.1:6379/12"
    settings.CPV_VAULT_CREATES_PER_SECOND = throttle.VAULT_CREATES_PER_SECOND
    limiter = throttle.vault_creates_limiter("vault.example:443")
    assert isinstance(limiter, throttle.RedisLimiter)
    # A token bucket lets through at most floor(rate * window + burst) in any window.
    assert math.floor(limiter._rate * 10 + limiter._capacity) <= 300 - throttle.HEADROOM
    assert limiter._rate * 10 + limiter._capacity >= 0.95 * 300


@pytest.mark.parametrize("rate", [10, 40, 45, 48, 49])
def test_partner_center_bursts_never_pass_50_in_a_second(rate: int) -> None:
    capacity = throttle._capacity(rate, ceiling=throttle.PARTNER_CENTER_LIMIT)
    assert 1 <= capacity and math.floor(rate + capacity) <= 50
    # Below 49 a second, one request of headroom is left for a request that arrives late.
    assert math.floor(rate + capacity) <= 50 - throttle.HEADROOM or rate == 49
    assert throttle._capacity(40, ceiling=throttle.PARTNER_CENTER_LIMIT) == throttle._capacity(40)

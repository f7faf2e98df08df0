"""A rate limiter shared by every worker (Partner Center allows 50 requests/s per application, Key Vault 300
creates per 10 s): a token bucket in Redis, or 100 ms counters in the database without Redis. While Redis is
unreachable each process paces alone (LocalBucket); a Redis that answers with an error is raised."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from redis.exceptions import AuthenticationError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cpv.models import ThrottleWindow

logger = logging.getLogger(__name__)


class ThrottleTimeout(Exception):
    """No request slot became free within the wait allowed: try again later."""


class Limiter(Protocol):
    def acquire(self, *, timeout: float = ..., request_id: str = ...) -> float:
        """Block until one request may be sent: the seconds waited. Raises ThrottleTimeout."""

    def pause(self, seconds: float) -> None:
        """Hold every process's requests back for `seconds` (a server's Retry-After)."""


# KEYS[1]: the bucket (a hash of tokens and the time of the last refill), KEYS[2]: the pause key, KEYS[3]: the
# record of granted slots (a stream). ARGV[1]: tokens per second, ARGV[2]: capacity, ARGV[3]: the request a token
# is for ('' records nothing), ARGV[4]: how many slots the record keeps, ARGV[5]: for how many milliseconds.
# Returns 0 when a token was taken, else milliseconds to wait.
_TAKE = """
local pause = redis.call('PTTL', KEYS[2])
if pause > 0 then return pause end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1])
local ts = tonumber(b[2])
if tokens == nil or ts == nil then tokens = cap; ts = now end
tokens = math.min(cap, tokens + math.max(0, now - ts) * rate / 1000)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  if ARGV[3] ~= '' then
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'request', ARGV[3], 'at', tostring(now))
    redis.call('PEXPIRE', KEYS[3], ARGV[5])
  end
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], 60000)
return wait
"""
# Extend the pause, never shorten it.
_PAUSE = """
local left = redis.call('PTTL', KEYS[1])
if left < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) end
return 1
"""


# Partner Center: 50 requests per second per application id.
PARTNER_CENTER_LIMIT = 50
# Key Vault: 300 secret creates per 10 seconds per vault (every renewal writes one new version).
VAULT_CREATE_LIMIT = 300
VAULT_WINDOW = 10
# The default pace of secret creates: 29/s with a burst of 3 is at most 293 in any 10 s.
VAULT_CREATES_PER_SECOND = 29


# Requests the bucket leaves unused under a service's ceiling: the bucket counts when a request may start, the
# service when it arrives, and a request delayed on its way (a busy CPU, the network) can arrive in the next
# window with the ones that went on time.
HEADROOM = 1
# Half a request of the burst is a cushion, not a request: the bucket passes whole requests, so at most
# floor(rate * window + capacity) in a window, and the half keeps the slot of a request that comes for it a
# little late (a bucket of exactly one would drop that time: about 2 of 48 a second in the fan-out benchmark).
CUSHION = 0.5


def _capacity(rate: int, *, ceiling: int | None = None, window: int = 1) -> float:
    """The bucket's burst: an eighth of a second's worth, cut to keep any `window` HEADROOM under `ceiling`."""
    burst = float(max(1, rate // 8))
    if ceiling is not None:
        burst = min(burst, ceiling - rate * window - HEADROOM + CUSHION)
    return max(1.0, burst)


class LocalBucket:
    """The token bucket of _TAKE in this process's memory: the pace a process keeps alone while Redis is away."""

    def __init__(self, *, rate: int, capacity: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._capacity = capacity
        self._clock = clock
        self._tokens = capacity
        self._at = clock()
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def take(self) -> float:
        """Take a token: 0.0, or the seconds to wait before asking again."""
        with self._lock:
            now = self._clock()
            if now < self._paused_until:
                return self._paused_until - now
            self._tokens = min(self._capacity, self._tokens + (now - self._at) * self._rate)
            self._at = now
            # (Within a rounding error of a whole token is a token; a wait is at least a millisecond, as in _TAKE.)
            if self._tokens >= 1 - 1e-9:
                self._tokens = max(0.0, self._tokens - 1)
                return 0.0
            return max(0.001, (1 - self._tokens) / self._rate)

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)


# While Redis is away: each key's LocalBucket (shared by the process's threads), and the key's outage (when one
# caller asks Redis again, and how many times in a row it did not answer). The wait between asks doubles from
# REDIS_RETRY_SECONDS up to REDIS_RETRY_MAX_SECONDS; the other callers keep the local pace meanwhile.
REDIS_RETRY_SECONDS = 5.0
REDIS_RETRY_MAX_SECONDS = 60.0
_local_buckets: dict[str, LocalBucket] = {}
_outages: dict[str, tuple[float, int]] = {}
_away_lock = threading.Lock()
_clock = time.monotonic


# The record of the slots a RedisLimiter granted to named requests: what went out when, by the Redis server's
# clock, which is the clock the bucket keeps its promise by (no more than floor(rate * t + capacity) slots in any
# t seconds); a request reaches the service later, by however long it spent on the way.
SLOTS_KEPT = 10_000
SLOTS_KEPT_SECONDS = 600


class Slot(NamedTuple):
    request_id: str
    at_ms: int  # the Redis server's clock, in milliseconds


def _unreachable(exc: RedisError) -> bool:
    """Whether Redis is unreachable (paced around) rather than refusing (a configuration fault, raised)."""
    return isinstance(exc, (RedisConnectionError, RedisTimeoutError)) and not isinstance(exc, AuthenticationError)


class RedisLimiter:
    def __init__(
        self,
        *,
        client: Any,
        key: str,
        rate: int,
        capacity: float | None = None,
        what: str = "Partner Center request",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._bucket = f"cpv:throttle:{key}"
        self._pause_key = f"cpv:throttle:{key}:pause"
        self._slots_key = f"cpv:throttle:{key}:slots"
        self._rate = rate
        self._capacity = capacity if capacity is not None else _capacity(rate)
        self._what = what
        self._take = client.register_script(_TAKE)
        self._pause = client.register_script(_PAUSE)
        self._sleep = sleep

    def acquire(self, *, timeout: float = 120.0, request_id: str = "") -> float:
        waited = 0.0
        while True:
            wait = self._wait(request_id)
            if wait <= 0:
                return waited
            if waited + wait > timeout:
                raise ThrottleTimeout(f"no {self._what} slot within {timeout:.0f} s")
            self._sleep(wait)
            waited += wait

    def pause(self, seconds: float) -> None:
        if self._shared(self._pause, [self._pause_key], [max(1, int(seconds * 1000))]) is None:
            self._local().pause(seconds)

    def slots(self) -> list[Slot]:
        """The slots granted to named requests, oldest first, as far as the record goes. Raises RedisError."""
        entries = self._client.xrange(self._slots_key)
        return [Slot(request_id=f[b"request"].decode(), at_ms=int(f[b"at"])) for _, f in entries]

    def _wait(self, request_id: str) -> float:
        wait_ms = self._shared(
            self._take,
            [self._bucket, self._pause_key, self._slots_key],
            [self._rate, self._capacity, request_id, SLOTS_KEPT, SLOTS_KEPT_SECONDS * 1000],
        )
        return self._local().take() if wait_ms is None else wait_ms / 1000

    def _shared(self, script: Any, keys: list[str], args: list[Any]) -> int | None:
        """Run a script on Redis: its answer, or None while Redis is away."""
        if not self._ask_redis():
            return None
        try:
            answer = script(keys=keys, args=args)
        except RedisError as exc:
            self._not_answered(exc)
            return None
        self._answered()
        return int(answer)

    def _local(self) -> LocalBucket:
        with _away_lock:
            bucket = _local_buckets.get(self._bucket)
            if bucket is None:
                bucket = _local_buckets[self._bucket] = LocalBucket(rate=self._rate, capacity=self._capacity)
            return bucket

    def _ask_redis(self) -> bool:
        """Whether to ask Redis: always, unless it is away; then one caller each retry time."""
        if self._bucket not in _outages:
            return True
        with _away_lock:
            outage = _outages.get(self._bucket)
            if outage is None:
                return True
            retry_at, failures = outage
            now = _clock()
            if now < retry_at:
                return False
            # This caller asks; should Redis not answer it either, the next ask waits twice as long.
            _outages[self._bucket] = (now + _retry_after(failures + 1), failures)
            return True

    def _answered(self) -> None:
        if self._bucket in _outages:
            with _away_lock:
                outage = _outages.pop(self._bucket, None)
            if outage is not None:
                logger.info("throttle: Redis answers again; %s is shared again", self._bucket)

    def _not_answered(self, exc: RedisError) -> None:
        if not _unreachable(exc):
            raise exc
        with _away_lock:
            failures = _outages.get(self._bucket, (0.0, 0))[1] + 1
            retry_in = _retry_after(failures)
            _outages[self._bucket] = (_clock() + retry_in, failures)
        if failures == 1:
            logger.warning(
                "throttle: Redis did not answer (%s); this process paces %s alone until it does",
                exc.__class__.__name__,
                self._bucket,
            )


def _retry_after(failures: int) -> float:
    return min(REDIS_RETRY_MAX_SECONDS, REDIS_RETRY_SECONDS * 2 ** max(0, failures - 1))


class DatabaseLimiter:
    """Requests per 100 ms slot in ThrottleWindow rows, by an atomic conditional UPDATE."""

    SLOT = 0.1

    def __init__(self, *, key: str, rate: int, sleep: Callable[[float], None] = time.sleep) -> None:
        self._key = key[:90]
        self._per_slot = max(1, round(rate * self.SLOT))
        self._sleep = sleep

    def _pause_until(self) -> float:
        row = ThrottleWindow.objects.filter(key=self._key + ":pause", second=0).values_list("count", flat=True).first()
        return (row or 0) / 1000

    def acquire(self, *, timeout: float = 120.0, request_id: str = "") -> float:
        waited = 0.0
        while True:
            now = time.time()
            paused = self._pause_until() - now
            if paused <= 0:
                slot = int(now / self.SLOT)
                taken = ThrottleWindow.objects.filter(key=self._key, second=slot, count__lt=self._per_slot).update(
                    count=F("count") + 1
                )
                if not taken and not ThrottleWindow.objects.filter(key=self._key, second=slot).exists():
                    try:
                        with transaction.atomic():
                            ThrottleWindow.objects.create(key=self._key, second=slot, count=1)
                        taken = 1
                    except IntegrityError:
                        taken = 0
                if taken:
                    if slot % 100 == 0:
                        ThrottleWindow.objects.filter(key=self._key, second__lt=slot - 600).delete()
                    return waited
                paused = (slot + 1) * self.SLOT - now
            if waited + paused > timeout:
                raise ThrottleTimeout(f"no Partner Center request slot within {timeout:.0f} s")
            self._sleep(paused)
            waited += paused

    def pause(self, seconds: float) -> None:
        until = int((time.time() + seconds) * 1000)
        updated = ThrottleWindow.objects.filter(key=self._key + ":pause", second=0, count__lt=until).update(count=until)
        if not updated:
            try:
                with transaction.atomic():
                    ThrottleWindow.objects.create(key=self._key + ":pause", second=0, count=until)
            except IntegrityError:
                pass  # a longer pause is already there


THROTTLE_REDIS_TIMEOUT = 2.0
_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def _redis(url: str) -> Any:
    import redis

    with _clients_lock:
        client = _clients.get(url)
        if client is None:
            # Short timeouts: while Redis does not answer, a caller waits this long once before pacing alone.
            client = _clients[url] = redis.Redis.from_url(
                url, socket_timeout=THROTTLE_REDIS_TIMEOUT, socket_connect_timeout=THROTTLE_REDIS_TIMEOUT
            )
        return client


def limiter_for(application_id: str) -> Limiter:
    rate = int(settings.CPV_PC_REQUESTS_PER_SECOND)
    key = f"partner-center:{application_id}"
    url = getattr(settings, "CPV_THROTTLE_URL", "")
    if url:
        capacity = _capacity(rate, ceiling=PARTNER_CENTER_LIMIT)
        return RedisLimiter(client=_redis(url), key=key, rate=rate, capacity=capacity)
    return DatabaseLimiter(key=key, rate=rate)


def vault_creates_limiter(vault: str) -> Limiter | None:
    """The shared pace of creates in Key Vault `vault`; None without Redis or with a pace of 0."""
    rate = int(getattr(settings, "CPV_VAULT_CREATES_PER_SECOND", VAULT_CREATES_PER_SECOND))
    url = getattr(settings, "CPV_THROTTLE_URL", "")
    if rate <= 0 or not url:
        return None
    capacity = _capacity(rate, ceiling=VAULT_CREATE_LIMIT, window=VAULT_WINDOW)
    return RedisLimiter(
        client=_redis(url), key=f"key-vault-creates:{vault.lower()}", rate=rate, capacity=capacity, what="vault write"
    )

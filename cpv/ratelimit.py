"""Fixed-window rate limits on the public pages, counted in the shared cache: one table of limits and one 429 page.
Every limit counts a hit before anything is checked (on Redis one script's increment, elsewhere an atomic add, else
increment), so that guesses made at the same moment cannot pass the limit between a read and a write; the staff
lockout counts the same way."""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from redis.exceptions import ResponseError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limit:
    """At most `hits` requests per client address in `window` seconds."""

    hits: int
    window: int


# Per client address: generous for a person, tight for a script. Keyed by the page (and step) it guards.
LIMITS: dict[str, Limit] = {
    "consent-landing": Limit(60, 600),
    "consent-start": Limit(20, 600),
    "consent-callback": Limit(30, 600),
    # Each asks for an email to the partner's contact: a few an hour is plenty for a person.
    "consent-fresh-link": Limit(5, 3600),
    "onboard": Limit(10, 3600),
    "portal-start": Limit(20, 600),
    "portal-callback": Limit(30, 600),
    "portal-gdap-check": Limit(6, 600),
    "staff-start": Limit(20, 600),
    "staff-callback": Limit(30, 600),
}


def client_address(request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR, or the proxy's last X-Forwarded-For hop when one is trusted."""
    if settings.CONFIG.trust_proxy:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if hops:
            return hops[-1]
    return str(request.META.get("REMOTE_ADDR", "unknown"))


def address_bucket(address: str) -> str:
    """What a per-address limit counts an address as: an IPv6 address by its /64 (one subscriber holds the whole
    prefix and can pick any address in it), an IPv4-mapped IPv6 address as its IPv4 one, anything else as given."""
    try:
        ip = ipaddress.ip_address(address.strip().split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


# One round trip on Redis: the increment and, for the first hit, the counter's life. Django's Redis cache stores a whole
# number as itself (RedisSerializer), so the count stays readable through the cache; its add() and incr() would be
# three round trips a repeat hit (SET NX, EXISTS, INCR).
_COUNT_ON_REDIS = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""


def count_hit(name: str, *, timeout: int) -> int:
    """Count one hit under `name` before anything it guards is checked, atomically: the count including this hit. The
    counter's life starts at its first hit; a value this code did not write under the name is reset to this hit
    rather than failing the request."""
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        key = backend.make_and_validate_key(name)
        client = backend._cache.get_client(key, write=True)  # type: ignore[attr-defined]  # the backend's own client
        try:
            return int(client.register_script(_COUNT_ON_REDIS)(keys=[key], args=[timeout]))
        except ResponseError:  # not a counter ("value is not an integer")
            return _counter_reset(name, timeout=timeout)
    for _ in range(3):
        if cache.add(name, 1, timeout=timeout):
            return 1
        try:
            return int(cache.incr(name))
        except ValueError:  # expired between add and incr: add again
            continue
        except TypeError:  # not a counter (locmem: str + int)
            return _counter_reset(name, timeout=timeout)
    return 1


def _counter_reset(name: str, *, timeout: int) -> int:
    """A value this code did not write under a counter's name: the counter starts again at this hit."""
    logger.warning("a counter held a value this site does not write; it was reset")
    cache.set(name, 1, timeout=timeout)
    return 1


def uncount_hit(name: str) -> None:
    """Give back a hit counted with `count_hit` (the attempt turned out right); a missing or foreign counter is left."""
    try:
        cache.decr(name)
    except (ValueError, TypeError, ResponseError):
        pass


def allow(*, scope: str, key: str, limit: int, window: int) -> bool:
    """Count one hit for `key` in `scope`; False once more than `limit` hits fall in the current window."""
    bucket = int(time.time() // window)
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return count_hit(f"ratelimit:{scope}:{digest}:{bucket}", timeout=window + 5) <= limit


def too_many(request: HttpRequest, scope: str) -> HttpResponse | None:
    """Count this request against `scope`'s limit for the client's address: None while under it, else a 429 page."""
    limit = LIMITS[scope]
    if allow(scope=scope, key=address_bucket(client_address(request)), limit=limit.hits, window=limit.window):
        return None
    response = render(request, "429.html", {"minutes": max(1, limit.window // 60)}, status=429)
    response["Retry-After"] = str(limit.window)
    response["Cache-Control"] = "private, no-store"
    return response

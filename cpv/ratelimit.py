"""Fixed-window rate limits on the public pages, counted in the shared cache: one table of limits and one 429 page."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


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


def allow(*, scope: str, key: str, limit: int, window: int) -> bool:
    """Count one hit for `key` in `scope`; False once more than `limit` hits fall in the current window."""
    bucket = int(time.time() // window)
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    name = f"ratelimit:{scope}:{digest}:{bucket}"
    if cache.add(name, 1, timeout=window + 5):
        return True
    try:
        count = cache.incr(name)
    except ValueError:  # expired between add and incr
        cache.add(name, 1, timeout=window + 5)
        return True
    return count <= limit


def too_many(request: HttpRequest, scope: str) -> HttpResponse | None:
    """Count this request against `scope`'s limit for the client's address: None while under it, else a 429 page."""
    limit = LIMITS[scope]
    if allow(scope=scope, key=client_address(request), limit=limit.hits, window=limit.window):
        return None
    response = render(request, "429.html", {"minutes": max(1, limit.window // 60)}, status=429)
    response["Retry-After"] = str(limit.window)
    response["Cache-Control"] = "private, no-store"
    return response

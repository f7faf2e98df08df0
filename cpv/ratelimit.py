"""Fixed-window rate limits on public endpoints, counted in the shared cache."""

from __future__ import annotations

import hashlib
import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest


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


def allow_request(request: HttpRequest, *, scope: str, limit: int, window: int) -> bool:
    return allow(scope=scope, key=client_address(request), limit=limit, window=window)

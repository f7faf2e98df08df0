"""The Redis cache's serializer: raw integers (for INCR), marked bytes and JSON, never pickle (whoever could write
into Redis would run code in the web process); a value this code did not write reads as missing. And the reads and
writes of counts that pages reuse, which go on without the cache when it fails."""

from __future__ import annotations

import json
import logging
from typing import Any

from django.core.cache import cache

logger = logging.getLogger(__name__)

_BYTES = b"b"
_JSON = b"j"


class JsonSerializer:
    """`OPTIONS["serializer"]` of django.core.cache.backends.redis.RedisCache."""

    def dumps(self, obj: Any) -> bytes | int:
        """Raises TypeError for a value that is neither an int, bytes nor JSON (no silent pickle)."""
        if type(obj) is int:
            return obj
        if isinstance(obj, bytes):
            return _BYTES + obj
        return _JSON + json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()

    def loads(self, data: bytes | int) -> Any:
        if isinstance(data, int):
            return data
        try:
            return int(data)
        except ValueError:
            pass
        marker, body = data[:1], data[1:]
        if marker == _BYTES:
            return bytes(body)
        if marker == _JSON:
            try:
                return json.loads(body)
            except (ValueError, RecursionError):
                pass
        logger.warning("a cache entry in a form this site does not write was ignored")
        return None


# --- counts reused through the cache ---------------------------------------------------------------------------------
# A page that reuses a count does without the cache when the cache fails: it counts afresh, and says so in the log.


def cache_read(key: str, *, what: str) -> Any:
    """The value cached at `key`, or None when there is none or the cache cannot be read (logged as `what`)."""
    try:
        return cache.get(key)
    except Exception:  # the caller makes the value itself
        logger.warning("%s could not be read from the cache", what, exc_info=True)
        return None


def cache_write(key: str, value: Any, seconds: float, *, what: str) -> None:
    """Cache `value` at `key` for `seconds`; a cache that fails is logged (as `what`), and the next reader makes it."""
    try:
        cache.set(key, value, seconds)
    except Exception:  # the next reader makes it again
        logger.warning("%s could not be stored in the cache", what, exc_info=True)


def cache_drop(keys: list[str], *, what: str) -> None:
    """Drop the values cached at `keys`; a cache that fails is logged (as `what`): they expire on their own."""
    try:
        cache.delete_many(keys)
    except Exception:  # they expire on their own
        logger.warning("%s could not be dropped from the cache", what, exc_info=True)

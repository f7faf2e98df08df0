"""The Redis cache's serializer: raw integers (for INCR), marked bytes and JSON, never pickle (whoever could write
into Redis would run code in the web process); a value this code did not write reads as missing."""

from __future__ import annotations

import json
import logging
from typing import Any

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

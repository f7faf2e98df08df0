"""The simulator's request log: what each service received and answered, without any secret."""

from __future__ import annotations

import itertools
import logging
import re
from collections import deque
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aiohttp import web

logger = logging.getLogger(__name__)

# query or form fields that carry secrets: never stored in the log
SECRET_FIELDS = frozenset(
    {
        "code",
        "client_secret",
        "client_assertion",
        "code_verifier",
        "refresh_token",
        "assertion",
        "id_token",
        "access_token",
        "password",
        "$skiptoken",
    }
)
REQUEST_HEADERS = (
    "MS-RequestId",
    "MS-CorrelationId",
    "MS-ContinuationToken",
    "client-request-id",
    "x-ms-client-request-id",
    "ValidateMfa",
    "ConsistencyLevel",
    "User-Agent",
)
RESPONSE_HEADERS = (
    "Retry-After",
    "WWW-Authenticate",
    "Location",
    "MS-RequestId",
    "MS-CorrelationId",
    "isMfaCompliant",
)


LOG_KEY: web.RequestKey[dict[str, Any]] = web.RequestKey("simulator_log", dict)


def redact_url(url: str) -> str:
    """A URL (a redirect's Location) with the values of secret query or fragment fields replaced."""
    parts = urlsplit(url)

    def clean(text: str) -> str:
        pairs = parse_qsl(text, keep_blank_values=True)
        return urlencode([(k, "[redacted]" if k.lower() in SECRET_FIELDS else v) for k, v in pairs])

    return urlunsplit(parts._replace(query=clean(parts.query), fragment=clean(parts.fragment)))


def redact(params: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for key in params:
        out[key] = "[redacted]" if key.lower() in SECRET_FIELDS else str(params.get(key))
    return out


class RequestLog:
    def __init__(self, maxlen: int = 100_000) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self._seq = itertools.count(1)

    def add(self, entry: dict[str, Any]) -> None:
        entry["seq"] = next(self._seq)
        self._entries.append(entry)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def query(
        self,
        *,
        service: str | None = None,
        method: str | None = None,
        path: str | None = None,
        status: int | None = None,
        since: int | None = None,
        limit: int | None = None,
        **detail: str,
    ) -> list[dict[str, Any]]:
        """Entries in order; `path` is a regular expression searched in the path; other keyword
        filters compare (as text) with the entry's fields or its `detail` fields."""
        path_re = re.compile(path) if path else None
        out = []
        for entry in self._entries:
            if since is not None and entry["seq"] <= since:
                continue
            if service and entry["service"] != service:
                continue
            if method and entry["method"] != method.upper():
                continue
            if status is not None and entry["status"] != status:
                continue
            if path_re and not path_re.search(entry["path"]):
                continue
            if detail and not all(str(entry.get(k, entry["detail"].get(k))) == str(v) for k, v in detail.items()):
                continue
            out.append(entry)
        if limit is not None:
            out = out[-limit:] if limit > 0 else []
        return out

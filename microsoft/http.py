"""The HTTP sessions every Microsoft client uses: one factory, with timeouts."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests

# Distinct (host, options) answers kept per session: Entra, Partner Center, Graph and the vault are a few hosts.
MAX_REMEMBERED = 64
# Seconds to connect, seconds to read, for a request that names no timeout of its own.
DEFAULT_TIMEOUT = (5.0, 30.0)


class EnvironmentOnceSession(requests.Session):
    """A requests session that reads proxy and CA-bundle settings from the environment once per host."""

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[tuple[Any, ...], dict[str, Any]] = {}

    def merge_environment_settings(  # type: ignore[override]
        self, url: str | bytes | None, proxies: Mapping[str, str] | None, stream: bool | None, verify: Any, cert: Any
    ) -> dict[str, Any]:
        merge: Any = super().merge_environment_settings
        if not self.trust_env:
            return dict(merge(url, proxies, stream, verify, cert))
        parts = urlsplit(url.decode() if isinstance(url, bytes) else url or "")
        key = (parts.scheme, parts.netloc, tuple(sorted((proxies or {}).items())), stream, verify, repr(cert))
        settings = self._environment.get(key)
        if settings is None:
            settings = dict(merge(url, proxies, stream, verify, cert))
            if len(self._environment) < MAX_REMEMBERED:
                self._environment[key] = settings
        # A copy: requests adds to the proxies it is given.
        return {**settings, "proxies": dict(settings["proxies"])}


class TimeoutSession(EnvironmentOnceSession):
    """A session whose every request has a timeout (a caller's own wins), so a silent Microsoft never hangs a worker."""

    timeout: tuple[float, float] = DEFAULT_TIMEOUT

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().request(method, url, *args, **kwargs)


_sessions = threading.local()
S = TypeVar("S", bound=TimeoutSession)


def session(kind: type[S] = TimeoutSession, *, name: str = "") -> S:  # type: ignore[assignment]
    """The calling thread's keep-alive session of `kind` and `name` (requests' sessions are not thread-safe)."""
    key = f"{kind.__module__}.{kind.__qualname__}:{name}"
    found: dict[str, TimeoutSession] | None = getattr(_sessions, "by_key", None)
    if found is None:
        found = _sessions.by_key = {}
    existing = found.get(key)
    if not isinstance(existing, kind):
        existing = found[key] = kind()
    return existing

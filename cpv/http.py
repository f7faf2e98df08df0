"""The HTTP session the Microsoft clients (msal, the Key Vault SDK) use.

requests reads the environment on every request, unless told not to: it looks through every variable for
`*_proxy` names, checks `no_proxy` against the host, and looks for a CA bundle. A worker's environment holds
a hundred variables or more, so this cost more than building the request. The environment does not change
while a process runs: this session reads it once per host and reuses the answer, with the same result.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests

# Distinct (host, options) answers kept per session: Entra, Partner Center, Graph and the vault are a few hosts.
MAX_REMEMBERED = 64


class EnvironmentOnceSession(requests.Session):
    """A requests session that reads the proxy and CA-bundle settings of the environment once per host."""

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

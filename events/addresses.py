"""Where a webhook may be posted. In production (CPV_MODE=production) only to https, and only to a host whose every
address is public: not private, loopback, link-local, shared, reserved or multicast, checked when a subscription is
saved and again before each attempt (a name may resolve elsewhere since: DNS rebinding). The attempt then connects
to the very address that was checked (`PinnedAdapter`), so no second resolution can move it. Outside production
any http(s) address is allowed (a test's receiver is on loopback)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from requests import PreparedRequest
from requests.adapters import HTTPAdapter

PRODUCTION = "production"


class UnsafeUrl(ValueError):
    """A webhook URL that may not be used; the message says why, for the person who gave it."""


def production() -> bool:
    return bool(settings.CPV_MODE == PRODUCTION)


def url_check(url: str, *, resolve: bool = True) -> str | None:
    """Check `url` for a webhook: the address to connect to (in production: the first resolved address, every one of
    them public), or None where no pinning is asked (outside production). Raises UnsafeUrl."""
    parts = urlsplit(url)
    strict = production()
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UnsafeUrl("The URL must be an absolute https:// address.")
    if strict and parts.scheme != "https":
        raise UnsafeUrl("The URL must use https:// in production.")
    if parts.username or parts.password:
        raise UnsafeUrl("The URL must not carry a user name or password.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeUrl("The URL's port is not a number between 0 and 65535.") from None
    if not strict or not resolve:
        return None
    try:
        found = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UnsafeUrl(f"The host {parts.hostname} does not resolve.") from None
    addresses = [str(info[4][0]) for info in found]
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if not ip.is_global or ip.is_multicast:
            raise UnsafeUrl(
                f"The host {parts.hostname} resolves to {ip}, a private, loopback, link-local or reserved address: "
                "refused in production."
            )
    return addresses[0]


class PinnedAdapter(HTTPAdapter):
    """Connects to `address` instead of resolving the URL's host again, keeping the host's name for the Host header,
    SNI and the certificate's check."""

    def __init__(self, address: str) -> None:
        super().__init__(max_retries=0)
        self.address = address

    def build_connection_pool_key_attributes(  # type: ignore[override]
        self, request: PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        params: dict[str, Any] = dict(host_params)
        kwargs: dict[str, Any] = dict(pool_kwargs)
        hostname = params["host"]
        params["host"] = self.address
        if params["scheme"] == "https":
            kwargs["server_hostname"] = hostname
            kwargs["assert_hostname"] = hostname
        return params, kwargs

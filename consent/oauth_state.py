"""The OAuth state of a sign-in in progress, shared by the consent flow and the portal: kept as a digest, bound to
the starting browser by a cookie, consumed once."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.http import HttpRequest, HttpResponse

# Longer than any state msal makes; a longer one is no answer to our sign-in.
MAX_STATE_LENGTH = 512


def digest(value: str) -> str:
    """SHA-256 of a state, a cookie's value or a one-time key, in hex: what is stored in their place."""
    return hashlib.sha256(value.encode()).hexdigest()


def state_digest(state: str | None) -> str:
    """The digest to look a sign-in up by; "" (matching nothing) for a missing or oversized state."""
    return digest(state) if state and len(state) <= MAX_STATE_LENGTH else ""


def browser_key(request: HttpRequest, cookie: str) -> str:
    """The key the browser holds in `cookie`, or "" when it holds none."""
    value = request.COOKIES.get(cookie, "")
    return value if isinstance(value, str) else ""


def new_browser_key() -> str:
    return secrets.token_urlsafe(32)


def browser_matches(key: str | None, stored_digest: str) -> bool:
    """Whether the browser's key is the one the sign-in was bound to, in constant time (no key never matches)."""
    return bool(key) and bool(stored_digest) and hmac.compare_digest(digest(key or ""), stored_digest)


def browser_bind(response: HttpResponse, *, cookie: str, key: str, seconds: int) -> None:
    """Give the browser its key: SameSite=None for Microsoft's cross-site form_post, HTTPS or localhost, HttpOnly."""
    response.set_cookie(cookie, key, max_age=seconds, path="/", secure=True, httponly=True, samesite="None")

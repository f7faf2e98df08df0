"""Sessions end a fixed time after their sign-in, however busy they are: a request can change a session (Django
then moves its expiry on), but not the moment it started. Staff pages are never kept by a browser or a proxy."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_cache_control

logger = logging.getLogger(__name__)

# When the session's sign-in happened (seconds since the epoch), written by every sign-in.
STARTED_SESSION_KEY = "cpv_signed_in_at"


def session_max_age() -> int:
    """A session's absolute lifetime in seconds (CPV_SESSION_MAX_AGE_HOURS)."""
    return int(settings.CPV_SESSION_MAX_AGE_HOURS) * 3600


def session_signed_in(request: HttpRequest) -> None:
    """Start the session's lifetime now: call it where a sign-in puts a person into a (fresh) session."""
    request.session[STARTED_SESSION_KEY] = int(time.time())


class SessionLifetimeMiddleware:
    """After SessionMiddleware, before AuthenticationMiddleware: a session past its absolute lifetime is emptied
    before anything reads who it belongs to; a signed-in session without a start (one made before this rule) starts
    now. Responses to a signed-in staff member get `Cache-Control: no-store, private`."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = request.session
        started = session.get(STARTED_SESSION_KEY)
        if started is not None and (not isinstance(started, int | float) or time.time() - started >= session_max_age()):
            logger.info("a session reached its absolute lifetime and was ended")
            session.flush()
        response = self.get_response(request)
        session = request.session  # a sign-out may have replaced it
        if STARTED_SESSION_KEY not in session and not session.is_empty() and any(True for _ in session.keys()):
            session_signed_in(request)
        if "_auth_user_id" in session:
            patch_cache_control(response, no_store=True, private=True)
        return response

"""The OAuth state both sign-ins share: digests in place of the state and the browser's key, the binding to one
browser, and the cookie that carries it."""

from __future__ import annotations

from django.http import HttpResponse
from django.test import RequestFactory

from consent import oauth_state


def test_a_state_is_found_by_its_digest_and_a_missing_or_oversized_one_matches_nothing() -> None:
    assert oauth_state.state_digest("abc") == oauth_state.digest("abc") != "abc"
    assert len(oauth_state.digest("abc")) == 64
    assert oauth_state.state_digest("") == oauth_state.state_digest(None) == ""
    assert oauth_state.state_digest("x" * (oauth_state.MAX_STATE_LENGTH + 1)) == ""


def test_only_the_browser_that_started_the_sign_in_matches() -> None:
    key = oauth_state.new_browser_key()
    stored = oauth_state.digest(key)

    assert oauth_state.browser_matches(key, stored)
    assert not oauth_state.browser_matches(oauth_state.new_browser_key(), stored)
    assert not oauth_state.browser_matches("", stored)
    assert not oauth_state.browser_matches(None, stored)
    assert not oauth_state.browser_matches("", "")  # no key and nothing stored is no match either


def test_the_browser_key_travels_in_a_cookie_javascript_cannot_read() -> None:
    response = HttpResponse()
    oauth_state.browser_bind(response, cookie="__Host-test", key="k", seconds=60)
    cookie = response.cookies["__Host-test"]

    assert (cookie.value, cookie["max-age"], cookie["path"]) == ("k", 60, "/")
    assert cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "None"
    request = RequestFactory().get("/", HTTP_COOKIE="__Host-test=k")
    assert oauth_state.browser_key(request, "__Host-test") == "k"
    assert oauth_state.browser_key(RequestFactory().get("/"), "__Host-test") == ""

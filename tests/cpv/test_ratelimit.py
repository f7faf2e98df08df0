"""One rate limiter for the public pages (cpv.ratelimit): every limited page answers past its limit with the same
"Too many attempts" page, a 429 with Retry-After that no cache keeps."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from cpv import ratelimit

pytestmark = pytest.mark.django_db

# Each limit in the table, and a request it guards (the limit is counted before anything else is checked).
PAGES = {
    "consent-landing": ("get", "/consent/i/not-a-link/", {}),
    "consent-start": ("post", "/consent/i/not-a-link/start", {}),
    "consent-callback": ("post", "/consent/callback", {"state": "x"}),
    "consent-fresh-link": ("post", "/consent/fresh-link", {"token": "not-a-link"}),
    "onboard": ("post", "/onboard/", {"company_name": "", "signup_key": str(uuid.uuid4())}),
    "portal-start": ("post", "/portal/sign-in", {"cloud": "global"}),
    "portal-callback": ("post", "/portal/callback", {"state": "x"}),
    "portal-gdap-check": ("post", "/portal/check-gdap", {}),
    "staff-start": ("post", "/accounts/microsoft/", {}),
    "staff-callback": ("post", "/accounts/microsoft/callback/", {"state": "x"}),
}


def test_every_limit_of_the_table_guards_a_page() -> None:
    assert set(PAGES) == set(ratelimit.LIMITS)


@pytest.mark.parametrize("scope", sorted(PAGES))
def test_past_its_limit_every_public_page_answers_the_one_429_page(
    scope: str, monkeypatch, settings, one_rate_window
) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_SELF_ONBOARDING = True
    monkeypatch.setitem(ratelimit.LIMITS, scope, ratelimit.Limit(1, 120))
    method, path, data = PAGES[scope]
    client = Client(REMOTE_ADDR=f"192.0.2.{len(scope)}")

    first = getattr(client, method)(path, data)
    second = getattr(client, method)(path, data)

    assert first.status_code != 429
    assert second.status_code == 429
    assert second["Retry-After"] == "120"
    assert "no-store" in second["Cache-Control"]
    assert b'id="too-many"' in second.content and b"wait 2 minutes" in second.content


def test_another_address_is_counted_apart(monkeypatch, one_rate_window) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(ratelimit.LIMITS, "consent-callback", ratelimit.Limit(1, 60))
    Client(REMOTE_ADDR="198.51.100.1").post("/consent/callback", {"state": "x"})

    assert Client(REMOTE_ADDR="198.51.100.1").post("/consent/callback", {"state": "x"}).status_code == 429
    assert Client(REMOTE_ADDR="198.51.100.2").post("/consent/callback", {"state": "x"}).status_code != 429

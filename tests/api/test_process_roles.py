"""The token API is mounted only where tokens may be opened (the `api` role, and `all`); the web tier serves the
clients' staff pages and never the hand-out."""

from __future__ import annotations

import pytest
from django.urls import Resolver404
from django.urls.resolvers import RegexPattern, URLResolver

from cpv.urls import patterns_for

TOKEN_URL = "/api/v1/partners/6f1c3f8e-0d55-4a0e-9a57-5b7c2e0f2d11/access-tokens"


def _serves(role: str, url: str) -> bool:
    try:
        URLResolver(RegexPattern(r"^/"), patterns_for(role)).resolve(url)
    except Resolver404:
        return False
    return True


@pytest.mark.parametrize("url", [TOKEN_URL, "/api/v1/partners", "/api/v1/schema"])
def test_the_web_tier_does_not_serve_the_token_api(url: str) -> None:
    assert not _serves("web", url)
    assert _serves("api", url)
    assert _serves("all", url)


def test_the_api_process_serves_no_staff_page_and_the_web_tier_serves_them() -> None:
    for url in ("/", "/api-clients/", "/accounts/login/", "/consent/callback"):
        assert not _serves("api", url)
    assert _serves("web", "/api-clients/")
    assert _serves("api", "/healthz") and _serves("api", "/readyz")

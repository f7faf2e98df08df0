"""Fixtures for the consent tests live in tests/conftest.py, shared with the security and browser tests; this
one keeps each consent test's in-memory access tokens to itself."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from consent.access_tokens import cache_forget


@pytest.fixture(autouse=True)
def _empty_token_cache() -> Iterator[None]:
    cache_forget()
    yield
    cache_forget()

"""The product pointed at the simulator: its cloud, its app, the local vault with a key of the test's own."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from tests.microsoft import sign_in

BASE_URL = "http://127.0.0.1:8000"


@dataclass
class ConsentRun:
    """A partner's browser going through the consent pages, and Microsoft's sign-in page in between."""

    client: Client
    start_response: Any
    auth_uri: str
    fields: dict[str, str]
    on_commit: Any
    callback: Any = None

    def post_callback(self, fields: dict[str, str] | None = None, client: Client | None = None) -> Any:
        # The work queued for after the commit (disabling the old version, ...) runs as it would for real.
        with self.on_commit(execute=True):
            self.callback = (client or self.client).post("/consent/callback", fields or self.fields)
        return self.callback


@pytest.fixture
def consent_run(cpv_sim, client, django_capture_on_commit_callbacks) -> Callable[..., ConsentRun]:  # type: ignore[no-untyped-def]
    def run(landing_url: str, *, user: Any, action: str = "accept", post: bool = True) -> ConsentRun:
        path = landing_url.removeprefix(BASE_URL)
        landing = client.get(path)
        assert landing.status_code == 200, landing.content
        start_path = re.search(r'action="([^"]+/start)"', landing.content.decode())
        assert start_path
        started = client.post(start_path.group(1))
        assert started.status_code == 303, started.content
        target, fields = sign_in(started["Location"], user_oid=user.oid, action=action)
        assert target == f"{BASE_URL}/consent/callback"
        result = ConsentRun(
            client=client,
            start_response=started,
            auth_uri=started["Location"],
            fields=fields,
            on_commit=django_capture_on_commit_callbacks,
        )
        if post:
            result.post_callback()
        return result

    return run

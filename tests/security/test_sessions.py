"""Staff and portal sessions end CPV_SESSION_MAX_AGE_HOURS after their sign-in, however busy they are (no request
moves that moment), and staff pages are sent `Cache-Control: no-store, private`."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.test import Client

from cpv import sessions
from cpv.config import load_config
from tests.factories import PASSWORD, signed_in

pytestmark = pytest.mark.django_db
HOUR = 3600


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:  # type: ignore[no-untyped-def]
    fake = Clock()
    monkeypatch.setattr(sessions, "time", fake)
    return fake


def test_a_staff_session_ends_eight_hours_after_its_sign_in_however_busy_it_is(admin_user, clock) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    assert client.post("/accounts/login/", {"username": "ada-admin", "password": PASSWORD}).status_code == 302

    busy = []
    for _ in range(15):  # a page every half hour, each one changing the session
        clock.now += HOUR / 2
        busy.append(client.get("/partners/").status_code)
        session = client.session
        session["touched"] = clock.now
        session.save()
    clock.now += HOUR / 2 - 1
    last_minute = client.get("/partners/")
    clock.now += 1
    ended = client.get("/partners/")

    assert busy == [200] * 15 and last_minute.status_code == 200
    assert ended.status_code == 302 and ended["Location"].startswith("/accounts/login/")
    assert "_auth_user_id" not in client.session


def test_the_lifetime_is_configurable(admin_user, clock, settings) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_SESSION_MAX_AGE_HOURS = 1
    client = Client()
    client.post("/accounts/login/", {"username": "ada-admin", "password": PASSWORD})

    clock.now += HOUR - 5
    before = client.get("/")
    clock.now += 5
    after = client.get("/")

    assert before.status_code == 200 and after.status_code == 302


def test_a_signed_in_session_from_before_the_rule_starts_its_lifetime_on_its_next_request(admin_user, clock) -> None:  # type: ignore[no-untyped-def]
    client = signed_in(Client(), admin_user)
    session = client.session
    del session[sessions.STARTED_SESSION_KEY]
    session.save()

    first = client.get("/")
    clock.now += 8 * HOUR
    ended = client.get("/")

    assert first.status_code == 200 and ended.status_code == 302


def test_a_portal_session_ends_after_its_lifetime_too(clock, cpv_sim) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    session = client.session
    session["portal_identity"] = {
        "tenant_id": "11111111-1111-1111-1111-111111111111", "user_oid": "22222222-2222-2222-2222-222222222222",
        "name": "Pat", "username": "pat@example.com", "cloud": "global", "global_admin": True,
    }  # fmt: skip
    session[sessions.STARTED_SESSION_KEY] = int(clock.now)
    session.save()

    during = client.get("/portal/")
    clock.now += 8 * HOUR
    after = client.get("/portal/")

    assert b'id="not-partner"' in during.content
    assert b'id="sign-in-card"' in after.content and "portal_identity" not in client.session


def test_signing_in_again_starts_a_new_lifetime(admin_user, clock) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    client.post("/accounts/login/", {"username": "ada-admin", "password": PASSWORD})
    clock.now += 8 * HOUR
    assert client.get("/").status_code == 302

    client.post("/accounts/login/", {"username": "ada-admin", "password": PASSWORD})
    clock.now += HOUR

    assert client.get("/").status_code == 200


@pytest.mark.parametrize("path", ["/", "/partners/", "/audit/", "/staff/", "/settings/", "/admin/"])
def test_staff_pages_are_sent_no_store_private(admin_user, django_user_model, path) -> None:  # type: ignore[no-untyped-def]
    root = django_user_model.objects.create_superuser("root", "r@example.com", PASSWORD)
    response = signed_in(Client(), root).get(path)

    assert response.status_code == 200
    directives = {part.strip() for part in response["Cache-Control"].split(",")}
    assert {"no-store", "private"} <= directives and "public" not in directives


def test_the_setting_comes_from_the_environment(tmp_path: Path) -> None:
    assert load_config({"CPV_SESSION_MAX_AGE_HOURS": "2"}, base_dir=tmp_path).session_max_age_hours == 2
    assert load_config({}, base_dir=tmp_path).session_max_age_hours == 8

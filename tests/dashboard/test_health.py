"""/healthz and /readyz, in-process and against a real server whose database and broker are down."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, free_port, project_env, wait_until


@pytest.mark.django_db
def test_healthz_answers_ok_without_touching_anything(client, django_assert_num_queries) -> None:  # type: ignore[no-untyped-def]
    with django_assert_num_queries(0):
        response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_readyz_reports_each_check_to_staff(staff_client) -> None:  # type: ignore[no-untyped-def]
    response = staff_client.get("/readyz")

    body = response.json()
    assert set(body["checks"]) == {"database", "broker", "vault"}
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["broker"]["ok"] is True
    for check in body["checks"].values():
        assert isinstance(check["ms"], float)
    failing = [name for name, check in body["checks"].items() if not check["ok"]]
    assert response.status_code == (200 if not failing else 503)
    assert body["status"] == ("ok" if not failing else "failing")
    for name in failing:
        assert body["checks"][name]["error"]


@pytest.mark.django_db
def test_a_staff_session_still_waiting_for_its_totp_code_reads_the_status_alone(client, admin_user) -> None:  # type: ignore[no-untyped-def]
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from tests.factories import PASSWORD

    TOTPDevice.objects.create(user=admin_user, name="phone", confirmed=True)
    client.post("/accounts/login/", {"username": admin_user.username, "password": PASSWORD})

    body = client.get("/readyz").json()

    assert "checks" not in body and body["status"] in {"ok", "failing"}


@pytest.mark.django_db
def test_anyone_else_reads_the_status_alone_unless_they_hold_the_token(client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_READYZ_TOKEN = "monitor-token-0123456789"

    anonymous = client.get("/readyz").json()
    wrong = client.get("/readyz", HTTP_AUTHORIZATION="Bearer guess").json()
    monitor = client.get("/readyz", HTTP_AUTHORIZATION="Bearer monitor-token-0123456789").json()

    assert set(anonymous) == set(wrong) == {"status"}
    assert set(monitor["checks"]) == {"database", "broker", "vault"}


@pytest.mark.django_db
def test_a_flood_of_readyz_costs_one_round_of_checks_every_few_seconds(client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from dashboard import health

    calls: list[str] = []
    monkeypatch.setattr(health, "CHECKS", {"vault": lambda: calls.append("vault")})
    now = [1000.0]
    monkeypatch.setattr(health, "_clock", lambda: now[0])

    for _ in range(50):
        assert client.get("/readyz").status_code == 200
    now[0] += health.READY_CACHE_SECONDS
    client.get("/readyz")

    assert calls == ["vault", "vault"]


@pytest.mark.django_db
def test_readyz_is_a_get_only_endpoint(client) -> None:  # type: ignore[no-untyped-def]
    assert client.post("/readyz").status_code == 405


@pytest.mark.slow
def test_readyz_reports_a_stopped_database_and_broker_as_failed_not_as_a_500(tmp_path: Path) -> None:
    port = free_port()
    env = project_env(
        CPV_VAR_DIR=str(tmp_path),
        # Nothing listens on port 9 (discard) here: both connections are refused at once.
        DATABASE_URL="postgres://postgres@127.0.0.1:9/cpv",
        CELERY_BROKER_URL="redis://127.0.0.1:9/0",
        CELERY_RESULT_BACKEND="redis://127.0.0.1:9/0",
        CPV_READYZ_TOKEN="monitor-token-0123456789",
    )
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "cpv.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def up() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok
            except requests.RequestException:  # refused, or gunicorn's first answer is slow
                return False

        wait_until(up, timeout=60, what="the server to answer /healthz")
        response = requests.get(
            f"http://127.0.0.1:{port}/readyz", headers={"Authorization": "Bearer monitor-token-0123456789"}, timeout=30
        )
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()

    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/json"
    body = json.loads(response.text)
    assert body["status"] == "failing"
    assert body["checks"]["database"]["ok"] is False
    assert "OperationalError" in body["checks"]["database"]["error"]
    assert body["checks"]["broker"]["ok"] is False
    assert body["checks"]["vault"]["ok"] is False

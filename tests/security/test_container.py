"""The container: the image build leaves no key behind, gunicorn trusts X-Forwarded-* only with CPV_TRUST_PROXY=true,
the web's health check passes against production settings, and a client's X-Request-ID sits beside the product's
own id."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory

from cpv.keys import new_key_pair
from cpv.logs import JsonFormatter, RequestIdFilter, TextFormatter
from cpv.middleware import RequestIdMiddleware
from cpv.probe import probe
from partners.models import AuditEvent
from partners.services import audit_record
from tests.conftest import ROOT, free_port, project_env, wait_until
from tests.cpv.test_config import production_env

DOCKERFILE = (ROOT / "Dockerfile").read_text()


# --- the image ---------------------------------------------------------------------------------------------------


def _build_step_env() -> dict[str, str]:
    """The variables the Dockerfile's collectstatic step sets, as the build runs it."""
    step = next(block for block in DOCKERFILE.split("\nRUN ") if "manage.py collectstatic" in block)
    return dict(re.findall(r"\b([A-Z_]+)=(\S+)", step.split("python manage.py")[0]))


@pytest.mark.slow
def test_the_image_build_step_leaves_no_key_behind(tmp_path: Path) -> None:
    env = _build_step_env() | {"CPV_VAR_DIR": str(tmp_path / "var")}
    assert "DJANGO_SECRET_KEY" in env and env["CPV_PROCESS_ROLE"] == "migrate"

    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--no-input", "-v", "0"],
        cwd=ROOT,
        env=project_env(DJANGO_SETTINGS_MODULE="cpv.settings", **env),
        check=True,
        timeout=300,
        capture_output=True,
    )

    made = {p.name for p in (tmp_path / "var").iterdir()}
    assert "static" in made
    assert not {name for name in made if name.endswith((".key", ".pub"))}, made
    # The step's clean-up keeps static/ alone, and the build fails if a key is found anywhere.
    assert "! -name static -exec rm -rf {} +" in DOCKERFILE
    assert "-name 'vault*.key'" in DOCKERFILE and "| grep ." in DOCKERFILE


def test_the_runtime_user_does_not_own_the_code() -> None:
    assert "--chown" not in DOCKERFILE
    assert "chown" not in DOCKERFILE.split("USER cpv")[0].split("collectstatic")[0]
    assert "chown -R cpv" not in DOCKERFILE
    assert DOCKERFILE.index("COPY . .") < DOCKERFILE.index("USER cpv")
    assert "!gunicorn.conf.py" in (ROOT / ".dockerignore").read_text()


# --- gunicorn and the health check against production settings ----------------------------------------------------


@pytest.fixture(scope="module")
def production_web(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[dict[str, Any]]:
    """gunicorn with the image's gunicorn.conf.py and production settings of the web tier, on a free port."""
    tmp_path = tmp_path_factory.mktemp("web")
    port = free_port()
    env = production_env(
        tmp_path,
        CPV_PROCESS_ROLE="web",
        VAULT_KEY="",
        VAULT_PUBLIC_KEY=new_key_pair().public,
        CELERY_BROKER_URL=redis_url,
        CPV_TRUST_PROXY="false",
    )
    log = (tmp_path / "gunicorn.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "cpv.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        cwd=ROOT,
        env=project_env(DJANGO_SETTINGS_MODULE="cpv.settings", **env),
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def up() -> bool:
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
        except requests.RequestException:
            return False
        return True

    try:
        wait_until(up, timeout=60, what="gunicorn to answer")
        yield {"port": port, "env": env}
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()


@pytest.mark.slow
def test_the_web_health_check_passes_against_production_settings(production_web: dict[str, Any]) -> None:
    env = {"CPV_BASE_URL": production_web["env"]["CPV_BASE_URL"], "CPV_PROBE_PORT": str(production_web["port"])}

    assert probe(env) == ""
    probed = subprocess.run(
        [sys.executable, "-m", "cpv.probe"], cwd=ROOT, env=project_env(**env), timeout=30, check=False
    )
    assert probed.returncode == 0
    # The probe compose used before: the loopback address as Host, which production's ALLOWED_HOSTS refuses.
    before = requests.get(f"http://127.0.0.1:{production_web['port']}/healthz", timeout=5)
    assert before.status_code == 400


@pytest.mark.slow
def test_gunicorn_trusts_no_forwarded_header_without_cpv_trust_proxy(production_web: dict[str, Any]) -> None:
    url = f"http://127.0.0.1:{production_web['port']}/accounts/login/"
    headers = {"Host": "cpv.example.com"}

    plain = requests.get(url, headers=headers, allow_redirects=False, timeout=5)
    forged = requests.get(
        url,
        headers={**headers, "X-Forwarded-Proto": "https", "X-Forwarded-Ssl": "on"},
        allow_redirects=False,
        timeout=5,
    )

    # gunicorn's default trusts these from 127.0.0.1 and would call the request https (a 200 here).
    assert plain.status_code == forged.status_code == 301
    assert forged.headers["Location"].startswith("https://cpv.example.com/")


def gunicorn_config(**env: str) -> dict[str, str]:
    printed = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--print-config", "cpv.wsgi:application"],
        cwd=ROOT,
        env=project_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return dict(re.findall(r"^(\w+)\s+= (.*)$", printed, re.MULTILINE))


def test_gunicorn_trusts_the_proxy_only_when_told(tmp_path: Path) -> None:
    off = gunicorn_config(CPV_TRUST_PROXY="false", FORWARDED_ALLOW_IPS="*")
    on = gunicorn_config(CPV_TRUST_PROXY="true", FORWARDED_ALLOW_IPS="10.0.0.5")

    assert off["forwarded_allow_ips"] == "[]" and off["secure_scheme_headers"] == "{}"
    assert on["forwarded_allow_ips"] == "['10.0.0.5']"
    assert "X-FORWARDED-PROTO" in on["secure_scheme_headers"]


# --- X-Request-ID --------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_clients_request_id_is_recorded_beside_the_products_own() -> None:
    seen: dict[str, Any] = {}
    records: list[logging.LogRecord] = []

    def view(request: HttpRequest) -> HttpResponse:
        seen["event"] = audit_record(actor=None, action="vault.resealed", detail={})
        record = logging.LogRecord("cpv.test", logging.INFO, __file__, 1, "a line", None, None)
        RequestIdFilter().filter(record)
        records.append(record)
        return HttpResponse("ok")

    client_id = "client-chosen-id-0001"
    response = RequestIdMiddleware(view)(RequestFactory().get("/", HTTP_X_REQUEST_ID=client_id))

    own = response["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", own) and own != client_id
    event = AuditEvent.objects.get(pk=seen["event"].pk)
    assert event.request_id == own
    (record,) = records
    logged = json.loads(JsonFormatter().format(record))
    assert (logged["request_id"], logged["client_request_id"]) == (own, client_id)
    text = TextFormatter().format(record)
    assert f"request_id={own}" in text and f"client_request_id={client_id}" in text


def test_a_malformed_client_request_id_is_dropped() -> None:
    captured: dict[str, str] = {}

    def view(request: HttpRequest) -> HttpResponse:
        captured["client"] = request.client_request_id  # type: ignore[attr-defined]
        return HttpResponse("ok")

    response = RequestIdMiddleware(view)(RequestFactory().get("/", HTTP_X_REQUEST_ID="bad id\r\nforged: 1"))

    assert captured["client"] == ""
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])

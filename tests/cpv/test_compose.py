"""compose.yaml cannot be run here (no Docker engine), so it is checked against the project instead."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from cpv.config import load_config
from cpv.keys import new_key_pair
from tests.conftest import ROOT, free_port, wait_until

COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
PROJECT_SERVICES = ["migrate", "web", "worker", "beat", "api"]
SAMPLES = {
    "DJANGO_SECRET_KEY": "z" * 20 + "Kp3vX9qL2mR7tW5yB8nC4hJ6dF1gS0aE",
    "CPV_BASE_URL": "https://cpv.example.com",
    "POSTGRES_PASSWORD": "example",
    "REDIS_PASSWORD": "redis-example",
    "CPV_CLIENT_ID": "11111111-2222-3333-4444-555555555555",
    "CPV_CLIENT_SECRET": "example-secret",
    "VAULT_URL": "https://cpv-example.vault.azure.net",
    "EMAIL_URL": "smtp+tls://mailer:pw@smtp.example.com:587",
    "CPV_VENDOR_NAME": "Contoso Cloud Services",
    "AZURE_WEB_CLIENT_ID": "aaaaaaaa-0000-0000-0000-00000000000a",
    "AZURE_WORKER_CLIENT_ID": "bbbbbbbb-0000-0000-0000-00000000000b",
}
_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?::(?P<op>[?-])(?P<arg>[^}]*))?\}")


def interpolate(value: str, provided: dict[str, str]) -> str:
    """Compose's ${NAME:?message} and ${NAME:-default}, with `provided` as the operator's .env."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        if provided.get(name):
            return provided[name]
        if op == "?":
            raise KeyError(f"{name}: {arg}")
        return arg if op == "-" else ""

    return _VARIABLE.sub(one, value)


def service_env(service: str, provided: dict[str, str]) -> dict[str, str]:
    env: dict[str, Any] = COMPOSE["services"][service]["environment"]
    return {key: interpolate(str(value), provided) for key, value in env.items()}


@pytest.mark.parametrize("service", PROJECT_SERVICES)
def test_each_project_service_runs_a_real_entry_point(service: str) -> None:
    command = COMPOSE["services"][service]["command"]

    if command[0] == "gunicorn":
        module, _, attribute = command[1].partition(":")
        assert hasattr(importlib.import_module(module), attribute)
    elif command[0] == "celery":
        assert command[1:3] == ["-A", "cpv"]
        assert importlib.import_module("cpv.celery").app.main == "cpv"
        assert command[3] in {"worker", "beat"}
    else:
        assert command[:2] == ["python", "manage.py"]
        from django.core.management import get_commands

        assert command[2] in get_commands()


def test_worker_and_beat_are_separate_processes() -> None:
    worker = COMPOSE["services"]["worker"]["command"]
    beat = COMPOSE["services"]["beat"]["command"]

    assert "-B" not in worker and "--beat" not in worker
    assert beat[3] == "beat"


def test_every_long_running_service_has_a_health_check() -> None:
    for name, service in COMPOSE["services"].items():
        if name == "migrate":
            continue
        assert service["healthcheck"]["test"][0] == "CMD", name


def test_the_web_health_check_is_the_probe_of_healthz() -> None:
    # tests/security/test_container.py runs it against a production web process.
    assert COMPOSE["services"]["web"]["healthcheck"]["test"] == ["CMD", "python", "-m", "cpv.probe"]


@pytest.mark.parametrize("service", PROJECT_SERVICES)
def test_the_environment_covers_what_production_requires(service: str, tmp_path: Path) -> None:
    env = service_env(service, SAMPLES)

    config = load_config({**env, "CPV_VAR_DIR": str(tmp_path)}, base_dir=ROOT)

    assert config.production
    assert config.process_role == service
    assert (config.database.get("HOST") == "postgres") == (service != "beat")
    assert (config.broker_url == "redis://:redis-example@redis:6379/0") == (service != "migrate")
    assert config.vault_backend == ("azure" if service in ("web", "worker", "api") else "local")
    assert not list(tmp_path.iterdir()), "a production process makes no key or file of its own"


ROLE_VARIABLES = {
    "migrate": {"CPV_MODE", "CPV_LOG_FORMAT", "CPV_PROCESS_ROLE", "DATABASE_URL"},
    "beat": {"CPV_MODE", "CPV_LOG_FORMAT", "CPV_PROCESS_ROLE", "CELERY_BROKER_URL"},
}
OPENING = {"VAULT_KEY", "VAULT_PRIVATE_KEY"}


@pytest.mark.parametrize("service", ["migrate", "beat"])
def test_migrate_and_beat_get_only_the_database_or_the_broker(service: str) -> None:
    assert set(COMPOSE["services"][service]["environment"]) == ROLE_VARIABLES[service]


def test_only_the_worker_and_the_token_api_get_the_keys_that_open_tokens() -> None:
    for service in PROJECT_SERVICES:
        given = set(COMPOSE["services"][service]["environment"]) & OPENING
        assert given == (OPENING if service in ("worker", "api") else set()), service
    web = service_env("web", SAMPLES)
    worker = service_env("worker", SAMPLES)
    assert "VAULT_PUBLIC_KEY" in web
    # Two Key Vault identities: the web's may only set secrets, the workers' (VAULT_READER_CLIENT_ID) reads them.
    assert web["AZURE_CLIENT_ID"] == SAMPLES["AZURE_WEB_CLIENT_ID"] != worker["AZURE_CLIENT_ID"]
    assert web["VAULT_READER_CLIENT_ID"] == worker["AZURE_CLIENT_ID"] == SAMPLES["AZURE_WORKER_CLIENT_ID"]


def test_the_local_vault_splits_a_key_pair_between_the_web_and_the_worker(tmp_path: Path) -> None:
    pair = new_key_pair()
    provided = {**SAMPLES, "VAULT_BACKEND": "local", "VAULT_PUBLIC_KEY": pair.public, "VAULT_PRIVATE_KEY": pair.private}

    web = load_config({**service_env("web", provided), "CPV_VAR_DIR": str(tmp_path)}, base_dir=ROOT)
    worker = load_config({**service_env("worker", provided), "CPV_VAR_DIR": str(tmp_path)}, base_dir=ROOT)

    assert web.vault_public_key == worker.vault_public_key is not None
    assert web.vault_private_keys == [] and web.vault_keys == []
    assert worker.vault_private_keys and len(worker.vault_private_keys[0]) == 32


def test_compose_can_give_each_vault_identity_a_certificate() -> None:
    provided = {
        **SAMPLES,
        "AZURE_WEB_CLIENT_CERTIFICATE_PATH": "/run/cpv/vault-web.pem",
        "AZURE_WORKER_CLIENT_CERTIFICATE_PATH": "/run/cpv/vault-worker.pem",
    }
    web, worker = service_env("web", provided), service_env("worker", provided)

    assert web["AZURE_CLIENT_CERTIFICATE_PATH"] == "/run/cpv/vault-web.pem"
    assert worker["AZURE_CLIENT_CERTIFICATE_PATH"] == "/run/cpv/vault-worker.pem"
    for service in ("web", "worker"):
        mounts = COMPOSE["services"][service]["volumes"]
        assert [m.endswith(":/run/cpv:ro") for m in mounts] == [True], service


@pytest.mark.parametrize(
    "required", ["DJANGO_SECRET_KEY", "CPV_BASE_URL", "CPV_CLIENT_ID", "EMAIL_URL", "CPV_VENDOR_NAME"]
)
def test_compose_itself_refuses_to_start_without_a_production_secret(required: str) -> None:
    provided = {k: v for k, v in SAMPLES.items() if k != required}

    with pytest.raises(KeyError, match=required):
        service_env("web", provided)


def test_the_dockerfile_builds_the_one_image_the_services_share() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()

    assert "pip install --require-hashes --no-deps -r requirements.txt" in dockerfile
    assert "USER cpv" in dockerfile
    assert {COMPOSE["services"][s]["image"] for s in PROJECT_SERVICES} == {"cpv-control-panel:latest"}


def test_the_web_port_is_published_on_loopback_only_and_no_proxy_is_trusted_by_default() -> None:
    assert COMPOSE["services"]["web"]["ports"] == ["127.0.0.1:8000:8000"]
    assert service_env("web", SAMPLES)["CPV_TRUST_PROXY"] == "false"


def test_the_token_api_has_its_own_port_and_its_health_check_asks_it() -> None:
    api = service_env("api", SAMPLES)
    assert COMPOSE["services"]["api"]["ports"] == ["127.0.0.1:8001:8001"]
    assert api["GUNICORN_BIND"] == "0.0.0.0:8001" and api["CPV_PROBE_PORT"] == "8001"
    assert COMPOSE["services"]["api"]["healthcheck"]["test"] == ["CMD", "python", "-m", "cpv.probe"]
    assert api["CPV_TRUST_PROXY"] == "false"


def test_redis_requires_a_password_and_every_client_sends_it() -> None:
    redis = COMPOSE["services"]["redis"]
    command = [interpolate(str(part), SAMPLES) for part in redis["entrypoint"] + redis["command"]]

    assert all("redis-example" not in part for part in command), "the password stays off the command line"
    assert "requirepass" in command[-1] and "$$REDISCLI_AUTH" in command[-1]
    assert interpolate(redis["environment"]["REDISCLI_AUTH"], SAMPLES) == "redis-example"
    for service in ("web", "worker", "beat"):
        env = service_env(service, SAMPLES)
        for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
            if name in env:
                assert env[name].startswith("redis://:redis-example@redis:6379/")


@pytest.mark.slow
def test_the_redis_start_script_sets_the_password_from_the_environment(tmp_path: Path) -> None:
    """The compose command itself, run with this machine's redis-server: the password from REDISCLI_AUTH works, and
    no process's command line holds it."""
    script = COMPOSE["services"]["redis"]["command"][0].replace("$$", "$")
    port = free_port()
    script = (
        script.replace("/tmp/redis.conf", str(tmp_path / "redis.conf"))
        .replace("&& chown redis:redis " + str(tmp_path / "redis.conf"), "")
        .replace("exec docker-entrypoint.sh redis-server", "exec redis-server")
        .replace("--appendonly yes", f"--port {port} --dir {tmp_path} --save '' --appendonly no")
    )
    password = "pw-" + uuid.uuid4().hex
    server = subprocess.Popen(["sh", "-c", script], env={"PATH": os.environ["PATH"], "REDISCLI_AUTH": password})
    try:
        wait_until(lambda: _redis_ping(port, password) == "PONG", timeout=20, what="redis-server to answer")
        assert _redis_ping(port, "wrong") != "PONG"
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes()
        assert password.encode() not in cmdline
    finally:
        server.terminate()
        server.wait(timeout=10)


def _redis_ping(port: int, password: str) -> str:
    result = subprocess.run(
        ["redis-cli", "-p", str(port), "ping"],
        env={"PATH": os.environ["PATH"], "REDISCLI_AUTH": password},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return (result.stdout + result.stderr).strip()
    with pytest.raises(KeyError, match="REDIS_PASSWORD"):
        service_env("web", {k: v for k, v in SAMPLES.items() if k != "REDIS_PASSWORD"})


def _clean_env(**variables: str) -> dict[str, str]:
    """A process environment holding only these variables (and PATH): nothing inherited stands in for one."""
    return {"PATH": os.environ["PATH"], "HOME": "/tmp", **variables}


@pytest.mark.slow
def test_beat_starts_with_its_compose_variables_alone(tmp_path: Path, redis_url: str) -> None:
    env = service_env("beat", SAMPLES) | {"CELERY_BROKER_URL": redis_url, "CPV_VAR_DIR": str(tmp_path / "var")}
    log = tmp_path / "beat.log"
    with log.open("wb") as out:
        beat = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "cpv", "beat", "--schedule", str(tmp_path / "schedule")],
            cwd=ROOT,
            env=_clean_env(**env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(lambda: "beat: Starting" in log.read_text() or beat.poll() is not None, timeout=60, what="beat")
            assert beat.poll() is None, log.read_text()
        finally:
            beat.terminate()
            beat.wait(timeout=20)
    assert not (tmp_path / "var").exists() or not any((tmp_path / "var").rglob("*.key"))


@pytest.mark.postgres
@pytest.mark.django_db
def test_migrate_runs_with_its_compose_variables_alone(tmp_path: Path) -> None:
    from django.db import connection

    db = connection.settings_dict
    url = f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = service_env("migrate", SAMPLES) | {"DATABASE_URL": url, "CPV_VAR_DIR": str(tmp_path / "var")}

    planned = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--check"],
        cwd=ROOT,
        env=_clean_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert planned.returncode == 0, planned.stderr
    assert not (tmp_path / "var").exists() or not any((tmp_path / "var").rglob("*.key"))

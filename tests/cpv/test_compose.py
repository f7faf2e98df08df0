"""compose.yaml cannot be run here (no Docker engine), so it is checked against the project instead."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cpv.config import load_config
from tests.conftest import ROOT

COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
PROJECT_SERVICES = ["migrate", "web", "worker", "beat"]
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


def test_the_web_health_check_probes_healthz() -> None:
    assert "/healthz" in " ".join(COMPOSE["services"]["web"]["healthcheck"]["test"])


@pytest.mark.parametrize("service", PROJECT_SERVICES)
def test_the_environment_covers_what_production_requires(service: str, tmp_path: Path) -> None:
    env = service_env(service, SAMPLES)

    config = load_config({**env, "CPV_VAR_DIR": str(tmp_path)}, base_dir=ROOT)

    assert config.production
    assert config.database["HOST"] == "postgres"
    assert config.broker_url == "redis://:redis-example@redis:6379/0"
    assert config.vault_backend == "azure"


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
    for service in PROJECT_SERVICES:
        assert service_env(service, SAMPLES)["CPV_TRUST_PROXY"] == "false"


def test_redis_requires_a_password_and_every_client_sends_it() -> None:
    redis = COMPOSE["services"]["redis"]
    command = [interpolate(str(part), SAMPLES) for part in redis["command"]]

    assert command[command.index("--requirepass") + 1] == "redis-example"
    assert interpolate(redis["environment"]["REDISCLI_AUTH"], SAMPLES) == "redis-example"
    for service in PROJECT_SERVICES:
        env = service_env(service, SAMPLES)
        for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
            assert env[name].startswith("redis://:redis-example@redis:6379/")
    with pytest.raises(KeyError, match="REDIS_PASSWORD"):
        service_env("web", {k: v for k, v in SAMPLES.items() if k != "REDIS_PASSWORD"})

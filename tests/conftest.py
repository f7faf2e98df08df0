"""Shared fixtures: real services (PostgreSQL, Redis, Celery worker processes), free ports, staff users."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parent.parent

# The local Microsoft cloud: `simulator` (one per session) and `sim` (reset before each test).
pytest_plugins = ["simulator.pytest_plugin"]


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the suite's own var folder (tests/settings.py) when this process made it."""
    from django.conf import settings

    owned = getattr(settings, "CPV_TEST_VAR_DIR_OWNED", None) if settings.configured else None
    if owned:
        shutil.rmtree(owned, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The real Redis the suite runs against. `make test` sets it; a missing server fails, never skips."""
    url = os.environ.get("CPV_TEST_REDIS_URL")
    if not url:
        pytest.fail("CPV_TEST_REDIS_URL is not set: run the suite with `make test`, which points it at Redis.")
    return url


def project_env(**overrides: str) -> dict[str, str]:
    """The environment for a child process of the project (a worker, a server), with overrides."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "COV_")) and k != "DJANGO_ALLOW_ASYNC_UNSAFE"
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


class WorkerProcess:
    """A real `celery -A cpv worker` process, consuming a queue of its own and the verification's queue beside it (or
    run by `command`, as something else starts it)."""

    def __init__(self, env: dict[str, str], queue: str, log_path: Path, *, command: list[str] | None = None) -> None:
        from cpv.task_kit import verify_queue_of

        self.queue = queue
        self.verify_queue = verify_queue_of(queue)
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            command
            or [
                sys.executable, "-m", "celery", "-A", "cpv", "worker", "--loglevel", "INFO", "--pool", "solo",
                "-Q", f"{queue},{self.verify_queue}", "-n", f"{queue}@%h",
                "--without-heartbeat", "--without-gossip", "--without-mingle",
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"the worker exited early:\n{self.log()}")
            return "ready." in self.log()

        wait_until(ready, timeout=timeout, what="the Celery worker to be ready")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


@pytest.fixture
def celery_worker_process(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real worker processes with the given environment overrides; all are stopped afterwards."""
    workers: list[WorkerProcess] = []

    def start(**env_overrides: str) -> WorkerProcess:
        queue = f"test-{uuid.uuid4().hex[:12]}"
        worker = WorkerProcess(project_env(**env_overrides), queue, tmp_path / f"{queue}.log")
        workers.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def staff_user(operator):  # type: ignore[no-untyped-def]
    """A member of staff who may look and act (the operator role)."""
    return operator


@pytest.fixture
def staff_client(client, staff_user):  # type: ignore[no-untyped-def]
    """The test's browser, signed in as `staff_user`."""
    from tests.factories import signed_in

    return signed_in(client, staff_user)


@pytest.fixture
def roles(db):  # type: ignore[no-untyped-def]
    from partners.services import staff_roles_sync

    # Transactional tests flush the data migration's rows; this puts them back.
    return staff_roles_sync()


@pytest.fixture
def viewer(django_user_model, roles):  # type: ignore[no-untyped-def]
    from partners.access import Role
    from tests.factories import make_staff

    return make_staff(django_user_model, "vera-viewer", Role.VIEWER)


@pytest.fixture
def operator(django_user_model, roles):  # type: ignore[no-untyped-def]
    from partners.access import Role
    from tests.factories import make_staff

    return make_staff(django_user_model, "otto-operator", Role.OPERATOR)


@pytest.fixture
def admin_user(django_user_model, roles):  # type: ignore[no-untyped-def]
    from partners.access import Role
    from tests.factories import make_staff

    return make_staff(django_user_model, "ada-admin", Role.ADMIN)


@pytest.fixture
def admin_with_email(admin_user):  # type: ignore[no-untyped-def]
    """An admin with an email address: operator alerts go to them."""
    admin_user.email = "ada@vendor.example"
    admin_user.save(update_fields=["email"])
    return admin_user


@pytest.fixture
def sim_settings(sim, settings):  # type: ignore[no-untyped-def]
    """The product pointed at the simulator, with a local vault of the test's own (as tests/consent's cpv_sim)."""
    import os

    from tests.simulated import sim_app, sim_cloud
    from tokens.vault import reset_vault

    settings.CPV_CLOUD_CONFIG = sim_cloud(sim)
    # The app signs in with its certificate, as production should (a secret is tested where it is the point).
    settings.CPV_APP = sim_app(sim, certificate=True)
    settings.CPV_BASE_URL = "http://127.0.0.1:8000"
    settings.VAULT_BACKEND = "local"
    settings.VAULT_KEYS = [os.urandom(32)]
    reset_vault()
    yield sim
    reset_vault()


@pytest.fixture
def one_rate_window(monkeypatch):  # type: ignore[no-untyped-def]
    """The public pages' rate limits count in fixed windows of the clock: pinned to the middle of one, so that a
    test's requests never straddle two windows however slowly they run."""
    import types

    from cpv import ratelimit

    monkeypatch.setattr(ratelimit, "time", types.SimpleNamespace(time=lambda: 1_800_000_030.0))


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    """Rate-limit counters, the readiness answer and other cached values do not carry over between tests."""
    from django.core.cache import cache

    from dashboard.health import checks_forget

    cache.clear()
    checks_forget()
    yield
    cache.clear()
    checks_forget()


@pytest.fixture(autouse=True)
def _empty_token_cache() -> Iterator[None]:
    """Each test's in-memory access tokens, the app credentials Entra refused and the app certificates read from Key
    Vault are its own."""
    from microsoft.app_credentials import key_vault_forget, managed_identities_forget, refusals_forget
    from tokens.access_tokens import cache_forget

    cache_forget()
    refusals_forget()
    key_vault_forget()
    managed_identities_forget()
    yield
    cache_forget()
    refusals_forget()
    key_vault_forget()
    managed_identities_forget()


CPV_SIM_BASE_URL = "http://127.0.0.1:8000"


@pytest.fixture
def cpv_sim(sim, settings):  # type: ignore[no-untyped-def]
    """The product pointed at the simulator: its cloud, its app, the local vault with a key of the test's own."""
    from tests.simulated import sim_app, sim_cloud
    from tokens.vault import reset_vault

    settings.CPV_CLOUD_CONFIG = sim_cloud(sim)
    # The app signs in with its certificate, as production should (a secret is tested where it is the point).
    settings.CPV_APP = sim_app(sim, certificate=True)
    settings.CPV_BASE_URL = CPV_SIM_BASE_URL
    settings.VAULT_BACKEND = "local"
    settings.VAULT_KEYS = [os.urandom(32)]
    reset_vault()
    yield sim
    reset_vault()


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
        path = landing_url.removeprefix(CPV_SIM_BASE_URL)
        landing = client.get(path)
        assert landing.status_code == 200, landing.content
        start_path = re.search(r'action="([^"]+/start)"', landing.content.decode())
        assert start_path
        started = client.post(start_path.group(1))
        assert started.status_code == 303, started.content
        from tests.simulated import sign_in

        target, fields = sign_in(started["Location"], user_oid=user.oid, action=action)
        assert target == f"{CPV_SIM_BASE_URL}/consent/callback"
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

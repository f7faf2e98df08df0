"""Fault tests with real processes: a simulator process of its own, private PostgreSQL and Redis servers that
a test may stop and start, and Celery workers that a test may kill.

The shared PostgreSQL and Redis of the machine are never stopped: a scenario that restarts a server starts its
own on a free port (`PrivatePostgres`, `PrivateRedis`) and points its workers at it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from celery import Celery
from django.test import Client
from django.utils import timezone

from cpv.task_kit import verify_queue_of
from partners.access import Role
from partners.models import Partner
from partners.services import staff_role_set, staff_roles_sync
from simulator.testing import RunningSimulator, SimulatorProcess
from tests.conftest import ROOT, free_port, project_env, wait_until
from tests.factories import active_partner
from tests.simulated import partner_user, sim_app, sim_cloud, use_azure_identity
from tokens.access_tokens import cache_forget
from tokens.models import PartnerToken
from tokens.vault import reset_vault

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PARTNERS = 10
CUSTOMERS = 4


# --- the simulator, as a process of its own --------------------------------------------------------------


@pytest.fixture(scope="session")
def fault_simulator() -> Iterator[RunningSimulator]:
    """`python -m simulator` with enough partners for a fleet (the session simulator has three)."""
    process = SimulatorProcess(extra_args=["--partners", str(PARTNERS), "--customers", str(CUSTOMERS)])
    running = process.start()
    try:
        yield running
    finally:
        process.stop()


@pytest.fixture
def fsim(
    fault_simulator: RunningSimulator, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningSimulator]:
    """The fault simulator reset to its seeded world; this process trusts its CA and uses it as its cloud."""
    sim = fault_simulator
    sim.control.reset()
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.setenv(name, str(sim.ca_bundle))
    use_azure_identity(sim, monkeypatch)
    settings.CPV_CLOUD_CONFIG = sim_cloud(sim)
    settings.CPV_APP = sim_app(sim, certificate=True)
    settings.CPV_BASE_URL = "http://127.0.0.1:8000"
    settings.VAULT_BACKEND = "local"
    settings.VAULT_KEYS = [vault_key()]
    reset_vault()
    cache_forget()
    yield sim
    sim.control.clear_faults()
    reset_vault()
    cache_forget()


_KEY = os.urandom(32)


def vault_key() -> bytes:
    """One local-vault key for the test process and its workers."""
    return _KEY


def use_azure_vault(settings: Any, sim: RunningSimulator) -> None:
    settings.VAULT_BACKEND = "azure"
    settings.VAULT_URL = sim.vault_url.rstrip("/") + "/"
    reset_vault()


def worker_env(
    sim: RunningSimulator,
    *,
    database_url: str,
    broker_url: str,
    vault: str = "local",
    visibility_timeout: int = 120,
    **extra: str,
) -> dict[str, str]:
    """The environment of a worker (or a probe) of the control panel pointed at the simulator, a database and a
    Redis. Time limits stay below the visibility timeout, as the configuration demands."""
    env = {k: v for k, v in sim.env.items() if k.startswith(("CPV_", "REQUESTS_", "SSL_", "AZURE_"))}
    for name in ("CPV_CLIENT_CERTIFICATE", "CPV_VENDOR_TENANT_ID", "CPV_CLIENT_CERTIFICATE_THUMBPRINT"):
        env.pop(name, None)
    env.update(
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=broker_url,
        CELERY_RESULT_BACKEND=broker_url,
        CPV_THROTTLE_URL=broker_url,
        CACHE_URL=broker_url,
        VAULT_BACKEND=vault,
        VAULT_KEY=base64.urlsafe_b64encode(vault_key()).decode(),
        CELERY_TASK_SOFT_TIME_LIMIT=str(visibility_timeout // 2),
        CELERY_TASK_TIME_LIMIT=str(visibility_timeout * 3 // 4),
        CELERY_VISIBILITY_TIMEOUT=str(visibility_timeout),
    )
    if vault == "azure":
        env["VAULT_URL"] = sim.vault_url.rstrip("/") + "/"
    env.update(extra)
    return env


def shared_database_url() -> str:
    """The test database pytest-django made on the shared server (transactional tests only)."""
    from django.db import connection

    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def celery_client(broker_url: str) -> Celery:
    app = Celery("faults", broker=broker_url, backend=broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        broker_connection_retry_on_startup=True,
        broker_transport_options={"socket_connect_timeout": 3},
    )
    return app


def restore_unacknowledged(broker_url: str, *, visibility_timeout: int) -> None:
    """Hand back the messages dead workers held for longer than the visibility timeout, as kombu's Redis
    transport does in every worker, but now: kombu scans for them once per 100 s (10 s x a throttle of 10)."""
    from kombu import Connection

    with Connection(broker_url, transport_options={"visibility_timeout": visibility_timeout}) as connection:
        connection.default_channel.qos.restore_visible(num=10000, interval=1)


def broker_idle(broker_url: str, queue: str) -> bool:
    """Nothing waits in `queue` or the verification's queue beside it and no worker holds a message unacknowledged
    (kombu's Redis transport keeps those in its `unacked` hash until the task is done, or until they are handed
    back)."""
    import redis

    client = redis.Redis.from_url(broker_url)
    waiting = client.llen(queue) + client.llen(verify_queue_of(queue))
    return waiting == 0 and client.hlen("unacked") == 0


# --- workers that can be killed and started again ----------------------------------------------------------


class FleetWorker:
    """A real `celery -A cpv worker` on one queue (and the verification's beside it); it can be SIGKILLed (whole,
    or one pool child) and started again on the same queue as many times as a test likes."""

    def __init__(self, env: dict[str, str], queue: str, log_dir: Path, *, pool: str = "solo", concurrency: int = 1):
        self.env = env
        self.queue = queue
        self.log_dir = log_dir
        self.pool = pool
        self.concurrency = concurrency
        self.process: subprocess.Popen[bytes] | None = None
        self.logs: list[Path] = []
        self.kills = 0

    def start(self, *, timeout: float = 60) -> FleetWorker:
        path = self.log_dir / f"{self.queue}-{len(self.logs)}.log"
        self.logs.append(path)
        with path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "cpv", "worker", "--loglevel", "INFO",
                 "--pool", self.pool, "--concurrency", str(self.concurrency),
                 "-Q", f"{self.queue},{verify_queue_of(self.queue)}",
                 "-n", f"{self.queue}-{len(self.logs)}@%h", "--without-heartbeat", "--without-gossip",
                 "--without-mingle"],
                cwd=ROOT, env=project_env(**self.env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        process = self.process

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"the worker exited early:\n{self.log()[-4000:]}")
            return "ready." in path.read_text(errors="replace")

        wait_until(ready, timeout=timeout, what="the Celery worker to be ready")
        return self

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def children(self) -> list[int]:
        if not self.alive or self.process is None:
            return []
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(p) for p in path.read_text().split()]
        except OSError:
            return []

    def kill(self) -> None:
        """SIGKILL the worker and its pool: nothing is acknowledged, nothing is cleaned up."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
            self.kills += 1

    def kill_child(self) -> bool:
        """SIGKILL one pool process (prefork): the worker sees its task lost and hands the message back."""
        for pid in self.children():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            self.kills += 1
            return True
        return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Callable[..., FleetWorker]]:
    """Start workers (`fleet(env, pool=..., queue=...)`); all are stopped after the test."""
    workers: list[FleetWorker] = []

    def start(
        env: dict[str, str], *, queue: str | None = None, pool: str = "solo", concurrency: int = 1
    ) -> FleetWorker:
        worker = FleetWorker(env, queue or f"fault-{uuid.uuid4().hex[:10]}", tmp_path, pool=pool,
                             concurrency=concurrency)  # fmt: skip
        workers.append(worker)
        return worker.start()

    yield start
    for worker in workers:
        worker.stop()
        # pytest shows a test's captured teardown output only when it fails: the workers' own account of it.
        tail = "\n".join(worker.log().splitlines()[-150:])
        sys.stdout.write(f"--- worker {worker.queue} (pool {worker.pool}, killed {worker.kills} times) ---\n{tail}\n")


# --- private servers ---------------------------------------------------------------------------------------


class PrivatePostgres:
    """A PostgreSQL 15 cluster of the test's own, on a free port, which the test may stop and start."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="cpv-faults-pg-"))
        shutil.chown(self.dir, "postgres")
        self.data = self.dir / "data"
        self.port = free_port()
        self._pg("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()
        with self.connect("postgres") as conn:
            conn.autocommit = True
            conn.execute("CREATE DATABASE cpv")

    def _pg(self, tool: str, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(PG_BIN / tool), *args],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip

    def _ctl(self, action: str) -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-o", f"-p {self.port} -k {self.dir}", "-l",
                 str(self.dir / "server.log"), "-w", "-m", "fast", action)  # fmt: skip

    def start(self) -> None:
        self._ctl("start")

    def stop(self) -> None:
        self._ctl("stop")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/cpv"

    def connect(self, dbname: str = "cpv") -> psycopg.Connection[Any]:
        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=dbname, connect_timeout=5)

    def query(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            return list(conn.execute(sql, params).fetchall())

    def destroy(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        yield server
    finally:
        server.destroy()


class PrivateRedis:
    """`redis-server` as a child process on a free port; `restart()` stops it and starts it on the same port.

    `persistent` keeps an append-only file (as compose.yaml runs Redis); otherwise a restart empties it.
    """

    def __init__(self, *, persistent: bool) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="cpv-faults-redis-"))
        self.port = free_port()
        self.persistent = persistent
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *persistence,
             "--dir", str(self.dir), "--daemonize", "no"],
            stdout=(self.dir / "redis.log").open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_until(self.ping, timeout=20, what="the private Redis to answer")

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        """SIGTERM: Redis shuts down cleanly (and, when persistent, writes its append-only file)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=20)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def destroy(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_redis() -> Iterator[Callable[..., PrivateRedis]]:
    servers: list[PrivateRedis] = []

    def start(*, persistent: bool) -> PrivateRedis:
        servers.append(PrivateRedis(persistent=persistent))
        return servers[-1]

    yield start
    for server in servers:
        server.destroy()


# --- partners, and what an operator sees --------------------------------------------------------------------


def active_partners(sim: RunningSimulator, count: int = PARTNERS) -> list[Partner]:
    """`count` partners of the simulator's world with vaulted tokens, each due for renewal."""
    partners = [active_partner(sim, index=i) for i in range(count)]
    PartnerToken.objects.filter(partner__in=partners).update(last_renewed_at=timezone.now() - timedelta(days=8))
    return partners


def live_fingerprints(sim: RunningSimulator) -> set[str]:
    """Refresh tokens the simulator would still redeem: each lives 90 days from its issue, by its clock."""
    now = sim.control.now()
    return {g["fingerprint"] for g in sim.control.refresh_tokens() if g["issued_at"] + 90 * 86400 > now}


def viewer_client() -> Client:
    """A browser signed in as vendor staff with the viewer role (the least that sees the dashboard)."""
    from django.contrib.auth.models import User

    staff_roles_sync()
    user = User.objects.create_user(username=f"viewer-{uuid.uuid4().hex[:6]}", password=uuid.uuid4().hex)
    staff_role_set(actor=None, user=user, role=Role.VIEWER)
    client = Client()
    client.force_login(user)
    return client


def dashboard_pages(client: Client, partners: list[Partner]) -> dict[str, str]:
    """The overview and each partner's page, as rendered HTML, by partner code ("overview" for the first)."""
    pages = {}
    response = client.get("/")
    assert response.status_code == 200
    pages["overview"] = response.content.decode()
    for partner in partners:
        response = client.get(f"/partners/{partner.code}/")
        assert response.status_code == 200
        pages[str(partner.code)] = response.content.decode()
    return pages


@dataclass
class Probe:
    """`python -m tests.faults.probe` against a database the test process does not use (a private cluster)."""

    env: dict[str, str]
    calls: list[str] = field(default_factory=list)

    def __call__(self, command: str, payload: Any = None, *, timeout: float = 120) -> Any:
        self.calls.append(command)
        done = subprocess.run(
            [sys.executable, "-m", "tests.faults.probe", command],
            cwd=ROOT, env=project_env(**self.env), input=json.dumps(payload).encode(), capture_output=True,
            timeout=timeout,
        )  # fmt: skip
        if done.returncode != 0:
            raise AssertionError(f"probe {command} failed:\n{done.stderr.decode(errors='replace')[-4000:]}")
        return json.loads(done.stdout.decode().strip().splitlines()[-1])


def migrate(env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=ROOT, env=project_env(**env), capture_output=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-4000:]


@contextmanager
def table_held(table: str) -> Iterator[None]:
    """Hold `table` of the test database in EXCLUSIVE mode (others read it, nobody writes it) until the block ends."""
    from django.db import connection

    db = connection.settings_dict
    with psycopg.connect(host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"],
                         dbname=db["NAME"]) as conn:  # fmt: skip
        conn.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.rollback()


def redemptions(sim: RunningSimulator, partners: list[Partner]) -> dict[int, int]:
    """How many times Entra redeemed each partner's refresh token (`partners[i]` is the world's partner i, as
    `active_partners` makes them), for the partners it redeemed at all."""
    by_user = Counter(
        e["detail"].get("user")
        for e in sim.control.log(service="entra", path="/token$", grant_type="refresh_token", status=200, limit=5000)
    )
    counts = {}
    for index, partner in enumerate(partners):
        user = partner_user(sim, partner=index, global_admin=True, admin_agent=True, mfa_registered=True)
        if by_user[user.oid]:
            counts[partner.pk] = by_user[user.oid]
    return counts


def wait_for(predicate: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.5) -> None:
    """wait_until, tolerating a server that is briefly unreachable while it restarts."""

    def attempt() -> bool:
        try:
            return predicate()
        except (psycopg.OperationalError, OSError):
            return False

    wait_until(attempt, timeout=timeout, what=what, interval=interval)


def elapsed(since: float) -> float:
    return time.monotonic() - since

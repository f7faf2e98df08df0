"""What the product benchmarks share: a database of their own, the product's environment pointed at the
simulator, real Celery worker processes, peak memory from /proc, medians, tables and the JSON results.

Nothing here imports Django at module level: benchmark scripts set the environment first, then call
`django_setup()`, and the bare-script workers they spawn never load Django at all.
"""

from __future__ import annotations

import json
import math
import os
import platform
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS_DIR = Path(os.environ.get("CPV_BENCH_RESULTS", ROOT / "bench" / "results"))
PG_HOST = os.environ.get("CPV_BENCH_PG_HOST", "127.0.0.1")
PG_PORT = os.environ.get("CPV_BENCH_PG_PORT", "5432")
PG_USER = os.environ.get("CPV_BENCH_PG_USER", "postgres")
# A Redis database of the benchmarks' own, so that no test run shares its queues or limiter keys.
REDIS_URL = os.environ.get("CPV_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
PYTHON = sys.executable


# --- figures --------------------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def percentile(values: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile (pct in 0..100)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return float(ordered[rank - 1])


def machine() -> dict[str, Any]:
    memory_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    except OSError:
        pass
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def table(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [title]
    for n, row in enumerate(cells):
        parts = [row[0].ljust(widths[0])] + [row[i].rjust(widths[i]) for i in range(1, len(row))]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def write_results(name: str, payload: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    body = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine()}
    body.update(payload)
    path.write_text(json.dumps(body, indent=2, default=str) + "\n", encoding="utf-8")
    return path


# --- services -------------------------------------------------------------------------------------------


class BenchDatabase:
    """A PostgreSQL database created for one benchmark and dropped afterwards."""

    def __init__(self, name: str) -> None:
        # A prefix keeps two runs at once (a test run and a person's) out of each other's databases.
        self.name = os.environ.get("CPV_BENCH_DB_PREFIX", "") + name
        self.url = f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{self.name}"

    def _pg(self, tool: str) -> None:
        subprocess.run(
            [
                tool,
                "-h",
                PG_HOST,
                "-p",
                PG_PORT,
                "-U",
                PG_USER,
                *(["--if-exists"] if tool == "dropdb" else []),
                self.name,
            ],
            check=True,
            capture_output=True,
        )

    def create(self) -> None:
        self._pg("dropdb")
        self._pg("createdb")

    def drop(self) -> None:
        from django.conf import settings

        if settings.configured:
            from django.db import connections

            connections.close_all()
        try:
            self._pg("dropdb")
        except subprocess.CalledProcessError as exc:
            print(f"could not drop database {self.name}: {exc.stderr.decode(errors='replace')[:200]}")


def redis_delete(*keys: str, url: str = REDIS_URL) -> None:
    """Remove the benchmark's own keys. Never a FLUSHDB: another run (a CI job, a colleague's) may be using
    the same Redis database at the same time, with queues and limiter buckets of its own."""
    import redis

    if keys:
        redis.Redis.from_url(url).delete(*keys)


def product_env(sim_env: dict[str, str], *, database_url: str, var_dir: Path, **overrides: str) -> dict[str, str]:
    """The environment of a product process (worker, web, or this driver) pointed at the simulator:
    its cloud and app, its Key Vault (VAULT_BACKEND=azure), PostgreSQL and Redis."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_", "DJANGO_", "CPV_"))}
    env.pop("DATABASE_URL", None)
    env.pop("CELERY_BROKER_URL", None)
    keep = ("CPV_", "REQUESTS_", "SSL_", "AZURE_", "VAULT_URL")
    env.update({k: v for k, v in sim_env.items() if k.startswith(keep)})
    for extra in ("CPV_CLIENT_CERTIFICATE", "CPV_VENDOR_TENANT_ID", "CPV_CLIENT_CERTIFICATE_THUMBPRINT"):
        env.pop(extra, None)
    env.update(
        PYTHONUNBUFFERED="1",
        DJANGO_SETTINGS_MODULE="cpv.settings",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(60),
        CPV_VAR_DIR=str(var_dir),
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=REDIS_URL,
        CELERY_RESULT_BACKEND=REDIS_URL,
        CPV_THROTTLE_URL=REDIS_URL,
        CACHE_URL=REDIS_URL,
        VAULT_BACKEND="azure",
        EMAIL_URL="dummymail://",
        CPV_LOG_LEVEL="INFO",
    )
    env.update(overrides)
    return env


def django_setup(env: dict[str, str]) -> None:
    """Configure Django in this process from `env` (call once, before importing models)."""
    os.environ.update(env)
    import django

    django.setup()


def migrate(env: dict[str, str]) -> None:
    subprocess.run([PYTHON, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=env, check=True)


def bench_var_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="cpv-bench-"))


# --- processes ------------------------------------------------------------------------------------------


def peak_rss_mib(pid: int) -> float:
    """The peak resident memory (VmHWM) of a live process, in MiB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by a live process (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def database_cpu_seconds(dbname: str) -> float:
    """CPU seconds used so far by the PostgreSQL backends connected to `dbname` (each shows the database's name
    in its process title). A backend that exits takes its seconds with it: callers keep connections open."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            title = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if title.startswith(b"postgres: ") and f" {dbname} ".encode() in title:
            total += cpu_seconds(int(proc.name))
    return total


def wait_until(predicate: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


class Worker:
    """A real `celery -A cpv worker` process with a pool of threads, consuming the benchmark's queue and the
    verification's queue beside it (`consumes`: those it names instead)."""

    def __init__(
        self,
        env: dict[str, str],
        queue: str,
        log_path: Path,
        *,
        threads: int,
        consumes: list[str] | None = None,
        nice: int = 0,
    ) -> None:
        from cpv.task_kit import verify_queue_of

        self.queue = queue
        self.consumes = consumes or [queue, verify_queue_of(queue)]
        self.log_path = log_path
        self.name = f"{queue}-{uuid.uuid4().hex[:6]}"
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [
                *(["nice", "-n", str(nice)] if nice else []),
                PYTHON, "-m", "celery", "-A", "cpv", "worker",
                "--loglevel", "INFO",
                "--pool", "threads", "--concurrency", str(threads),
                "-Q", ",".join(self.consumes), "-n", f"{self.name}@%h",
                "--without-heartbeat", "--without-gossip", "--without-mingle",
            ],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 90) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"the worker exited early:\n{self.log()[-3000:]}")
            return "ready." in self.log()

        wait_until(ready, timeout=timeout, what="a Celery worker to be ready", interval=0.2)

    def peak_rss_mib(self) -> float:
        return peak_rss_mib(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


def start_workers(
    env: dict[str, str],
    *,
    count: int,
    threads: int,
    log_dir: Path,
    verify_workers: int = 0,
    verify_threads: int = 4,
    verify_nice: int = 0,
) -> tuple[str, list[Worker]]:
    """`count` workers on a queue of the benchmark's own and the verification's queue beside it; with
    `verify_workers`, those consume the verification's queue alone (at CPU priority `verify_nice`) and the `count`
    workers the benchmark's queue (a deployment that gives the verification workers of their own)."""
    from cpv.task_kit import verify_queue_of

    queue = f"bench-{uuid.uuid4().hex[:10]}"
    verify = verify_queue_of(queue)
    main = [queue] if verify_workers else [queue, verify]
    workers = [
        Worker(env, queue, log_dir / f"{queue}-worker-{i}.log", threads=threads, consumes=main) for i in range(count)
    ]
    workers += [
        Worker(
            env, queue, log_dir / f"{queue}-verify-{i}.log", threads=verify_threads, consumes=[verify], nice=verify_nice
        )
        for i in range(verify_workers)
    ]
    try:
        for worker in workers:
            worker.wait_ready()
    except Exception:
        for worker in workers:
            worker.stop()
        raise
    return queue, workers


def celery_client() -> Any:
    from celery import Celery

    app = Celery("bench", broker=REDIS_URL, backend=REDIS_URL)
    app.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json")
    return app


def simulator_log_seq(control: Any) -> int:
    """The sequence number of the simulator's newest log entry (0 when the log is empty)."""
    last = control.log(limit=1)
    return int(last[-1]["seq"]) if last else 0

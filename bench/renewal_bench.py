"""Benchmark 1 (and the worker half of 4): the renewal sweep at scale.

N partners (10,000; 200 with --quick) are seeded in PostgreSQL and in the simulator, each with a due refresh
token in the simulator's Key Vault. Two `celery -A cpv worker` processes (a pool of threads each) on Redis
renew them all, started by the product's own sweep task (`consent.tokens_renew_sweep`, spread 0).

(a) Key Vault limits off: each run first lets a bare script renew every partner (vault read, msal
    redemption, vault write, disable the old version; the same client libraries, processes and threads, and
    no Django, Celery or database), then the product. Reported: renewals per second of each and their ratio
    within the run; medians over the runs.
(b) Key Vault's limits on (300 creates and 4,000 other operations per 10 s): the product renews every
    partner once; reported: renewals per second against the 30/s the limit allows, the 429 answers, and the
    median rate over 10-second windows.

With --vaults V (V > 1): the partners are spread over V simulated Key Vaults (VAULT_URLS), each with its own
limits, and only (b) runs: reported against V x 30/s, with each vault's accepted creates in its busiest 10 seconds
and its 429s. Writes bench/results/renewal-vaults.json then.

Also: each worker's peak resident memory (VmHWM) over the whole benchmark. Writes bench/results/renewal.json.

    .venv/bin/python bench/renewal_bench.py [--quick] [--partners N] [--runs R] [--workers W] [--threads T]
        [--vaults V]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness

SEED = 8
VAULT_CREATES_PER_10S = 300


# --- the bare script (spawned processes: no Django, no Celery, no database) ----------------------------


def bare_renewal(
    env: dict[str, str], vault: Any, session: Any, http_cache: dict[Any, Any], scope: str, *, tenant: str, name: str,
    version: str,
) -> str:  # fmt: skip
    """One renewal without the product: vault read, msal redemption, vault write, disable the old version.
    Returns the new version."""
    import msal

    value = vault.get_secret(name, version).value
    app = msal.ConfidentialClientApplication(
        env["CPV_CLIENT_ID"],
        client_credential=env["CPV_CLIENT_SECRET"],
        authority=f"{env['CPV_AUTHORITY_HOST']}/{tenant}",
        instance_discovery=False,
        timeout=30,
        http_client=session,
        http_cache=http_cache,
    )
    result = app.acquire_token_by_refresh_token(value, [scope])
    stored = vault.set_secret(name, result["refresh_token"], content_type="application/vnd.cpv.refresh-token")
    vault.update_secret_properties(name, version, enabled=False)
    return str(stored.properties.version or "")


def _bare_process(
    env: dict[str, str],
    items: list[tuple[int, str, str, str]],
    threads: int,
    scope: str,
    start_at: float,
    out: Any,
    environment_once: bool,
) -> None:
    import queue
    import threading

    import requests

    from bench.seed import vault_client

    os.environ["REQUESTS_CA_BUNDLE"] = env["REQUESTS_CA_BUNDLE"]
    os.environ["SSL_CERT_FILE"] = env["REQUESTS_CA_BUNDLE"]
    vault = vault_client(env, environment_once=environment_once)
    work: queue.SimpleQueue[tuple[int, str, str, str]] = queue.SimpleQueue()
    for item in items:
        work.put(item)
    done: list[tuple[int, str]] = []
    errors: list[str] = []

    def run() -> None:
        if environment_once:
            from microsoft.http import EnvironmentOnceSession

            session: requests.Session = EnvironmentOnceSession()
        else:
            session = requests.Session()
        http_cache: dict[Any, Any] = {}
        while time.time() < start_at:
            time.sleep(0.001)
        while True:
            try:
                partner_id, tenant, name, version = work.get_nowait()
            except queue.Empty:
                return
            try:
                version = bare_renewal(
                    env, vault, session, http_cache, scope, tenant=tenant, name=name, version=version
                )
                done.append((partner_id, version))
            except Exception as exc:  # noqa: BLE001 - counted and reported, never fatal to the run
                errors.append(exc.__class__.__name__)

    pool = [threading.Thread(target=run) for _ in range(threads)]
    while time.time() < start_at:
        time.sleep(0.001)
    before = os.times()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    after = os.times()
    out.put((done, errors, time.time(), after.user + after.system - before.user - before.system))


def bare_run(env: dict[str, str], items: list[tuple[int, str, str, str]], *, processes: int, threads: int,
             scope: str, environment_once: bool = False) -> dict[str, Any]:  # fmt: skip
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 3.0  # every process imported and ready before the clock starts
    children = [
        ctx.Process(
            target=_bare_process, args=(env, items[i::processes], threads, scope, start_at, out, environment_once)
        )
        for i in range(processes)
    ]
    for child in children:
        child.start()
    results = [out.get(timeout=3600) for _ in children]
    for child in children:
        child.join(timeout=30)
    done = [d for r in results for d in r[0]]
    errors = [e for r in results for e in r[1]]
    elapsed = max(r[2] for r in results) - start_at
    return {
        "renewed": len(done),
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "seconds": round(elapsed, 2),
        "per_s": round(len(done) / elapsed, 1) if elapsed > 0 else 0.0,
        "client_cpu_ms_per_renewal": round(sum(r[3] for r in results) * 1000 / max(1, len(done)), 2),
        "_done": done,
    }


def pointers_follow_bare(done: list[tuple[int, str]]) -> None:
    """The bare script wrote new versions and disabled the ones the pointers name: move the pointers."""
    from tokens.models import PartnerToken

    new_version = dict(done)
    pointers = list(PartnerToken.objects.filter(partner_id__in=new_version))
    for pointer in pointers:
        pointer.previous_version = pointer.current_version
        pointer.previous_disabled = True
        pointer.current_version = new_version[pointer.partner_id]
        pointer.version_count += 1
    PartnerToken.objects.bulk_update(
        pointers, ["previous_version", "previous_disabled", "current_version", "version_count"], batch_size=1000
    )


def bare_items() -> list[tuple[int, str, str, str]]:
    from tokens.models import PartnerToken

    return [
        (pid, str(tenant), name, version)
        for pid, tenant, name, version in PartnerToken.objects.order_by("partner_id").values_list(
            "partner_id", "partner__tenant_id", "secret_name", "current_version"
        )
    ]


# --- the product ------------------------------------------------------------------------------------------


class LogTail:
    """Counts a phrase in growing log files without rereading them."""

    def __init__(self, paths: list[Path], phrase: str) -> None:
        self.paths = paths
        self.phrase = phrase
        self.offsets = {p: p.stat().st_size if p.exists() else 0 for p in paths}
        self.count = 0

    def poll(self) -> int:
        for path in self.paths:
            with path.open("rb") as handle:
                handle.seek(self.offsets[path])
                chunk = handle.read()
            # only whole lines
            cut = chunk.rfind(b"\n") + 1
            self.offsets[path] += cut
            self.count += chunk[:cut].count(self.phrase.encode())
        return self.count


def product_run(*, app: Any, queue: str, workers: list[harness.Worker], expected: int, dbname: str,
                stall: float = 180.0) -> dict[str, Any]:  # fmt: skip
    """Send the sweep (again while partners remain unclaimed: one sweep claims at most what the vault can write in
    an hour) and wait until every token is renewed and its old version disabled."""
    from django.db.models import Max, Min, Q
    from django.utils import timezone

    from tokens.models import PartnerToken, TokenEvent

    sweeps = LogTail([w.log_path for w in workers], "renewal sweep queued")
    cpu_before = [harness.cpu_seconds(w.process.pid) for w in workers]
    database_before = harness.database_cpu_seconds(dbname)
    started = timezone.now()
    t0 = time.time()
    sent = 1
    app.send_task("consent.tokens_renew_sweep", kwargs={"spread": 0}, queue=queue)
    done = 0
    progress_at = time.time()
    while True:
        now_done = PartnerToken.objects.filter(last_renewed_at__gte=started, previous_disabled=True).count()
        if now_done >= expected:
            break
        if now_done != done:
            done, progress_at = now_done, time.time()
        elif time.time() - progress_at > stall:
            raise TimeoutError(f"renewal stalled at {done} of {expected}")
        if sweeps.poll() >= sent:
            unclaimed = PartnerToken.objects.filter(
                Q(renewal_queued_at__isnull=True) | Q(renewal_queued_at__lt=started)
            ).count()
            if unclaimed:
                app.send_task("consent.tokens_renew_sweep", kwargs={"spread": 0}, queue=queue)
                sent += 1
        time.sleep(0.5)  # the count is a query on the database the workers use: not too often
    elapsed = time.time() - t0
    cpu_used = sum(harness.cpu_seconds(w.process.pid) - c for w, c in zip(workers, cpu_before, strict=True))
    database_used = harness.database_cpu_seconds(dbname) - database_before
    events = TokenEvent.objects.filter(created_at__gte=started)
    renewed = events.filter(kind=TokenEvent.Kind.RENEWED)
    window = renewed.aggregate(first=Min("created_at"), last=Max("created_at"))
    first: datetime | None = window["first"]
    last: datetime | None = window["last"]
    phase = (last - first).total_seconds() if first and last else 0.0
    count = renewed.count()
    return {
        "renewed": count,
        "other_events": events.exclude(kind=TokenEvent.Kind.RENEWED).count(),
        "sweeps": sent,
        "seconds": round(elapsed, 2),
        "per_s": round(expected / elapsed, 1) if elapsed > 0 else 0.0,
        "first_renewal_after_s": round((first - started).total_seconds(), 2) if first else None,
        "renewal_phase_per_s": round((count - 1) / phase, 1) if phase > 0 else 0.0,
        "worker_cpu_ms_per_renewal": round(cpu_used * 1000 / max(1, count), 2),
        "database_cpu_ms_per_renewal": round(database_used * 1000 / max(1, count), 2),
    }


def limited_run(*, control: Any, app: Any, queue: str, workers: list[harness.Worker], expected: int,
                dbname: str) -> dict[str, Any]:  # fmt: skip
    """Key Vault's limits on (300 creates and 4,000 other operations per 10 s, per vault) from an empty window and
    every token due: the product renews each once (`product_run`'s figures)."""
    from bench import seed

    control.set_vault_limits(True, creates=VAULT_CREATES_PER_10S, others=4000, window=10.0)
    time.sleep(10.5)  # an empty window to start from
    seed.make_due()
    control.clear_log()
    return product_run(app=app, queue=queue, workers=workers, expected=expected, dbname=dbname)


def vault_calls(control: Any, since: int, *, host: str = "") -> dict[str, Any]:
    """The vault's answers since log entry `since` (only those of the vault at `host` when given): counts by status,
    the accepted creates per second in each whole 10-second window, and the most accepted in any 10 seconds."""
    entries = [e for e in control.log(service="vault", since=since) if not host or e["host"] == host]
    statuses: dict[str, int] = {}
    for entry in entries:
        statuses[str(entry["status"])] = statuses.get(str(entry["status"]), 0) + 1
    creates = sorted(
        datetime.fromisoformat(e["time"]).timestamp() for e in entries if e["method"] == "PUT" and e["status"] < 300
    )
    windows = []
    if creates:
        # Whole 10-second windows from the first accepted write: the rate Key Vault's limit is about.
        start = creates[0]
        whole = int((creates[-1] - start) // 10)
        for w in range(whole):
            lo, hi = start + 10 * w, start + 10 * (w + 1)
            windows.append(sum(1 for t in creates if lo <= t < hi) / 10)
        # The most accepted creates in any 10 seconds (a sliding window over the sorted times).
        busiest, low = 0, 0
        for high, t in enumerate(creates):
            while creates[low] <= t - 10:
                low += 1
            busiest = max(busiest, high - low + 1)
    else:
        busiest = 0
    return {
        "calls": len(entries),
        "statuses": statuses,
        "throttled_429": statuses.get("429", 0),
        "creates_per_s_10s_windows": windows,
        "busiest_10s_creates": busiest,
    }


# --- main -------------------------------------------------------------------------------------------------


def simulator_for(partners: int, *, vaults: int = 1) -> Any:
    """The simulator's process for `partners` partners and `vaults` Key Vaults, every limit off until a part sets
    them (not yet started)."""
    from simulator.testing import SimulatorProcess

    return SimulatorProcess(
        extra_args=["--seed", str(SEED), "--partners", str(partners), "--customers", "1", "--vaults", str(vaults),
                    "--vault-limits", "off", "--pc-rate-limit", "0", "--record-issued", "off"],
        startup_timeout=180,
    )  # fmt: skip


def product_set_up(sim_env: dict[str, str], *, database: Any, var_dir: Path, **overrides: str) -> dict[str, str]:
    """The product's environment on the simulator and `database`, migrated, and this process configured with it."""
    env = harness.product_env(sim_env, database_url=database.url, var_dir=var_dir, **overrides)
    harness.migrate(env)
    harness.django_setup(env)
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 partners, one run of each")
    parser.add_argument("--partners", type=int, default=None)
    parser.add_argument("--runs", type=int, default=None, help="runs of (a)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (and bare-script processes)")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (and per bare process)")
    parser.add_argument("--skip-limits", action="store_true", help="leave out (b)")
    parser.add_argument(
        "--vaults", type=int, default=1, help="spread the partners over this many Key Vaults (VAULT_URLS); (b) only"
    )
    args = parser.parse_args(argv)
    if args.vaults > 1:
        return several_vaults(args)
    partners = args.partners or (200 if args.quick else 10_000)
    runs = args.runs or (1 if args.quick else 3)

    from simulator.world import World

    total_started = time.perf_counter()
    database = harness.BenchDatabase("cpv_bench_renewal")
    database.create()
    var_dir = harness.bench_var_dir()
    sim_process = simulator_for(partners)
    workers: list[harness.Worker] = []
    try:
        sim = sim_process.start()
        control = sim.control
        sim_pid = sim_process.process.pid if sim_process.process else 0
        env = product_set_up(sim.env, database=database, var_dir=var_dir)
        from django.conf import settings

        world = World.generate(seed=SEED, partners=partners, customers_per_partner=1)
        seeded_at = time.perf_counter()
        from bench import seed

        seed.active_partners(sim_env=sim.env, world_partners=world.partners)
        seed_seconds = time.perf_counter() - seeded_at
        print(f"seeded {partners} partners with vaulted tokens in {seed_seconds:.1f} s")

        # (a): the simulator's vault has no limits, so the product is told not to pace its creates.
        unpaced = {**env, "DJANGO_SETTINGS_MODULE": "bench.settings", "CPV_BENCH_VAULT_CREATES_PER_SECOND": "0"}
        queue, workers = harness.start_workers(unpaced, count=args.workers, threads=args.threads, log_dir=var_dir)
        app = harness.celery_client()
        scope = settings.CPV_CLOUD_CONFIG.partner_center_scope
        bare_env = dict(sim.env)

        def bare_measured(environment_once: bool) -> dict[str, Any]:
            seed.make_due()
            control.clear_log()
            cpu0 = harness.cpu_seconds(sim_pid)
            bare = bare_run(bare_env, bare_items(), processes=args.workers, threads=args.threads, scope=scope,
                            environment_once=environment_once)  # fmt: skip
            bare["simulator_cpu_ms_per_renewal"] = round(
                (harness.cpu_seconds(sim_pid) - cpu0) * 1000 / max(1, bare["renewed"]), 2
            )
            pointers_follow_bare(bare.pop("_done"))
            return bare

        def cpu_ratio(bare: dict[str, Any], product: dict[str, Any]) -> float:
            # What each renewal costs the machine: on a machine the run saturates, this ratio is what the
            # throughput ratio tends to, and it is less disturbed by other work on a shared machine.
            bare_cpu = bare["client_cpu_ms_per_renewal"] + bare["simulator_cpu_ms_per_renewal"]
            product_cpu = (product["worker_cpu_ms_per_renewal"] + product["database_cpu_ms_per_renewal"]
                           + product["simulator_cpu_ms_per_renewal"])  # fmt: skip
            return round(bare_cpu / product_cpu, 3) if product_cpu else 0.0

        runs_out = []
        for run in range(runs):
            # The bare script twice: on the client libraries' default HTTP sessions (the ceiling the target is
            # set against), and on the product's own session (microsoft/http.py), which reads the environment once.
            bare = bare_measured(environment_once=False)
            bare_same = bare_measured(environment_once=True)
            seed.make_due()
            seq0 = harness.simulator_log_seq(control)
            control.clear_log()
            cpu0 = harness.cpu_seconds(sim_pid)
            product = product_run(app=app, queue=queue, workers=workers, expected=partners, dbname=database.name)
            product["simulator_cpu_ms_per_renewal"] = round(
                (harness.cpu_seconds(sim_pid) - cpu0) * 1000 / max(1, product["renewed"]), 2
            )
            product["simulator_requests_per_renewal"] = round(
                (harness.simulator_log_seq(control) - seq0) / max(1, product["renewed"]), 2
            )
            ratio = product["per_s"] / bare["per_s"] if bare["per_s"] else 0.0
            ratio_same = product["per_s"] / bare_same["per_s"] if bare_same["per_s"] else 0.0
            runs_out.append({"bare": bare, "bare_same_session": bare_same, "product": product,
                             "ratio": round(ratio, 3), "ratio_same_session": round(ratio_same, 3),
                             "cpu_ratio": cpu_ratio(bare, product),
                             "cpu_ratio_same_session": cpu_ratio(bare_same, product)})  # fmt: skip
            print(f"run {run + 1}: bare {bare['per_s']}/s (same session {bare_same['per_s']}/s), "
                  f"product {product['per_s']}/s, ratio {ratio:.2f} ({ratio_same:.2f})")  # fmt: skip

        memory = [round(w.peak_rss_mib(), 1) for w in workers]
        limits: dict[str, Any] | None = None
        if not args.skip_limits:
            # (b): Key Vault's real limits, and the product's default pace of creates.
            for worker in workers:
                worker.stop()
            queue, workers = harness.start_workers(env, count=args.workers, threads=args.threads, log_dir=var_dir)
            product = limited_run(control=control, app=app, queue=queue, workers=workers, expected=partners,
                                  dbname=database.name)  # fmt: skip
            calls = vault_calls(control, 0)
            ceiling = VAULT_CREATES_PER_10S / 10
            windows = calls.pop("creates_per_s_10s_windows")
            limits = {
                **product,
                **calls,
                "ceiling_per_s": ceiling,
                "ratio": round(product["per_s"] / ceiling, 3),
                "throttled_share": round(calls["throttled_429"] / max(1, calls["calls"]), 4),
                "median_10s_window_per_s": round(harness.median(windows), 1) if windows else None,
                "windows": len(windows),
            }
            print(f"limits on: {product['per_s']}/s of {ceiling}/s, {calls['throttled_429']} x 429")
            memory = [max(m, round(w.peak_rss_mib(), 1)) for m, w in zip(memory, workers, strict=True)]
    finally:
        for worker in workers:
            worker.stop()
        sim_process.stop()
        database.drop()

    ratios = [r["ratio"] for r in runs_out]
    summary = {
        "bare_per_s": harness.median([r["bare"]["per_s"] for r in runs_out]),
        "product_per_s": harness.median([r["product"]["per_s"] for r in runs_out]),
        "ratio": round(harness.median(ratios), 3),
        "cpu_ratio": round(harness.median([r["cpu_ratio"] for r in runs_out]), 3),
        "bare_same_session_per_s": harness.median([r["bare_same_session"]["per_s"] for r in runs_out]),
        "ratio_same_session": round(harness.median([r["ratio_same_session"] for r in runs_out]), 3),
        "cpu_ratio_same_session": round(harness.median([r["cpu_ratio_same_session"] for r in runs_out]), 3),
        "target_ratio": 0.8,
        "limits_per_s": limits["per_s"] if limits else None,
        "limits_ratio": limits["ratio"] if limits else None,
        "limits_throttled_share": limits["throttled_share"] if limits else None,
        "worker_peak_rss_mib": max(memory) if memory else None,
    }
    shape = f"{args.workers} processes x {args.threads} threads"
    rows: list[list[Any]] = []
    for n, r in enumerate(runs_out, 1):
        b, s, p = r["bare"], r["bare_same_session"], r["product"]
        rows.append([f"(a) run {n}", b["per_s"], s["per_s"], p["per_s"], f"{r['ratio']} ({r['ratio_same_session']})",
                     f"{r['cpu_ratio']} ({r['cpu_ratio_same_session']})", b["errors"] + s["errors"] + p["other_events"],
                     f"{b['client_cpu_ms_per_renewal']}/{s['client_cpu_ms_per_renewal']}",
                     p["worker_cpu_ms_per_renewal"], p["database_cpu_ms_per_renewal"],
                     f"{b['simulator_cpu_ms_per_renewal']}/{p['simulator_cpu_ms_per_renewal']}"])  # fmt: skip
    rows.append(["(a) median", summary["bare_per_s"], summary["bare_same_session_per_s"], summary["product_per_s"],
                 f"{summary['ratio']} ({summary['ratio_same_session']})",
                 f"{summary['cpu_ratio']} ({summary['cpu_ratio_same_session']})", "", "", "", "", ""])  # fmt: skip
    print()
    print(
        harness.table(
            f"Renewal of {partners:,} partners, Key Vault limits off ({shape}; target ratio >= 0.8; in brackets, "
            "against the bare script on the product's HTTP session)",
            [
                "",
                "bare/s",
                "bare same session/s",
                "product/s",
                "ratio",
                "cpu ratio",
                "errors",
                "bare cpu ms",
                "worker cpu ms",
                "db cpu ms",
                "sim cpu ms b/p",
            ],
            rows,
        )
    )
    if limits:
        print()
        print(
            harness.table(
                f"Renewal of {partners:,} partners, Key Vault limits on (targets >= 0.9 of 30/s, 429s < 1%)",
                [
                    "",
                    "renewals/s",
                    "ceiling/s",
                    "ratio",
                    "median 10 s/s",
                    "busiest 10 s",
                    "429s",
                    "vault calls",
                    "429 share",
                ],
                [
                    [
                        "(b)",
                        limits["per_s"],
                        limits["ceiling_per_s"],
                        limits["ratio"],
                        limits["median_10s_window_per_s"] or "",
                        limits["busiest_10s_creates"],
                        limits["throttled_429"],
                        limits["calls"],
                        f"{100 * limits['throttled_share']:.2f}%",
                    ]
                ],
            )
        )
    print(f"\nworker peak RSS (MiB): {', '.join(str(m) for m in memory)}")
    path = harness.write_results(
        "renewal",
        {
            "config": {
                "partners": partners,
                "runs": runs,
                "workers": args.workers,
                "threads": args.threads,
                "quick": args.quick,
            },
            "seed_seconds": round(seed_seconds, 1),
            "runs": runs_out,
            "limits_on": limits,
            "worker_peak_rss_mib": memory,
            "summary": summary,
            "total_seconds": round(time.perf_counter() - total_started, 1),
        },
    )
    print(f"wrote {path.relative_to(harness.ROOT) if path.is_relative_to(harness.ROOT) else path}")
    return 0


def several_vaults(args: argparse.Namespace) -> int:
    """(b) over `args.vaults` simulated Key Vaults, each with Key Vault's limits: the partners spread over them as
    VAULT_URLS spreads them, renewed once by the product at its default pace of creates per vault."""
    from urllib.parse import urlsplit

    from simulator.world import World

    partners = args.partners or (400 if args.quick else 4_000)
    total_started = time.perf_counter()
    database = harness.BenchDatabase("cpv_bench_renewal_vaults")
    database.create()
    var_dir = harness.bench_var_dir()
    sim_process = simulator_for(partners, vaults=args.vaults)
    workers: list[harness.Worker] = []
    try:
        sim = sim_process.start()
        control = sim.control
        urls = sim.env["SIMULATOR_VAULT_URLS"].split(",")
        env = product_set_up(sim.env, database=database, var_dir=var_dir, VAULT_URLS=",".join(urls))
        from bench import seed

        world = World.generate(seed=SEED, partners=partners, customers_per_partner=1)
        seeded_at = time.perf_counter()
        seed.active_partners(sim_env=sim.env, world_partners=world.partners, vault_urls=urls)
        seed_seconds = time.perf_counter() - seeded_at
        print(f"seeded {partners} partners over {len(urls)} vaults in {seed_seconds:.1f} s")
        harness.redis_delete(*(f"key-vault-creates:{urlsplit(url).netloc.lower()}" for url in urls))
        queue, workers = harness.start_workers(env, count=args.workers, threads=args.threads, log_dir=var_dir)
        app = harness.celery_client()
        product = limited_run(control=control, app=app, queue=queue, workers=workers, expected=partners,
                              dbname=database.name)  # fmt: skip
        calls = vault_calls(control, 0)
        windows = calls.pop("creates_per_s_10s_windows")
        per_vault = []
        for url in urls:
            one = vault_calls(control, 0, host=urlsplit(url).netloc)
            one_windows = one.pop("creates_per_s_10s_windows")
            per_vault.append({"vault_url": url, **one,
                              "median_10s_window_per_s": round(harness.median(one_windows), 1)})  # fmt: skip
        memory = [round(w.peak_rss_mib(), 1) for w in workers]
    finally:
        for worker in workers:
            worker.stop()
        sim_process.stop()
        database.drop()

    one_vault = VAULT_CREATES_PER_10S / 10
    ceiling = one_vault * len(urls)
    limits = {
        **product,
        **calls,
        "vaults": len(urls),
        "ceiling_per_s": ceiling,
        "ratio": round(product["per_s"] / ceiling, 3),
        "times_one_vaults_limit": round(product["per_s"] / one_vault, 2),
        "throttled_share": round(calls["throttled_429"] / max(1, calls["calls"]), 4),
        "median_10s_window_per_s": round(harness.median(windows), 1) if windows else None,
        "windows": len(windows),
        "per_vault": per_vault,
    }
    shape = f"{args.workers} processes x {args.threads} threads"
    print()
    print(
        harness.table(
            f"Renewal of {partners:,} partners over {len(urls)} Key Vaults, each with its limits ({shape}; the ceiling "
            f"is {len(urls)} x {one_vault:.0f}/s)",
            ["", "renewals/s", "ceiling/s", "ratio", "x one vault", "median 10 s/s", "429s", "vault calls"],
            [
                [
                    "(b) all",
                    limits["per_s"],
                    ceiling,
                    limits["ratio"],
                    limits["times_one_vaults_limit"],
                    limits["median_10s_window_per_s"] or "",
                    limits["throttled_429"],
                    limits["calls"],
                ]
            ]
            + [
                [f"vault {n}", "", one_vault, "", "", v["median_10s_window_per_s"], v["throttled_429"], v["calls"]]
                for n, v in enumerate(per_vault, 1)
            ],
        )
    )
    print(f"\nworker peak RSS (MiB): {', '.join(str(m) for m in memory)}")
    path = harness.write_results(
        "renewal-vaults",
        {
            "config": {"partners": partners, "vaults": len(urls), "workers": args.workers, "threads": args.threads},
            "seed_seconds": round(seed_seconds, 1),
            "limits_on": limits,
            "worker_peak_rss_mib": memory,
            "total_seconds": round(time.perf_counter() - total_started, 1),
        },
    )
    print(f"wrote {path.relative_to(harness.ROOT) if path.is_relative_to(harness.ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

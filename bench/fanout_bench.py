"""Benchmark 2: ApplicationConsent fan-out under Partner Center's throttle.

One active partner with 1,000 customers (100 with --quick) in the simulator, whose Partner Center allows 50
requests per second per application id (a token bucket; 429 with Retry-After beyond it). Two `celery -A cpv
worker` processes (threads) on Redis run the product's own `consent.customers_sync` task, which lists the
customers and queues one `consent.application_consent_batch` per 50 customers (each batch one audit row); every
call passes the shared limiter at CPV_PC_REQUESTS_PER_SECOND.

Reported per rate setting (medians over the runs): the wall time from sending the sync to the last
ApplicationConsent answered, against the floor of customers / 50 s; the 429 answers; duplicates (a customer
whose consent was created more than once, or answered "already exists" although every consent had been
removed before the run: must be zero). Writes bench/results/fanout.json.

    .venv/bin/python bench/fanout_bench.py [--quick] [--customers N] [--runs R] [--rates 40,48]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness

PC_LIMIT = 50


def reset(control: Any, tenants: list[str], application_id: str) -> None:
    """No ApplicationConsent anywhere: in the simulator and in the database."""
    from bench.seed import threaded
    from customers.models import CustomerConsent

    consents = control.consents()
    present = [t for t in tenants if application_id in consents.get(t.lower(), {})]

    def remove(tenant: str, local: dict[str, Any]) -> None:
        if "control" not in local:
            from simulator.control_client import SimulatorControl

            local["control"] = SimulatorControl(control.base_url, ca_bundle=control._session.verify)
        local["control"].remove_consent(tenant, application_id)

    threaded(present, remove)
    CustomerConsent.objects.all().delete()


def one_run(
    *, app: Any, queue: str, control: Any, partner_id: int, expected: int, application_id: str,
    workers: list[harness.Worker], sim_pid: int,
) -> dict[str, Any]:  # fmt: skip
    from customers.models import CustomerConsent

    control.clear_log()
    time.sleep(1.5)  # the limiter's and Partner Center's buckets full again
    cpu_before = [harness.cpu_seconds(w.process.pid) for w in workers]
    sim_before = harness.cpu_seconds(sim_pid)
    correlation_id = str(uuid.uuid4())
    t0 = time.time()
    app.send_task(
        "consent.customers_sync", kwargs={"partner_id": partner_id, "correlation_id": correlation_id}, queue=queue
    )
    progress, progress_at = -1, time.time()
    while True:
        applied = CustomerConsent.objects.filter(status=CustomerConsent.Status.APPLIED).count()
        if applied >= expected:
            break
        if applied != progress:
            progress, progress_at = applied, time.time()
        elif time.time() - progress_at > 120:
            raise TimeoutError(f"ApplicationConsent stalled at {applied} of {expected}")
        time.sleep(0.05)
    observed = time.time() - t0
    worker_cpu = sum(harness.cpu_seconds(w.process.pid) - c for w, c in zip(workers, cpu_before, strict=True))
    sim_cpu = harness.cpu_seconds(sim_pid) - sim_before
    entries = control.log(service="partner_center")
    posts = [e for e in entries if e["method"] == "POST" and "applicationconsents" in e["path"]]
    statuses = Counter(str(e["status"]) for e in entries)
    created: Counter[str] = Counter()
    exists = 0
    for post in posts:
        if post["status"] in (200, 201):
            created[post["path"]] += 1
        elif post["status"] in (400, 409):
            exists += 1
    times = [datetime.fromisoformat(e["time"]).timestamp() for e in entries]
    last_post = max(datetime.fromisoformat(p["time"]).timestamp() for p in posts) if posts else t0
    first_post = min(datetime.fromisoformat(p["time"]).timestamp() for p in posts) if posts else t0
    wall = last_post - t0
    floor = expected / PC_LIMIT
    busiest = 0
    if times:
        ordered = sorted(times)
        busiest = max(sum(1 for t in ordered[i:] if t < s + 1.0) for i, s in enumerate(ordered))
    return {
        "wall_s": round(wall, 2),
        "observed_s": round(observed, 2),
        "floor_s": floor,
        "ratio_to_floor": round(wall / floor, 3),
        "first_post_after_s": round(first_post - t0, 2),
        "posts_per_s": round((len(posts) - 1) / (last_post - first_post), 1) if last_post > first_post else 0.0,
        "partner_center_calls": len(entries),
        "statuses": dict(statuses),
        "throttled_429": statuses.get("429", 0),
        "throttled_share": round(statuses.get("429", 0) / max(1, len(entries)), 4),
        "duplicates": sum(n - 1 for n in created.values() if n > 1) + exists,
        "busiest_second": busiest,
        "worker_cpu_ms_per_customer": round(worker_cpu * 1000 / expected, 2),
        "simulator_cpu_ms_per_customer": round(sim_cpu * 1000 / expected, 2),
        "consents_in_simulator": sum(1 for apps in control.consents().values() if application_id in apps),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 customers, one run")
    parser.add_argument("--customers", type=int, default=None)
    parser.add_argument("--runs", type=int, default=None, help="runs per rate")
    parser.add_argument("--rates", default=None, help="CPV_PC_REQUESTS_PER_SECOND values to run, comma-separated")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)
    customers = args.customers or (100 if args.quick else 1000)
    runs = args.runs or (1 if args.quick else 3)
    rates = [int(r) for r in (args.rates or ("48" if args.quick else "40,48")).split(",")]

    from simulator.testing import SimulatorProcess
    from simulator.world import World

    # A world of its own: its application id keys the shared Partner Center limiter, which another run at the
    # same time (on the same Redis database) must not share.
    seed_number = random.randrange(1, 1_000_000)
    started = time.perf_counter()
    database = harness.BenchDatabase("cpv_bench_fanout")
    database.create()
    var_dir = harness.bench_var_dir()
    sim_process = SimulatorProcess(
        extra_args=["--seed", str(seed_number), "--partners", "1", "--customers", str(customers),
                    "--pc-rate-limit", str(PC_LIMIT), "--record-issued", "off"],
    )  # fmt: skip
    workers: list[harness.Worker] = []
    results: dict[int, list[dict[str, Any]]] = {}
    memory: list[float] = []
    try:
        sim = sim_process.start()
        control = sim.control
        sim_pid = sim_process.process.pid if sim_process.process else 0
        env = harness.product_env(sim.env, database_url=database.url, var_dir=var_dir)
        harness.migrate(env)
        harness.django_setup(env)
        from bench import seed

        world = World.generate(seed=seed_number, partners=1, customers_per_partner=customers)
        # A token renewed an hour ago: not due, so access tokens do not rotate it.
        (partner_id,) = seed.active_partners(
            sim_env=sim.env, world_partners=world.partners, token_age=timedelta(hours=1)
        )
        tenants = [c.tenant_id for c in world.partners[0].customers]
        application_id = sim.env["CPV_CLIENT_ID"]
        app = harness.celery_client()
        for rate in rates:
            worker_env = {**env, "CPV_PC_REQUESTS_PER_SECOND": str(rate)}
            queue, workers = harness.start_workers(
                worker_env, count=args.workers, threads=args.threads, log_dir=var_dir
            )
            for run in range(runs):
                reset(control, tenants, application_id)
                result = one_run(
                    app=app, queue=queue, control=control, partner_id=partner_id, expected=customers,
                    application_id=application_id, workers=workers, sim_pid=sim_pid,
                )  # fmt: skip
                results.setdefault(rate, []).append(result)
                print(
                    f"rate {rate}/s run {run + 1}: {result['wall_s']} s (floor {result['floor_s']} s), "
                    f"{result['throttled_429']} x 429, {result['duplicates']} duplicates"
                )
            memory += [round(w.peak_rss_mib(), 1) for w in workers]
            for worker in workers:
                worker.stop()
            workers = []
    finally:
        for worker in workers:
            worker.stop()
        sim_process.stop()
        database.drop()

    summary = {}
    rows = []
    for rate, items in results.items():
        wall = harness.median([r["wall_s"] for r in items])
        floor = items[0]["floor_s"]
        summary[str(rate)] = {
            "wall_s": wall,
            "floor_s": floor,
            "ratio_to_floor": round(wall / floor, 3),
            "throttled_429": sum(r["throttled_429"] for r in items),
            "partner_center_calls": sum(r["partner_center_calls"] for r in items),
            "duplicates": sum(r["duplicates"] for r in items),
            "busiest_second": max(r["busiest_second"] for r in items),
            "worker_cpu_ms_per_customer": harness.median([r["worker_cpu_ms_per_customer"] for r in items]),
        }
        s = summary[str(rate)]
        rows.append([
            f"{rate}/s", len(items), wall, floor, s["ratio_to_floor"],
            harness.median([r["posts_per_s"] for r in items]), s["throttled_429"],
            f"{100 * s['throttled_429'] / max(1, s['partner_center_calls']):.2f}%", s["duplicates"],
            s["busiest_second"], s["worker_cpu_ms_per_customer"],
        ])  # fmt: skip
    print()
    print(
        harness.table(
            f"ApplicationConsent for {customers:,} customers, Partner Center at {PC_LIMIT}/s "
            f"({args.workers} workers x {args.threads} threads; target <= 1.1 x floor, 429s < 1%, no duplicates)",
            [
                "limiter",
                "runs",
                "wall s",
                "floor s",
                "ratio",
                "POSTs/s",
                "429s",
                "429 share",
                "duplicates",
                "busiest 1 s",
                "worker cpu ms",
            ],
            rows,
        )
    )
    path = harness.write_results(
        "fanout",
        {
            "config": {"customers": customers, "runs": runs, "rates": rates, "workers": args.workers,
                       "threads": args.threads, "quick": args.quick, "partner_center_limit": PC_LIMIT},
            "runs": {str(k): v for k, v in results.items()},
            "summary": summary,
            "worker_peak_rss_mib": memory,
            "total_seconds": round(time.perf_counter() - started, 1),
        },
    )  # fmt: skip
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: fair scheduling of ApplicationConsent under Partner Center's shared limit.

A partner with 50,000 customers (2,000 with --quick) and, a minute later (10 s with --quick), ten partners with 20
customers each, against the simulator throttled at 50 requests per second per application id. Two `celery -A cpv
worker` processes (threads) on Redis do the work through the shared limiter; the reads in customer tenants queued a
minute after each batch go to the verification's queue beside the run's, which one more worker consumes at a lower
CPU priority (as a worker of its own would on a host of its own; `--verify-workers 0`: the two consume it too).

Two orderings, each from no consent anywhere, with the customers already synced:
  fair     the product's scheduler: each partner's customers recorded as pending work (customers/scheduling.py), the
           pullers hand out batches partner by partner by virtual time;
  arrival  the ordering before it: `consent.application_consent_batch` messages of 50 customers queued in arrival
           order (the message form the product still honours).
  staff    a staff "Apply ApplicationConsent" on each partner's page, as the operation it starts (through the fair
           schedule; before, such an operation queued the arrival order's messages).

Reported per ordering: for each small partner, the time from its work being queued to its last customer consented,
against its fair-share floor (20 / (50 / 11 partners with work) = 4.4 s; target <= 1.5 x), median and worst, and
against the same floor at the rate the run reached (a busy machine does not reach the limit); the giant's time;
total throughput (customers / the span of POSTs) against the limit (target >= 0.95); duplicates (a customer whose
consent was created twice, or found existing although none existed: must be 0); the share of 429s (< 1%); the
customers verified by the time the last was consented. Writes bench/results/fair.json.

    .venv/bin/python bench/fair_bench.py [--quick] [--giant N] [--small N] [--small-customers N] [--offset S]
        [--modes fair,arrival] [--verify-workers N] [--verify-threads N] [--verify-nice N] [--batch N] [--pullers N]
"""

from __future__ import annotations

import argparse
import functools
import random
import sys
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import fanout_bench, harness

PC_LIMIT = 50
OLD_BATCH = 50


def reset(control: Any, tenants: list[str], application_id: str) -> None:
    """No ApplicationConsent anywhere (as the fan-out benchmark resets it), and nothing scheduled."""
    from customers.models import ConsentLane, ConsentPuller, ConsentWork

    fanout_bench.reset(control, tenants, application_id)
    ConsentWork.objects.all().delete()
    ConsentLane.objects.all().delete()
    ConsentPuller.objects.all().delete()


def queue_work(*, mode: str, app: Any, queue: str, partner_id: int) -> None:
    """Queue one partner's ApplicationConsent as the ordering under test does."""
    from customers import services, tasks

    if mode == "fair":
        tasks.application_consents_queue(partner_id=partner_id, correlation_id=str(uuid.uuid4()), queue=queue)
        return
    if mode == "staff":
        staff_apply(partner_id=partner_id, queue=queue)
        return
    # What the product did before its scheduler: a message per 50 customers, in the broker's order.
    services.access_check(partner_id=partner_id)
    ids = services.customers_needing_consent(partner_id=partner_id)
    correlation_id = str(uuid.uuid4())
    for start in range(0, len(ids), OLD_BATCH):
        app.send_task(
            "consent.application_consent_batch",
            kwargs={"partner_id": partner_id, "customer_ids": ids[start : start + OLD_BATCH],
                    "correlation_id": correlation_id},
            queue=queue,
        )  # fmt: skip


def staff_apply(*, partner_id: int, queue: str) -> None:
    """A staff "Apply ApplicationConsent" on the partner's page (dashboard/operations.py), through the fair schedule;
    the pullers it starts are published to the run's queue, as a web tier publishes to its workers'."""
    from customers import tasks
    from dashboard import operations
    from partners.models import Partner

    task = tasks.application_consent_next
    task.apply_async = functools.partial(task.apply_async, queue=queue)
    try:
        operations.operation_start(actor=None, partner=Partner.objects.get(pk=partner_id), kind=operations.APPLY)
    finally:
        del task.apply_async


def one_run(
    *, mode: str, app: Any, queue: str, control: Any, giant: int, small: list[int], offset: float, expected: int,
) -> dict[str, Any]:  # fmt: skip
    from django.db.models import Count, Max

    from customers.models import CustomerConsent

    control.clear_log()
    time.sleep(1.5)  # the limiter's and Partner Center's buckets full again
    t0 = time.time()
    queue_work(mode=mode, app=app, queue=queue, partner_id=giant)
    time.sleep(max(0.0, t0 + offset - time.time()))
    arrived: dict[int, float] = {}
    for partner_id in small:
        arrived[partner_id] = time.time()
        queue_work(mode=mode, app=app, queue=queue, partner_id=partner_id)
    applied = CustomerConsent.Status.APPLIED
    progress, progress_at = -1, time.time()
    while True:
        done = CustomerConsent.objects.filter(status=applied).count()
        if done >= expected:
            break
        if done != progress:
            progress, progress_at = done, time.time()
        elif time.time() - progress_at > 180:
            raise TimeoutError(f"ApplicationConsent stalled at {done} of {expected}")
        time.sleep(0.2)
    finished = {
        row["customer__partner_id"]: (row["last"].timestamp(), row["n"])
        for row in CustomerConsent.objects.filter(status=applied)
        .values("customer__partner_id")
        .annotate(last=Max("applied_at"), n=Count("pk"))
    }
    entries = control.log(service="partner_center", limit=max(10_000, 3 * expected))
    posts = [e for e in entries if e["method"] == "POST" and "applicationconsents" in e["path"]]
    statuses = Counter(str(e["status"]) for e in entries)
    created: Counter[str] = Counter(p["path"] for p in posts if p["status"] in (200, 201))
    exists = sum(1 for p in posts if p["status"] in (400, 409))
    times = sorted(datetime.fromisoformat(p["time"]).timestamp() for p in posts)
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    active = 1 + len(small)
    small_customers = finished[small[0]][1]
    floor = small_customers / (PC_LIMIT / active)
    small_times = [round(finished[p][0] - arrived[p], 2) for p in small]
    rate = (len(times) - 1) / span if span else 0.0
    # The same floor at the rate this machine reached: fairness apart from how busy the machine was.
    measured_floor = small_customers / (rate / active) if rate else 0.0
    return {
        "mode": mode,
        "small_s": small_times,
        "small_floor_s": round(floor, 2),
        "small_ratio_median": round(harness.median(small_times) / floor, 2),
        "small_ratio_worst": round(max(small_times) / floor, 2),
        "small_ratio_at_measured_rate": round(harness.median(small_times) / measured_floor, 2) if rate else 0.0,
        "giant_s": round(finished[giant][0] - t0, 2),
        "giant_floor_s": round(finished[giant][1] / PC_LIMIT, 2),
        "throughput_per_s": round((len(times) - 1) / span, 1) if span else 0.0,
        "throughput_ratio": round((len(times) - 1) / span / PC_LIMIT, 3) if span else 0.0,
        "partner_center_calls": len(entries),
        "throttled_429": statuses.get("429", 0),
        "throttled_share": round(statuses.get("429", 0) / max(1, len(entries)), 4),
        "duplicates": sum(n - 1 for n in created.values() if n > 1) + exists,
        # Read in the tenant (Graph) by the time the last ApplicationConsent was done: the rest is still queued.
        "verified_at_end": CustomerConsent.objects.filter(status=applied).exclude(proof="").count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2,000 + 10 x 20 customers, the ten 10 s later")
    parser.add_argument("--giant", type=int, default=None, help="customers of the big partner")
    parser.add_argument("--small", type=int, default=10, help="partners arriving later")
    parser.add_argument("--small-customers", type=int, default=20)
    parser.add_argument("--offset", type=float, default=None, help="seconds between the big partner and the others")
    parser.add_argument("--modes", default="fair,arrival")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument(
        "--verify-workers",
        type=int,
        default=1,
        help="workers of the verification's queue alone (0: the workers above consume it too)",
    )
    parser.add_argument("--verify-threads", type=int, default=4)
    parser.add_argument("--batch", type=int, default=None, help="CPV_CONSENT_BATCH (the product's default otherwise)")
    parser.add_argument(
        "--pullers", type=int, default=None, help="CPV_CONSENT_PULLERS (the product's default otherwise)"
    )
    parser.add_argument(
        "--verify-nice",
        type=int,
        default=10,
        help="their CPU priority (nice): on one machine, Partner Center's budget goes first, as on a host of its own",
    )
    args = parser.parse_args(argv)
    giant_customers = args.giant or (2000 if args.quick else 50_000)
    offset = args.offset if args.offset is not None else (10.0 if args.quick else 60.0)
    modes = args.modes.split(",")

    from simulator.testing import SimulatorProcess
    from simulator.world import World

    seed_number = random.randrange(1, 1_000_000)
    partners = 1 + args.small
    started = time.perf_counter()
    database = harness.BenchDatabase("cpv_bench_fair")
    database.create()
    var_dir = harness.bench_var_dir()
    sim_process = SimulatorProcess(
        extra_args=["--seed", str(seed_number), "--partners", str(partners),
                    "--customers", str(args.small_customers), "--pc-rate-limit", str(PC_LIMIT),
                    "--record-issued", "off"],
    )  # fmt: skip
    workers: list[harness.Worker] = []
    results: list[dict[str, Any]] = []
    try:
        sim = sim_process.start()
        control = sim.control
        schedule = {
            name: str(value)
            for name, value in (("CPV_CONSENT_BATCH", args.batch), ("CPV_CONSENT_PULLERS", args.pullers))
            if value is not None
        }
        env = harness.product_env(sim.env, database_url=database.url, var_dir=var_dir, **schedule)
        harness.migrate(env)
        harness.django_setup(env)
        from bench import seed
        from customers.services import customers_sync
        from partners.models import Customer

        world = World.generate(seed=seed_number, partners=partners, customers_per_partner=args.small_customers)
        control.add_customers(world.partners[0].tenant_id, giant_customers - args.small_customers)
        ids = seed.active_partners(sim_env=sim.env, world_partners=world.partners, token_age=timedelta(hours=1))
        seed.threaded(ids, lambda pk, local: customers_sync(partner_id=pk), threads=4)
        giant, small = ids[0], ids[1:]
        tenants = [str(t) for t in Customer.objects.values_list("tenant_id", flat=True)]
        expected = len(tenants)
        application_id = sim.env["CPV_CLIENT_ID"]
        app = harness.celery_client()
        for mode in modes:
            reset(control, tenants, application_id)
            # Workers and a queue of their own for each ordering: the verification the last one queued a minute
            # after each batch (which would repair the consents just reset) is left behind with its queue.
            queue, workers = harness.start_workers(
                env, count=args.workers, threads=args.threads, log_dir=var_dir,
                verify_workers=args.verify_workers, verify_threads=args.verify_threads, verify_nice=args.verify_nice,
            )  # fmt: skip
            result = one_run(
                mode=mode, app=app, queue=queue, control=control, giant=giant, small=small, offset=offset,
                expected=expected,
            )  # fmt: skip
            results.append(result)
            for worker in workers:
                worker.stop()
            workers = []
            print(
                f"{mode}: small partners {result['small_ratio_median']} x floor (worst {result['small_ratio_worst']}),"
                f" throughput {result['throughput_ratio']} of the limit, {result['duplicates']} duplicates,"
                f" {result['verified_at_end']} verified by then"
            )
    finally:
        for worker in workers:
            worker.stop()
        sim_process.stop()
        database.drop()

    rows = [
        [
            r["mode"], harness.median(r["small_s"]), max(r["small_s"]), r["small_floor_s"], r["small_ratio_median"],
            r["small_ratio_worst"], r["small_ratio_at_measured_rate"], r["giant_s"], r["giant_floor_s"],
            r["throughput_per_s"], r["throughput_ratio"],
            f"{100 * r['throttled_share']:.2f}%", r["duplicates"], r["verified_at_end"],
        ]
        for r in results
    ]  # fmt: skip
    print()
    print(
        harness.table(
            f"ApplicationConsent: {giant_customers:,} customers, then {args.small} partners x {args.small_customers} "
            f"{offset:g} s later, Partner Center at {PC_LIMIT}/s ({args.workers} workers x {args.threads} threads, "
            f"{args.verify_workers} x {args.verify_threads} on the verification's queue at nice {args.verify_nice}; "
            + "".join(f"{name}={value}; " for name, value in schedule.items())
            + "target small <= 1.5 x floor, throughput >= 0.95, 429s < 1%, no duplicates)",
            ["ordering", "small median s", "small worst s", "floor s", "median ratio", "worst ratio",
             "ratio at measured rate", "giant s",
             "giant floor s", "POSTs/s", "of limit", "429 share", "duplicates", "verified by then"],
            rows,
        )
    )  # fmt: skip
    summary = {r["mode"]: {k: v for k, v in r.items() if k != "mode"} for r in results}
    path = harness.write_results(
        "fair",
        {
            "config": {"giant": giant_customers, "small": args.small, "small_customers": args.small_customers,
                       "offset_s": offset, "workers": args.workers, "threads": args.threads, "quick": args.quick,
                       "verify_workers": args.verify_workers, "verify_threads": args.verify_threads,
                       "verify_nice": args.verify_nice, "batch": args.batch, "pullers": args.pullers,
                       "partner_center_limit": PC_LIMIT},
            "runs": results,
            "summary": summary,
            "total_seconds": round(time.perf_counter() - started, 1),
        },
    )  # fmt: skip
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

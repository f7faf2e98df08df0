"""Benchmark 6: proof in each customer tenant, fanned out by the workers.

One active partner with 1,000 customers (100 with --quick), every one with the vendor's app consented in the
simulator and recorded as applied; a tenth of them drifted (Directory.Read.All taken out of the app's Graph grant).
Two `celery -A cpv worker` processes run the product's own `consent.consents_verify_sweep`, which hands out the
due reads in batches of 50; each read takes a Graph token in the customer's tenant and reads the app's service
principal, its grants and Graph's service principal; a drifted customer is repaired (ApplicationConsent DELETE then
POST) and read again.

Reported (medians over the runs): the wall time until every customer is verified, per customer; the Partner Center
requests (exactly one POST and one DELETE per drifted customer, none for a healthy one: the figure the issue asks
for); the Graph requests and sign-ins per customer; Graph's and Partner Center's 429s. Writes
bench/results/proof.json.

    .venv/bin/python bench/proof_bench.py [--quick] [--customers N] [--runs R]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness

DRIFTED_SHARE = 10  # one customer in ten


def prepare(control: Any, partner_id: int, application_id: str, drifted_every: int) -> list[str]:
    """Every customer consented in the simulator and applied in the database, unread; every `drifted_every`th
    drifted. Returns the drifted tenants."""
    from django.utils import timezone

    from bench.seed import threaded
    from customers.models import CustomerConsent
    from customers.services import desired_grants, grants_hash
    from partners.models import Customer

    grants = desired_grants()
    tenants = [
        str(t)
        for t in Customer.objects.filter(partner_id=partner_id).order_by("pk").values_list("tenant_id", flat=True)
    ]

    def consent(tenant: str, local: dict[str, Any]) -> None:
        if "control" not in local:
            from simulator.control_client import SimulatorControl

            local["control"] = SimulatorControl(control.base_url, ca_bundle=control._session.verify)
        local["control"].add_consent(tenant, application_id=application_id, grants=grants["applicationGrants"])

    threaded(tenants, consent)
    now = timezone.now()
    CustomerConsent.objects.all().delete()
    CustomerConsent.objects.bulk_create(
        [
            CustomerConsent(
                customer_id=pk,
                status=CustomerConsent.Status.APPLIED,
                grants=grants,
                grants_hash=grants_hash(grants),
                applied_at=now,
                proof_due_at=now,
            )
            for pk in Customer.objects.filter(partner_id=partner_id).values_list("pk", flat=True)
        ]
    )
    drifted = tenants[::drifted_every]

    def drift(tenant: str, local: dict[str, Any]) -> None:
        if "control" not in local:
            from simulator.control_client import SimulatorControl

            local["control"] = SimulatorControl(control.base_url, ca_bundle=control._session.verify)
        local["control"].narrow_grant(tenant, ["Directory.Read.All"])

    threaded(drifted, drift)
    return drifted


def one_run(*, app: Any, queue: str, control: Any, expected: int, drifted: int) -> dict[str, Any]:
    from customers.models import CustomerConsent

    control.clear_log()
    t0 = time.time()
    app.send_task("consent.consents_verify_sweep", queue=queue)
    harness.wait_until(
        lambda: CustomerConsent.objects.filter(proof=CustomerConsent.Proof.VERIFIED).count() >= expected,
        timeout=600,
        what=f"{expected} customers verified",
        interval=0.2,
    )
    wall = time.time() - t0
    pc = control.log(service="partner_center")
    graph = control.log(service="graph")
    entra = [e for e in control.log(service="entra") if e["path"].endswith("/oauth2/v2.0/token")]
    posts = Counter(e["path"] for e in pc if e["method"] == "POST" and "applicationconsents" in e["path"])
    deletes = [e for e in pc if e["method"] == "DELETE"]
    repaired = CustomerConsent.objects.filter(proof=CustomerConsent.Proof.VERIFIED).count()
    return {
        "wall_s": round(wall, 2),
        "ms_per_customer": round(wall * 1000 / expected, 2),
        "verified": repaired,
        "drifted": drifted,
        "application_consent_posts": sum(posts.values()),
        "posts_per_drifted_customer": round(sum(posts.values()) / max(1, drifted), 3),
        "customers_posted_twice": sum(1 for n in posts.values() if n > 1),
        "application_consent_deletes": len(deletes),
        "partner_center_requests": len(pc),
        "graph_requests": len(graph),
        "graph_requests_per_customer": round(len(graph) / expected, 2),
        "sign_ins": len(entra),
        "graph_429": sum(1 for e in graph if e["status"] == 429),
        "partner_center_429": sum(1 for e in pc if e["status"] == 429),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 customers, one run")
    parser.add_argument("--customers", type=int, default=None)
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)
    customers = args.customers or (100 if args.quick else 1000)
    runs = args.runs or (1 if args.quick else 3)

    from simulator.testing import SimulatorProcess

    seed_number = random.randrange(1, 1_000_000)
    started = time.perf_counter()
    database = harness.BenchDatabase("cpv_bench_proof")
    database.create()
    var_dir = harness.bench_var_dir()
    sim_process = SimulatorProcess(
        extra_args=["--seed", str(seed_number), "--partners", "1", "--customers", str(customers),
                    "--pc-rate-limit", "50", "--record-issued", "off"],
    )  # fmt: skip
    workers: list[harness.Worker] = []
    results: list[dict[str, Any]] = []
    try:
        sim = sim_process.start()
        control = sim.control
        env = harness.product_env(sim.env, database_url=database.url, var_dir=var_dir)
        harness.migrate(env)
        harness.django_setup(env)
        from bench import seed

        partner_id = seed.synced_partner(sim_env=sim.env, seed_number=seed_number, customers=customers)
        application_id = sim.env["CPV_CLIENT_ID"]
        app = harness.celery_client()
        queue, workers = harness.start_workers(env, count=args.workers, threads=args.threads, log_dir=var_dir)
        for run in range(runs):
            drifted = prepare(control, partner_id, application_id, DRIFTED_SHARE)
            print(f"run {run + 1}: {customers} customers consented, {len(drifted)} drifted; verifying", flush=True)
            result = one_run(app=app, queue=queue, control=control, expected=customers, drifted=len(drifted))
            results.append(result)
            print(
                f"run {run + 1}: {result['wall_s']} s for {customers} customers, "
                f"{result['application_consent_posts']} POSTs for {result['drifted']} drifted, "
                f"{result['graph_requests_per_customer']} Graph requests a customer"
            )
        memory = [round(w.peak_rss_mib(), 1) for w in workers]
    finally:
        for worker in workers:
            worker.stop()
        sim_process.stop()
        database.drop()

    summary = {
        "customers": customers,
        "drifted": results[0]["drifted"],
        "wall_s": harness.median([r["wall_s"] for r in results]),
        "ms_per_customer": harness.median([r["ms_per_customer"] for r in results]),
        "posts_per_drifted_customer": max(r["posts_per_drifted_customer"] for r in results),
        "customers_posted_twice": sum(r["customers_posted_twice"] for r in results),
        "deletes": max(r["application_consent_deletes"] for r in results),
        "graph_requests_per_customer": harness.median([r["graph_requests_per_customer"] for r in results]),
        "sign_ins_per_customer": round(harness.median([r["sign_ins"] for r in results]) / customers, 2),
        "graph_429": sum(r["graph_429"] for r in results),
    }
    print()
    print(
        harness.table(
            f"Verification of {customers:,} customers, {summary['drifted']} drifted "
            f"({args.workers} workers x {args.threads} threads; target: one POST per drifted customer, none else)",
            ["runs", "wall s", "ms/customer", "POSTs/drifted", "posted twice", "DELETEs", "Graph/customer",
             "sign-ins/customer", "Graph 429s"],
            [[len(results), summary["wall_s"], summary["ms_per_customer"], summary["posts_per_drifted_customer"],
              summary["customers_posted_twice"], summary["deletes"], summary["graph_requests_per_customer"],
              summary["sign_ins_per_customer"], summary["graph_429"]]],
        )
    )  # fmt: skip
    path = harness.write_results(
        "proof",
        {
            "config": {"customers": customers, "runs": runs, "workers": args.workers, "threads": args.threads,
                       "quick": args.quick},
            "runs": results,
            "summary": summary,
            "worker_peak_rss_mib": memory,
            "total_seconds": round(time.perf_counter() - started, 1),
        },
    )  # fmt: skip
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark 7: the daily sweep spends Partner Center's ApplicationConsent budget only where it changes something.

One active partner with 10,000 customers (500 with --quick), every one consented in the simulator and recorded as
applied and verified in its tenant a few hours ago; then 1% of them changed: half are customers the product has
never sent ApplicationConsent to (as after a sync found them), half failed in an earlier outage (no consent in their
tenant). Beside them, 2% that must cost nothing: their last call failed (a staff "apply again" Partner Center
refused) but their tenant showed the app with the current grants within the day, so a POST would only answer 409.

Two `celery -A cpv worker` processes run the product's own daily sweep (`consent.customers_sync_sweep`: the
listing, the GDAP pre-flight in Graph, ApplicationConsent where needed) until every changed customer is applied.
Reported: the ApplicationConsent requests (POST, DELETE) against the changed customers (target: at most 1.1 a
changed customer, 110 at full size), the customer listing's GETs beside them (500 customers a page), and the
requests the 2% would have cost before (one POST each, answered 409). Writes bench/results/budget.json.

    .venv/bin/python bench/budget_bench.py [--quick] [--customers N]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness

CHANGED_PER_CENT = 1
VERIFIED_NOISE_PER_CENT = 2


def prepare(control: Any, partner_id: int, application_id: str, *, changed: int, noise: int) -> dict[str, list[int]]:
    """Every customer consented in the simulator and applied and verified in the database; then `changed` of them
    made to need ApplicationConsent (half never sent, half failed with no consent in the tenant), and `noise` marked
    failed though verified within the day. Returns the ids of each group."""
    from django.utils import timezone

    from bench.seed import threaded
    from customers.models import CustomerConsent
    from customers.services import desired_grants, grants_hash
    from partners.models import Customer
    from simulator.control_client import SimulatorControl

    grants = desired_grants()
    rows = list(Customer.objects.filter(partner_id=partner_id).order_by("pk").values_list("pk", "tenant_id"))

    def client(local: dict[str, Any]) -> Any:
        if "control" not in local:
            local["control"] = SimulatorControl(control.base_url, ca_bundle=control._session.verify)
        return local["control"]

    threaded(
        [str(t) for _, t in rows],
        lambda tenant, local: client(local).add_consent(
            tenant, application_id=application_id, grants=grants["applicationGrants"]
        ),
    )
    now = timezone.now()
    CustomerConsent.objects.all().delete()
    CustomerConsent.objects.bulk_create(
        [
            CustomerConsent(
                customer_id=pk, status=CustomerConsent.Status.APPLIED, grants=grants, grants_hash=grants_hash(grants),
                applied_at=now - timedelta(days=30), proof=CustomerConsent.Proof.VERIFIED,
                proof_checked_at=now - timedelta(hours=3), proof_due_at=now + timedelta(hours=20),
            )
            for pk, _ in rows
        ],
        batch_size=2000,
    )  # fmt: skip
    picked = random.sample(rows, changed + noise)
    never, failed, verified = picked[: changed // 2], picked[changed // 2 : changed], picked[changed:]
    threaded(
        [str(t) for _, t in never + failed], lambda tenant, local: client(local).remove_consent(tenant, application_id)
    )
    CustomerConsent.objects.filter(customer_id__in=[pk for pk, _ in never]).delete()
    CustomerConsent.objects.filter(customer_id__in=[pk for pk, _ in failed]).update(
        status=CustomerConsent.Status.FAILED, proof="", proof_checked_at=None, error_kind="unavailable",
        last_error="Partner Center answered 503",
    )  # fmt: skip
    CustomerConsent.objects.filter(customer_id__in=[pk for pk, _ in verified]).update(
        status=CustomerConsent.Status.FAILED, error_kind="other", last_error="refused when staff asked"
    )
    return {"changed": [pk for pk, _ in never + failed], "verified_noise": [pk for pk, _ in verified]}


def one_run(*, app: Any, queue: str, control: Any, changed: list[int]) -> dict[str, Any]:
    from customers.models import CustomerConsent

    control.clear_log()
    t0 = time.time()
    app.send_task("consent.customers_sync_sweep", queue=queue)
    harness.wait_until(
        lambda: (
            CustomerConsent.objects.filter(customer_id__in=changed, status=CustomerConsent.Status.APPLIED).count()
            >= len(changed)
        ),
        timeout=900,
        what=f"{len(changed)} changed customers applied",
        interval=0.5,
    )
    wall = time.time() - t0
    time.sleep(3)  # a request still on its way is counted too
    pc = control.log(service="partner_center", limit=100_000)
    consent_calls = [e for e in pc if "applicationconsents" in e["path"]]
    posts = [e for e in consent_calls if e["method"] == "POST"]
    return {
        "wall_s": round(wall, 2),
        "changed": len(changed),
        "application_consent_requests": len(consent_calls),
        "posts": len(posts),
        "posts_answered_409": sum(1 for e in posts if e["status"] == 409),
        "deletes": sum(1 for e in consent_calls if e["method"] == "DELETE"),
        "listing_gets": sum(1 for e in pc if e["method"] == "GET" and "/customers" in e["path"]),
        "partner_center_requests": len(pc),
        "throttled_429": sum(1 for e in pc if e["status"] == 429),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="500 customers")
    parser.add_argument("--customers", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)
    customers = args.customers or (500 if args.quick else 10_000)
    changed_count = max(2, customers * CHANGED_PER_CENT // 100)
    noise_count = customers * VERIFIED_NOISE_PER_CENT // 100

    from simulator.testing import SimulatorProcess

    seed_number = random.randrange(1, 1_000_000)
    started = time.perf_counter()
    database = harness.BenchDatabase("cpv_bench_budget")
    database.create()
    var_dir = harness.bench_var_dir()
    sim_process = SimulatorProcess(
        extra_args=["--seed", str(seed_number), "--partners", "1", "--customers", str(customers),
                    "--pc-rate-limit", "50", "--record-issued", "off"],
    )  # fmt: skip
    workers: list[harness.Worker] = []
    try:
        sim = sim_process.start()
        control = sim.control
        env = harness.product_env(sim.env, database_url=database.url, var_dir=var_dir)
        harness.migrate(env)
        harness.django_setup(env)
        from bench import seed

        partner_id = seed.synced_partner(sim_env=sim.env, seed_number=seed_number, customers=customers)
        groups = prepare(control, partner_id, sim.env["CPV_CLIENT_ID"], changed=changed_count, noise=noise_count)
        app = harness.celery_client()
        queue, workers = harness.start_workers(env, count=args.workers, threads=args.threads, log_dir=var_dir)
        print(f"{customers} customers, {changed_count} changed, {noise_count} verified but failed", flush=True)
        result = one_run(app=app, queue=queue, control=control, changed=groups["changed"])
    finally:
        for worker in workers:
            worker.stop()
        sim_process.stop()
        database.drop()

    target = round(1.1 * changed_count)
    summary = {
        **result,
        "customers": customers,
        "verified_noise": noise_count,
        "target_application_consent_requests": target,
        "requests_per_changed_customer": round(result["application_consent_requests"] / changed_count, 3),
        # What the verified-but-failed customers cost before: a POST each, which Partner Center answers with 409.
        "before_extra_posts": noise_count,
    }
    print()
    print(
        harness.table(
            f"Daily sweep over {customers:,} customers, {changed_count} changed (target: at most {target} "
            "ApplicationConsent requests)",
            ["ApplicationConsent requests", "POSTs", "409s", "DELETEs", "listing GETs", "429s", "wall s",
             f"before: + POSTs to the {noise_count} verified"],
            [[result["application_consent_requests"], result["posts"], result["posts_answered_409"], result["deletes"],
              result["listing_gets"], result["throttled_429"], result["wall_s"], noise_count]],
        )
    )  # fmt: skip
    path = harness.write_results(
        "budget",
        {
            "config": {"customers": customers, "changed": changed_count, "verified_noise": noise_count,
                       "workers": args.workers, "threads": args.threads, "quick": args.quick},
            "summary": summary,
            "total_seconds": round(time.perf_counter() - started, 1),
        },
    )  # fmt: skip
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What one renewal costs in CPU, the product against the bare script, without concurrency.

Benchmark 1 measures throughput with two processes of four threads on a two-core machine, which other work
on a shared machine disturbs. This one renews partners one at a time in one thread of one process,
interleaving the bare script on the libraries' default HTTP sessions, the bare script on the product's own
session (microsoft/http.py), and the product's `renew_batch` on batches of BATCH_SIZE (what a worker's
batch does: one transaction for the batch), and reports the median thread CPU time per renewal of each, and the
part of the product's spent executing its database statements (from Django's `connection.execute_wrapper`;
building them is not in that part). The simulator's
CPU is not counted. Writes bench/results/renewal_cost.json.

    .venv/bin/python bench/renewal_cost_bench.py [--quick] [--partners N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness
from bench.renewal_bench import SEED, bare_renewal

WARM_UP = 5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="60 partners")
    parser.add_argument("--partners", type=int, default=None, help="partners in all (a third for each variant)")
    args = parser.parse_args(argv)
    partners = args.partners or (120 if args.quick else 1200)

    from simulator.testing import SimulatorProcess
    from simulator.world import World

    database = harness.BenchDatabase("cpv_bench_renewal_cost")
    database.create()
    sim_process = SimulatorProcess(
        extra_args=["--seed", str(SEED), "--partners", str(partners), "--customers", "1",
                    "--vault-limits", "off", "--pc-rate-limit", "0", "--record-issued", "off"],
        startup_timeout=180,
    )  # fmt: skip
    try:
        sim = sim_process.start()
        env = harness.product_env(sim.env, database_url=database.url, var_dir=harness.bench_var_dir())
        env.update(DJANGO_SETTINGS_MODULE="bench.settings", CPV_BENCH_VAULT_CREATES_PER_SECOND="0")
        harness.migrate(env)
        harness.django_setup(env)
        import requests
        from django.conf import settings
        from django.db import connection

        from bench import seed
        from microsoft.http import EnvironmentOnceSession
        from tokens.models import PartnerToken
        from tokens.renewal import batch_renewal_finish, renew_batch
        from tokens.sweep import BATCH_SIZE

        seed.active_partners(
            sim_env=sim.env,
            world_partners=World.generate(seed=SEED, partners=partners, customers_per_partner=1).partners,
        )
        scope = settings.CPV_CLOUD_CONFIG.partner_center_scope
        kits = {
            "bare, default sessions": (seed.vault_client(sim.env), requests.Session(), {}),
            "bare, the product's session": (
                seed.vault_client(sim.env, environment_once=True),
                EnvironmentOnceSession(),
                {},
            ),
        }
        rows = list(
            PartnerToken.objects.order_by("partner_id").values_list(
                "partner_id", "partner__tenant_id", "secret_name", "current_version"
            )
        )
        third = len(rows) // 3
        times: dict[str, list[float]] = {name: [] for name in [*kits, "product"]}
        database_times: list[float] = []

        def database_time(execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
            started = time.thread_time()
            try:
                return execute(sql, params, many, context)
            finally:
                spent[0] += time.thread_time() - started

        spent = [0.0]
        for first in range(0, third - BATCH_SIZE + 1, BATCH_SIZE):
            for offset, (name, (vault, session, cache)) in enumerate(kits.items()):
                for _, tenant, secret, version in rows[offset * third + first : offset * third + first + BATCH_SIZE]:
                    started = time.thread_time()
                    bare_renewal(sim.env, vault, session, cache, scope, tenant=str(tenant), name=secret,
                                 version=version)  # fmt: skip
                    times[name].append(time.thread_time() - started)
            batch = [row[0] for row in rows[2 * third + first : 2 * third + first + BATCH_SIZE]]
            spent[0] = 0.0
            with connection.execute_wrapper(database_time):
                started = time.thread_time()
                # The whole batch in one transaction, however long this machine takes, and its clean-up.
                committed = renew_batch(partner_ids=batch, hold=float("inf"))
                for pointer, redemption in committed.renewed:
                    batch_renewal_finish(pointer, redemption)
                elapsed = time.thread_time() - started
            results = committed.results
            assert [r.outcome for r in results] == ["renewed"] * len(batch), results
            times["product"].append(elapsed / len(batch))
            database_times.append(spent[0] / len(batch))
    finally:
        sim_process.stop()
        database.drop()

    def median_ms(values: list[float]) -> float:
        # The product's figures are one per batch: its first batch is its warm-up.
        return round(1000 * statistics.median(values[WARM_UP if len(values) > 2 * WARM_UP else 1 :]), 2)

    figures = {name: median_ms(values) for name, values in times.items()}
    product = figures["product"]
    summary = {
        "cpu_ms": figures,
        "product_database_statements_ms": median_ms(database_times),
        "product_over_bare": round(product / figures["bare, default sessions"], 3),
        "product_over_bare_same_session": round(product / figures["bare, the product's session"], 3),
    }
    print(
        harness.table(
            f"CPU of one renewal, one thread, {len(times['product']) * BATCH_SIZE} of each, the product's in batches "
            f"of {BATCH_SIZE} (median thread CPU per renewal; not the simulator's)",
            ["", "ms", "product / this"],
            [[name, ms, round(product / ms, 2) if ms else ""] for name, ms in figures.items()]
            + [["product: executing its SQL", summary["product_database_statements_ms"], ""]],
        )
    )
    path = harness.write_results(
        "renewal_cost", {"config": {"partners": partners, "quick": args.quick}, "summary": summary}
    )
    print(f"wrote {path.relative_to(harness.ROOT) if path.is_relative_to(harness.ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

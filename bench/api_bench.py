"""Benchmark 7: access tokens handed out by the token API, against the bare access-token service, in one run.

Active partners of the simulator's world (20; 5 with --quick), their refresh tokens in the simulator's Key Vault.
One registered API client with an API key. In this process, one after the other:

- cold: the in-process cache emptied before each hand-out, so every one redeems the stored refresh token at the
  simulator's Entra (reading the vault first), for each partner in turn: the bare service (`access_token_get`)
  and the API (`POST /api/v1/partners/{code}/access-tokens` through Django's whole request cycle: the API key's
  lookup, the rate limit, the partner's checks, the audit row, the JSON);
- warm: the cache filled, then the same number of hand-outs round the partners from it, bare and through the API.

Reported (medians over the runs): hand-outs per second of each, and the API's share of the bare rate (api / bare).
Writes bench/results/api.json.

    .venv/bin/python bench/api_bench.py [--quick] [--partners N] [--warm N] [--runs R]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness


def _rate(count: int, work: Callable[[int], None]) -> float:
    t0 = time.perf_counter()
    for index in range(count):
        work(index)
    return round(count / (time.perf_counter() - t0), 1)


def one_run(*, partners: list[Any], key: str, cold_rounds: int, warm: int) -> dict[str, Any]:
    from django.test import Client

    from tokens.access_tokens import PARTNER_CENTER, access_token_get, cache_forget

    http = Client(HTTP_HOST="127.0.0.1", headers={"Authorization": f"Bearer {key}"})
    body = json.dumps({"audience": "partner_center"})

    def bare(index: int) -> None:
        access_token_get(partner=partners[index % len(partners)], audience=PARTNER_CENTER)

    def api(index: int) -> None:
        code = partners[index % len(partners)].code
        response = http.post(f"/api/v1/partners/{code}/access-tokens", body, content_type="application/json")
        if response.status_code != 200:
            raise RuntimeError(f"the API answered {response.status_code}: {response.content[:300]!r}")

    def cold(work: Callable[[int], None]) -> Callable[[int], None]:
        def step(index: int) -> None:
            cache_forget()
            work(index)

        return step

    cold_count = cold_rounds * len(partners)
    result = {
        "bare_cold_per_s": _rate(cold_count, cold(bare)),
        "api_cold_per_s": _rate(cold_count, cold(api)),
    }
    for index in range(len(partners)):
        bare(index)
    result["bare_warm_per_s"] = _rate(warm, bare)
    result["api_warm_per_s"] = _rate(warm, api)
    result["cold_ratio"] = round(result["api_cold_per_s"] / result["bare_cold_per_s"], 3)
    result["warm_ratio"] = round(result["api_warm_per_s"] / result["bare_warm_per_s"], 3)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 partners, 200 warm hand-outs, one run")
    parser.add_argument("--partners", type=int, default=None)
    parser.add_argument("--warm", type=int, default=None)
    parser.add_argument("--runs", type=int, default=None)
    args = parser.parse_args(argv)
    count = args.partners or (5 if args.quick else 20)
    warm = args.warm or (200 if args.quick else 2000)
    runs = args.runs or (1 if args.quick else 3)
    cold_rounds = 2 if args.quick else 3

    from simulator.testing import SimulatorProcess
    from simulator.world import World

    seed_number = random.randrange(1, 1_000_000)
    started = time.perf_counter()
    database = harness.BenchDatabase("cpv_bench_api")
    database.create()
    var_dir = harness.bench_var_dir()
    sim_process = SimulatorProcess(
        extra_args=["--seed", str(seed_number), "--partners", str(count), "--customers", "1",
                    "--record-issued", "off"],
    )  # fmt: skip
    results: list[dict[str, Any]] = []
    try:
        sim = sim_process.start()
        # No limit on this one client: the figure is the hand-out's cost, not the limit's.
        env = harness.product_env(sim.env, database_url=database.url, var_dir=var_dir, CPV_API_RATE_LIMIT="1000000")
        harness.migrate(env)
        harness.django_setup(env)
        from api.services import api_client_create
        from bench import seed
        from partners.models import Partner

        world = World.generate(seed=seed_number, partners=count, customers_per_partner=1)
        ids = seed.active_partners(sim_env=sim.env, world_partners=world.partners, token_age=timedelta(hours=1))
        partners = list(Partner.objects.filter(pk__in=ids).order_by("pk"))
        issued = api_client_create(actor=None, name="Benchmark", audiences=["partner_center"], all_partners=True)
        for run in range(runs):
            result = one_run(partners=partners, key=str(issued.key), cold_rounds=cold_rounds, warm=warm)
            results.append(result)
            print(
                f"run {run + 1}: cold {result['api_cold_per_s']}/s vs bare {result['bare_cold_per_s']}/s, "
                f"warm {result['api_warm_per_s']}/s vs bare {result['bare_warm_per_s']}/s",
                flush=True,
            )
    finally:
        sim_process.stop()
        database.drop()

    summary = {
        key: harness.median([r[key] for r in results])
        for key in ("bare_cold_per_s", "api_cold_per_s", "cold_ratio", "bare_warm_per_s", "api_warm_per_s",
                    "warm_ratio")
    }  # fmt: skip
    print()
    print(
        harness.table(
            f"Access-token hand-outs of {count} partners, one process (medians of {runs} runs)",
            ["cache", "bare service /s", "token API /s", "API / bare"],
            [["cold", summary["bare_cold_per_s"], summary["api_cold_per_s"], summary["cold_ratio"]],
             ["warm", summary["bare_warm_per_s"], summary["api_warm_per_s"], summary["warm_ratio"]]],
        )
    )  # fmt: skip
    path = harness.write_results(
        "api",
        {
            "config": {"partners": count, "warm": warm, "cold_rounds": cold_rounds, "runs": runs,
                       "quick": args.quick},
            "runs": results,
            "summary": summary,
            "total_seconds": round(time.perf_counter() - started, 1),
        },
    )  # fmt: skip
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

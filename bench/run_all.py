"""Every product benchmark, one after the other, each in its own process; then a summary of the figures
against their targets. `make bench` runs the full sizes; `make bench QUICK=1` (or `make bench-quick`) the small
ones that CI runs so the benchmarks cannot rot. Writes bench/results/summary.json beside each benchmark's own.

    .venv/bin/python bench/run_all.py [--quick]
        [--only renewal,fanout,fair,callback,dashboard,simulator,proof,api,budget]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness

BENCHMARKS = {
    "renewal": "bench/renewal_bench.py",
    "renewal_cost": "bench/renewal_cost_bench.py",
    "fanout": "bench/fanout_bench.py",
    "fair": "bench/fair_bench.py",
    "callback": "bench/callback_bench.py",
    "dashboard": "bench/dashboard_bench.py",
    "simulator": "bench/simulator_bench.py",
    "proof": "bench/proof_bench.py",
    "api": "bench/api_bench.py",
    "budget": "bench/budget_bench.py",
    "managed_identity": "bench/managed_identity_bench.py",
}
# The simulator's own throughput is context for the others, not a product figure: full runs only. The fairness
# benchmark's small version takes minutes (two orderings of 2,000 customers at 50 a second): full runs only too.
QUICK_SET = ["renewal", "renewal_cost", "fanout", "callback", "dashboard", "api", "budget"]


def _load(name: str) -> dict[str, Any]:
    path = harness.RESULTS_DIR / f"{name}.json"
    return dict(json.loads(path.read_text())) if path.exists() else {}


def summary_rows(quick: bool) -> list[list[Any]]:
    rows: list[list[Any]] = []
    renewal = _load("renewal").get("summary", {})
    if renewal:
        rows.append(["1a renewal, vault limits off: product / bare", renewal["ratio"], ">= 0.8",
                     f"{renewal['product_per_s']}/s vs {renewal['bare_per_s']}/s"])  # fmt: skip
        if renewal.get("ratio_same_session") is not None:
            rows.append(["1a ... / bare on the product's HTTP session", renewal["ratio_same_session"], "",
                         f"vs {renewal['bare_same_session_per_s']}/s"])  # fmt: skip
    cost = _load("renewal_cost").get("summary", {})
    if cost:
        rows.append(["1a CPU of one renewal: product / bare (same session)", cost["product_over_bare"],
                     "", f"({cost['product_over_bare_same_session']}); {cost['cpu_ms']} ms"])  # fmt: skip
        if renewal.get("limits_ratio") is not None:
            rows.append(["1b renewal, vault limits on: rate / 30 per s", renewal["limits_ratio"], ">= 0.9",
                         f"429 share {100 * renewal['limits_throttled_share']:.2f}% (< 1%)"])  # fmt: skip
        rows.append(["4 worker peak RSS (MiB)", renewal["worker_peak_rss_mib"], "", "during the sweep"])
    fanout = _load("fanout").get("summary", {})
    for rate, figures in fanout.items():
        rows.append([f"2 ApplicationConsent, limiter {rate}/s: wall / floor", figures["ratio_to_floor"], "<= 1.1",
                     f"{figures['wall_s']} s vs {figures['floor_s']} s; {figures['throttled_429']} x 429; "
                     f"{figures['duplicates']} duplicates"])  # fmt: skip
    fair = _load("fair").get("summary", {})
    for mode, figures in fair.items():
        rows.append([f"2b small partners behind a giant, {mode} ordering: time / fair-share floor",
                     figures["small_ratio_median"], "<= 1.5" if mode == "fair" else "",
                     f"worst {figures['small_ratio_worst']}; throughput {figures['throughput_ratio']} of 50/s "
                     f"(>= 0.95); 429 share {100 * figures['throttled_share']:.2f}%; "
                     f"{figures['duplicates']} duplicates"])  # fmt: skip
    dashboard = _load("dashboard").get("summary", {})
    if dashboard:
        rows.append(["3 dashboard: worst p95 (ms)", dashboard["worst_p95_ms"], "< 150",
                     f"query counts independent of size: {dashboard['query_counts_independent']}"])  # fmt: skip
        if "over_budget" in dashboard:
            rows.append(["3 dashboard: pages over their budget", len(dashboard["over_budget"]), "0",
                         "; ".join(dashboard["over_budget"]) or "queries and time / a plain count"])  # fmt: skip
        rows.append(["4 web worker peak RSS (MiB)", dashboard["web_peak_rss_mib"], "", "gunicorn, dashboard pages"])
    callback = _load("callback").get("summary", {})
    if callback:
        detail = f"p95 {callback['added_ms']['p95']} ms; own code and database {callback['own_ms']['median']} ms"
        rows.append(["5 callback: added beyond the simulator, median (ms)", callback["added_ms"]["median"], "", detail])
        if "product_over_bare" in callback:
            rows.append(["5 callback: product / a bare script's same calls", callback["product_over_bare"], "<= 2",
                         f"bare median {callback['bare_wall_ms']['median']} ms, same run"])  # fmt: skip
    proof = _load("proof").get("summary", {})
    if proof:
        rows.append(["6 proof: ApplicationConsent POSTs per drifted customer", proof["posts_per_drifted_customer"],
                     "1", f"{proof['customers']} customers, {proof['drifted']} drifted; {proof['wall_s']} s; "
                     f"{proof['graph_requests_per_customer']} Graph requests a customer"])  # fmt: skip
    api = _load("api").get("summary", {})
    if api:
        rows.append(["7 token API hand-outs, cache cold: API / bare service", api["cold_ratio"], "",
                     f"{api['api_cold_per_s']}/s vs {api['bare_cold_per_s']}/s"])  # fmt: skip
        rows.append(["7 token API hand-outs, cache warm: API / bare service", api["warm_ratio"], "",
                     f"{api['api_warm_per_s']}/s vs {api['bare_warm_per_s']}/s"])  # fmt: skip
    budget = _load("budget").get("summary", {})
    if budget:
        rows.append(["8 daily sweep: ApplicationConsent requests", budget["application_consent_requests"],
                     f"<= {budget['target_application_consent_requests']}",
                     f"{budget['changed']} of {budget['customers']} customers changed; {budget['listing_gets']} "
                     f"listing GETs; before, +{budget['before_extra_posts']} POSTs answered 409"])  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the small versions")
    parser.add_argument("--only", default=None, help="a comma-separated subset")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else (QUICK_SET if args.quick else list(BENCHMARKS))
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    failed = []
    timings = {}
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        started = time.perf_counter()
        command = [harness.PYTHON, BENCHMARKS[name], *(["--quick"] if args.quick else [])]
        code = subprocess.call(command, cwd=harness.ROOT)
        timings[name] = round(time.perf_counter() - started, 1)
        if code != 0:
            failed.append(name)
    rows = summary_rows(args.quick)
    print()
    print(harness.table("Summary" + (" (quick sizes: not the real figures)" if args.quick else ""),
                        ["figure", "value", "target", "detail"], rows))  # fmt: skip
    harness.write_results(
        "summary",
        {"quick": args.quick, "benchmarks": names, "failed": failed, "seconds": timings,
         "rows": [dict(zip(["figure", "value", "target", "detail"], r, strict=True)) for r in rows]},
    )  # fmt: skip
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Token writes through the product's Key Vault backend: one vault against the same writes spread over several
(VAULT_URLS).

The simulator serves V Key Vaults (2 by default), each with Key Vault's limits (300 creates and 4,000 other
operations per 10 s). This process writes N secrets (a renewal's write: a new version of a partner's secret) through
`tokens.vault.get_vault(url)`, each vault paced by the product at CPV_VAULT_CREATES_PER_SECOND on Redis, from T
threads: first every write to the first vault, then each partner's to its own vault, in turn. Reported: writes per
second of each, their ratio, each vault's busiest 10 seconds and the 429 answers; medians over the runs.

A renewal's redemption at Entra is left out: on a small machine the simulator's single process caps whole renewals
below one vault's limit (`renewal_bench.py --vaults 2` reports that figure), which would hide what a second vault
adds to the write capacity.

    .venv/bin/python bench/vault_shards_bench.py [--quick] [--vaults V] [--writes N] [--threads T] [--runs R]
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness
from bench.renewal_bench import VAULT_CREATES_PER_10S, vault_calls


def writes_run(urls: list[str], *, writes: int, threads: int) -> float:
    """`writes` secrets written through the product's vaults, partner i's to urls[i % len(urls)]: seconds taken."""
    from tokens.vault import get_vault, secret_name_for

    names = [secret_name_for(uuid.uuid4()) for _ in range(writes)]

    def write(index: int) -> None:
        get_vault(urls[index % len(urls)]).write(name=names[index], value=secrets.token_urlsafe(48), known_count=0)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(write, range(writes)))
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="600 writes, one run")
    parser.add_argument("--vaults", type=int, default=2)
    parser.add_argument("--writes", type=int, default=None, help="writes per measure (default 1,800)")
    parser.add_argument("--threads", type=int, default=10)
    parser.add_argument("--runs", type=int, default=None, help="runs of each measure (default 3)")
    args = parser.parse_args(argv)
    writes = args.writes or (600 if args.quick else 1_800)
    runs = args.runs or (1 if args.quick else 3)

    from simulator.testing import SimulatorProcess

    total_started = time.perf_counter()
    sim_process = SimulatorProcess(
        extra_args=["--partners", "1", "--customers", "1", "--vaults", str(args.vaults), "--record-issued", "off"],
        startup_timeout=120,
    )
    rows: list[dict[str, Any]] = []
    try:
        sim = sim_process.start()
        control = sim.control
        urls = sim.env["SIMULATOR_VAULT_URLS"].split(",")
        # The vault needs no database: Django is configured, never connected.
        env = harness.product_env(
            sim.env,
            database_url="postgres://unused@127.0.0.1:5432/unused",
            var_dir=harness.bench_var_dir(),
            VAULT_URLS=",".join(urls),
            CPV_LOG_LEVEL="WARNING",  # not a line per write
        )
        harness.django_setup(env)
        from django.conf import settings

        pace = settings.CPV_VAULT_CREATES_PER_SECOND
        for run in range(runs):
            for label, used in (("one vault", urls[:1]), (f"{len(urls)} vaults", urls)):
                harness.redis_delete(*(f"key-vault-creates:{urlsplit(url).netloc.lower()}" for url in urls))
                time.sleep(10.5)  # every vault's window empty
                control.clear_log()
                seconds = writes_run(used, writes=writes, threads=args.threads)
                calls = vault_calls(control, 0)
                busiest = [vault_calls(control, 0, host=urlsplit(url).netloc)["busiest_10s_creates"] for url in used]
                rows.append({
                    "run": run + 1, "measure": label, "vaults": len(used), "writes": writes,
                    "seconds": round(seconds, 2), "per_s": round(writes / seconds, 1),
                    "throttled_429": calls["throttled_429"], "busiest_10s_creates_per_vault": busiest,
                })  # fmt: skip
                print(f"run {run + 1}, {label}: {writes / seconds:.1f} writes/s, {calls['throttled_429']} x 429")
    finally:
        sim_process.stop()

    one = harness.median([r["per_s"] for r in rows if r["vaults"] == 1])
    several = harness.median([r["per_s"] for r in rows if r["vaults"] > 1])
    limit = VAULT_CREATES_PER_10S / 10
    summary = {
        "vaults": args.vaults,
        "one_vault_per_s": one,
        "several_vaults_per_s": several,
        "ratio": round(several / one, 2) if one else 0.0,
        "times_one_vaults_limit": round(several / limit, 2),
        "pace_per_vault_per_s": pace,
        "throttled_429": sum(r["throttled_429"] for r in rows),
    }
    table_rows = [
        [f"run {r['run']}, {r['measure']}", r["per_s"], round(r["per_s"] / limit, 2),
         ", ".join(str(b) for b in r["busiest_10s_creates_per_vault"]), r["throttled_429"]]
        for r in rows
    ] + [
        ["median, one vault", one, round(one / limit, 2), "", ""],
        [f"median, {args.vaults} vaults", several, summary["times_one_vaults_limit"], f"ratio {summary['ratio']}", ""],
    ]  # fmt: skip
    title = (
        f"{writes:,} token writes through the product's vault ({args.threads} threads; each vault paced at {pace}/s "
        f"under Key Vault's {limit:.0f}/s)"
    )
    print()
    print(harness.table(title, ["", "writes/s", "x one vault's limit", "busiest 10 s per vault", "429s"], table_rows))
    path = harness.write_results(
        "vault_shards",
        {
            "config": {"vaults": args.vaults, "writes": writes, "threads": args.threads, "runs": runs},
            "runs": rows,
            "summary": summary,
            "total_seconds": round(time.perf_counter() - total_started, 1),
        },
    )
    print(f"wrote {path.relative_to(harness.ROOT) if path.is_relative_to(harness.ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

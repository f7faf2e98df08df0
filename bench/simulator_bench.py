"""How fast the simulator serves: refresh-token redemptions, Partner Center calls and vault writes per second.

Starts `python -m simulator` as a separate process (limits off), then drives it from worker processes,
each running several threads with their own msal client or requests session over keep-alive
connections. Prints a table of medians and writes bench/results/simulator.json.

    .venv/bin/python bench/simulator_bench.py [--quick] [--threads N] [--processes P] [--runs R]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from simulator.testing import SimulatorProcess  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "simulator.json"
PC_SCOPE = ["https://api.partnercenter.microsoft.com/.default"]


def _redeem_worker(env: dict[str, str], refresh_tokens: list[str], duration: float, out: Any) -> None:
    import msal

    counts = [0] * len(refresh_tokens)
    errors = [0] * len(refresh_tokens)
    start_at = time.perf_counter() + 0.2

    def run(index: int) -> None:
        app = msal.ConfidentialClientApplication(
            env["CPV_CLIENT_ID"],
            client_credential=env["CPV_CLIENT_SECRET"],
            authority=f"{env['CPV_AUTHORITY_HOST']}/organizations",
            instance_discovery=False,
        )
        token = refresh_tokens[index]
        while time.perf_counter() < start_at:
            time.sleep(0.001)
        deadline = start_at + duration
        while time.perf_counter() < deadline:
            result = app.acquire_token_by_refresh_token(token, PC_SCOPE)
            if "access_token" in result:
                token = result["refresh_token"]  # store the new one, as the product does
                counts[index] += 1
            else:
                errors[index] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(refresh_tokens))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.put((sum(counts), sum(errors)))


def _http_worker(
    kind: str, env: dict[str, str], token: Any, threads_n: int, duration: float, seed: int, out: Any
) -> None:
    """kind "pc", "vault" (token: a bearer token) or "redeem" (token: one refresh token per thread)."""
    import requests

    counts = [0] * threads_n
    errors = [0] * threads_n
    start_at = time.perf_counter() + 0.2

    def run(index: int) -> None:
        session = requests.Session()
        session.verify = env["REQUESTS_CA_BUNDLE"]
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        refresh = token[index] if kind == "redeem" else ""
        token_url = f"{env['CPV_AUTHORITY_HOST']}/organizations/oauth2/v2.0/token"
        while time.perf_counter() < start_at:
            time.sleep(0.001)
        deadline = start_at + duration
        i = 0
        while time.perf_counter() < deadline:
            i += 1
            if kind == "redeem":
                # the same form msal posts, without msal's client-side work
                response = session.post(
                    token_url,
                    data={
                        "grant_type": "refresh_token",
                        "client_id": env["CPV_CLIENT_ID"],
                        "client_secret": env["CPV_CLIENT_SECRET"],
                        "refresh_token": refresh,
                        "scope": f"{PC_SCOPE[0]} offline_access openid profile",
                        "client_info": "1",
                    },
                    timeout=30,
                )
                if response.status_code == 200:
                    refresh = response.json()["refresh_token"]
            elif kind == "pc":
                response = session.get(
                    f"{env['CPV_PARTNER_CENTER_URL']}/v1/customers?size=20",
                    headers={**headers, "MS-RequestId": f"bench-{seed}-{index}-{i}"},
                    timeout=30,
                )
            else:
                response = session.put(
                    f"{env['VAULT_URL']}secrets/bench-{seed}-{index}-{i % 400}?api-version=7.5",
                    json={"value": f"value-{i}", "contentType": "text/plain"},
                    headers=headers,
                    timeout=30,
                )
            if response.status_code in (200, 201):
                counts[index] += 1
            else:
                errors[index] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.put((sum(counts), sum(errors)))


def _server_cpu(pid: int) -> float:
    """CPU seconds used so far by the simulator's process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(targets: list[tuple[Any, tuple[Any, ...]]], duration: float, server_pid: int) -> tuple[float, int, float]:
    """(operations per second, errors, server CPU milliseconds per operation)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    processes = [ctx.Process(target=fn, args=(*args, queue)) for fn, args in targets]
    for process in processes:
        process.start()
    # workers start their clocks together, 0.2 s after they are up; count the server's CPU around that
    cpu_before = _server_cpu(server_pid)
    results = [queue.get(timeout=duration + 120) for _ in processes]
    cpu_used = _server_cpu(server_pid) - cpu_before
    for process in processes:
        process.join(timeout=30)
    ok = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    return ok / duration, errors, (cpu_used * 1000 / ok) if ok else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs (under 30 s in all)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker process")
    parser.add_argument("--processes", type=int, default=2, help="client worker processes")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--duration", type=float, default=None, help="seconds per run")
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    duration = args.duration or (3.0 if args.quick else 8.0)

    sim_process = SimulatorProcess(
        extra_args=[
            "--pc-rate-limit",
            "0",
            "--vault-limits",
            "off",
            "--record-issued",
            "off",
            "--partners",
            "4",
        ]
    )
    load = os.getloadavg()
    started = time.perf_counter()
    running = sim_process.start()
    try:
        env = running.env
        os.environ["REQUESTS_CA_BUNDLE"] = env["REQUESTS_CA_BUNDLE"]
        os.environ["SSL_CERT_FILE"] = env["REQUESTS_CA_BUNDLE"]
        control = running.control
        control.set_settings(vault_version_limit=None)
        world = running.world
        admins = [p.users[0].upn for p in world.partners]
        total_threads = args.threads * args.processes

        import msal
        import requests

        rts = [control.issue_refresh_token(admins[i % len(admins)]) for i in range(total_threads)]
        app = msal.ConfidentialClientApplication(
            env["CPV_CLIENT_ID"],
            client_credential=env["CPV_CLIENT_SECRET"],
            authority=f"{env['CPV_AUTHORITY_HOST']}/organizations",
            instance_discovery=False,
        )
        pc_token = app.acquire_token_by_refresh_token(rts[0], PC_SCOPE)["access_token"]
        rts[0] = control.issue_refresh_token(admins[0])
        vault_token = requests.post(
            f"{env['AZURE_AUTHORITY_HOST']}/{env['AZURE_TENANT_ID']}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": env["AZURE_CLIENT_ID"],
                "client_secret": env["AZURE_CLIENT_SECRET"],
                "scope": "https://vault.azure.net/.default",
            },
            timeout=30,
        ).json()["access_token"]

        rows: dict[str, list[float]] = {
            "refresh-token redemptions (msal)": [],
            "refresh-token redemptions (raw HTTP)": [],
            "Partner Center calls": [],
            "vault writes": [],
        }
        errors: dict[str, int] = dict.fromkeys(rows, 0)
        cpu_ms: dict[str, list[float]] = {label: [] for label in rows}
        server_pid = sim_process.process.pid if sim_process.process else 0

        def record(label: str, measured: tuple[float, int, float]) -> None:
            rows[label].append(measured[0])
            errors[label] += measured[1]
            cpu_ms[label].append(measured[2])

        def fresh_tokens() -> list[str]:
            # each run's workers keep their newest tokens to themselves: start every run with new ones
            return [control.issue_refresh_token(admins[i % len(admins)]) for i in range(total_threads)]

        for run in range(runs):
            per_process = [rts[i :: args.processes] for i in range(args.processes)]
            targets = [(_redeem_worker, (env, chunk, duration)) for chunk in per_process]
            record("refresh-token redemptions (msal)", _measure(targets, duration, server_pid))
            rts = fresh_tokens()
            tokens_by_kind: dict[str, Any] = {"pc": pc_token, "vault": vault_token}
            for kind, label in (
                ("redeem", "refresh-token redemptions (raw HTTP)"),
                ("pc", "Partner Center calls"),
                ("vault", "vault writes"),
            ):
                targets = []
                for p in range(args.processes):
                    token = rts[p * args.threads : (p + 1) * args.threads] if kind == "redeem" else tokens_by_kind[kind]
                    targets.append((_http_worker, (kind, env, token, args.threads, duration, run * 100 + p)))
                record(label, _measure(targets, duration, server_pid))
            rts = fresh_tokens()
        elapsed = time.perf_counter() - started
    finally:
        sim_process.stop()

    shape = f"{args.processes} processes x {args.threads} threads"
    print(f"\nSimulator throughput ({runs} run(s) x {duration:.0f} s, {shape})")
    print(f"load average before the runs: {load[0]:.2f} (other work on this machine lowers every figure)")
    header = f"{'operation':<40}{'median/s':>10}{'min/s':>10}{'max/s':>10}{'errors':>8}"
    print(f"{header}{'server ms/op':>14}{'server-bound/s':>16}")
    summary = {}
    for label, values in rows.items():
        median = statistics.median(values)
        server_ms = statistics.median(cpu_ms[label])
        capacity = 1000 / server_ms if server_ms else 0.0
        summary[label] = {
            "median_per_s": round(median, 1),
            "runs_per_s": [round(v, 1) for v in values],
            "errors": errors[label],
            "server_cpu_ms_per_op": round(server_ms, 3),
            "server_bound_per_s_per_core": round(capacity, 1),
        }
        print(
            f"{label:<40}{median:>10.1f}{min(values):>10.1f}{max(values):>10.1f}{errors[label]:>8}"
            f"{server_ms:>14.3f}{capacity:>16.0f}"
        )
    print("(server-bound/s: what one core of the simulator could serve if the clients cost nothing)")
    print(f"(total {elapsed:.1f} s)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                },
                "config": {
                    "runs": runs,
                    "duration_s": duration,
                    "processes": args.processes,
                    "threads": args.threads,
                    "quick": args.quick,
                },
                "load_average_before": load,
                "results": summary,
                "target_redemptions_per_s": 500,
                "meets_target": summary["refresh-token redemptions (msal)"]["median_per_s"] >= 500,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

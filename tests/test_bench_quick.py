"""The benchmarks' small versions run end to end, so that they cannot rot. Nothing here asserts a speed:
the machine is shared, and the figures are for people to read. Each benchmark must run, and its JSON must
hold the figures its table shows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench-results")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))}
    env.update(
        CPV_BENCH_RESULTS=str(out),
        CPV_BENCH_DB_PREFIX=f"t{uuid.uuid4().hex[:6]}_",
        PYTHONUNBUFFERED="1",
    )
    run = subprocess.run(
        [sys.executable, "bench/run_all.py", "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "Summary" in run.stdout
    return out


def load(results: Path, name: str) -> dict:
    data = json.loads((results / f"{name}.json").read_text())
    assert data["benchmark"] == name and data["machine"]["cpus"] >= 1 and data["config"]["quick"] is True
    return data


def test_the_renewal_benchmark_compares_the_product_with_a_bare_script_and_counts_429s(results: Path) -> None:
    data = load(results, "renewal")
    (run,) = data["runs"]
    assert run["bare"]["renewed"] == run["bare_same_session"]["renewed"] == run["product"]["renewed"] == 200
    assert run["bare"]["per_s"] > 0 and run["product"]["per_s"] > 0 and run["ratio"] > 0
    assert run["ratio_same_session"] > 0 and run["cpu_ratio"] > 0 and run["cpu_ratio_same_session"] > 0
    assert run["product"]["database_cpu_ms_per_renewal"] >= 0
    limits = data["limits_on"]
    assert limits["renewed"] == 200 and limits["ceiling_per_s"] == 30 and limits["throttled_429"] >= 0
    assert all(m > 0 for m in data["worker_peak_rss_mib"])


def test_the_renewal_cost_benchmark_times_one_renewal_of_each_kind(results: Path) -> None:
    summary = load(results, "renewal_cost")["summary"]
    assert set(summary["cpu_ms"]) == {"bare, default sessions", "bare, the product's session", "product"}
    assert all(ms > 0 for ms in summary["cpu_ms"].values())
    assert summary["product_over_bare"] > 0 and summary["product_database_statements_ms"] > 0


def test_the_fanout_benchmark_reports_wall_time_429s_and_duplicates(results: Path) -> None:
    figures = load(results, "fanout")["summary"]["48"]
    assert figures["floor_s"] == 2.0 and figures["wall_s"] > 0
    assert figures["duplicates"] == 0
    assert figures["throttled_429"] >= 0


def test_the_callback_benchmark_times_what_the_product_adds(results: Path) -> None:
    data = load(results, "callback")
    assert len(data["samples"]) == 20
    assert {"median", "p95"} <= set(data["summary"]["added_ms"])
    # Side by side, a bare script making the same Microsoft calls with the client libraries alone.
    assert data["summary"]["bare_wall_ms"]["median"] > 0 and data["summary"]["product_over_bare"] > 0
    assert data["summary"]["simulator_requests"]["bare"] >= 5


def test_the_dashboard_benchmark_times_each_page_and_counts_its_queries(results: Path) -> None:
    data = load(results, "dashboard")
    small, large = data["sizes"]
    assert large["partners"] == 200 and large["customers"] > small["customers"]
    assert set(large["pages"]) == set(small["pages"]) and len(large["pages"]) == 6
    assert all(page["queries"] > 0 and page["p95_ms"] > 0 for page in large["pages"].values())
    assert data["web"]["worker_peak_rss_mib"] > 0
    # Each page against its budget: queries, and its time as a multiple of a plain count timed in the same run.
    assert all(page["ratio_to_count"] > 0 for page in large["pages"].values())
    assert set(data["summary"]["budgets"]) == set(large["pages"]) and data["summary"]["over_budget"] == []


def test_a_page_past_its_budget_fails_the_dashboard_benchmark() -> None:
    from bench.dashboard_bench import BUDGETS, over_budget

    within = {label: {"queries": b["queries"], "ratio_to_count": b["ratio"]} for label, b in BUDGETS.items()}
    assert over_budget(within) == []
    grown = {**within, "overview": {"queries": BUDGETS["overview"]["queries"] + 1, "ratio_to_count": 3 * 1600}}
    assert over_budget(grown) == [
        f"overview: {BUDGETS['overview']['queries'] + 1:.0f} queries, budget {BUDGETS['overview']['queries']:.0f}",
        f"overview: 4800x a plain count, budget {BUDGETS['overview']['ratio']:.0f}x",
    ]


def test_the_budget_benchmark_counts_what_the_daily_sweep_spends(results: Path) -> None:
    summary = load(results, "budget")["summary"]
    assert summary["customers"] == 500 and summary["changed"] == 5
    # Each changed customer once; the verified ones, whose last call failed, not at all.
    assert summary["posts"] == summary["application_consent_requests"] == 5
    assert summary["listing_gets"] >= 1 and summary["before_extra_posts"] == 10


def test_the_api_benchmark_compares_the_token_api_with_the_bare_service_warm_and_cold(results: Path) -> None:
    data = load(results, "api")
    (run,) = data["runs"]
    for cache in ("cold", "warm"):
        assert run[f"api_{cache}_per_s"] > 0 and run[f"bare_{cache}_per_s"] > 0 and run[f"{cache}_ratio"] > 0


def test_the_summary_lists_every_figure(results: Path) -> None:
    summary = json.loads((results / "summary.json").read_text())
    assert summary["failed"] == []
    figures = " ".join(row["figure"] for row in summary["rows"])
    for number in ("1a", "1b", "2", "3", "4", "5", "7"):
        assert f"{number} " in figures

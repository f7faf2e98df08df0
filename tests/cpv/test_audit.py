"""The dependency audit (`make audit`, .ci/audit): loud either way; a known vulnerability fails it, and so does
vulnerability data it could not fetch unless CPV_AUDIT_OFFLINE_OK=1; CI on a machine that cannot reach the data runs
it with CPV_AUDIT_OFFLINE_OK=1 and says so; a scheduled workflow reruns it against the locks; the pins are the latest
patch releases this machine's index offers."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.cpv.test_requirements import locked

AUDIT = ROOT / ".ci" / "audit"
ANSWERS = {
    "clean": ("No known vulnerabilities found", 0),
    "vulnerable": ("Found 1 known vulnerability in 1 package\nName Version ID\ndjango 5.2.19 PYSEC-0000-0", 1),
    "offline": ("ERROR:pip_audit._cli:amqp: Dependency not found and could not be audited: amqp (5.4.2)", 1),
    "broken": ("pip-audit: something else went wrong", 2),
}


def run_audit(
    tmp_path: Path, answer: str, *args: str, offline_ok: str | None = None
) -> subprocess.CompletedProcess[str]:
    """.ci/audit with a stand-in pip-audit that gives `answer` (no network is asked)."""
    text, status = ANSWERS[answer]
    fake = tmp_path / "pip-audit"
    fake.write_text(f"#!/bin/sh\ncat <<'OUT'\n{text}\nOUT\nexit {status}\n")
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "CPV_AUDIT_OFFLINE_OK"}
    env["CPV_AUDIT_BIN"] = str(tmp_path)
    if offline_ok is not None:
        env["CPV_AUDIT_OFFLINE_OK"] = offline_ok
    return subprocess.run([str(AUDIT), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_data_that_could_not_be_fetched_fails_the_audit_loudly(tmp_path: Path) -> None:
    result = run_audit(tmp_path, "offline")

    assert result.returncode == 3
    assert "### NOT AUDITED" in result.stdout and "the audit FAILS" in result.stdout
    assert "CPV_AUDIT_OFFLINE_OK=1" in result.stdout


@pytest.mark.parametrize("value", ["1"])
def test_with_cpv_audit_offline_ok_it_passes_but_still_says_not_audited(tmp_path: Path, value: str) -> None:
    result = run_audit(tmp_path, "offline", offline_ok=value)

    assert result.returncode == 0
    assert "### NOT AUDITED" in result.stdout and "were NOT checked" in result.stdout


@pytest.mark.parametrize("offline_ok", [None, "1"])
def test_a_known_vulnerability_fails_whatever_the_offline_setting(tmp_path: Path, offline_ok: str | None) -> None:
    result = run_audit(tmp_path, "vulnerable", offline_ok=offline_ok)

    assert result.returncode == 1 and "### VULNERABLE" in result.stdout


def test_an_audit_that_failed_for_another_reason_fails(tmp_path: Path) -> None:
    result = run_audit(tmp_path, "broken", offline_ok="1")

    assert result.returncode == 1 and "### AUDIT FAILED" in result.stdout


def test_a_clean_audit_says_so(tmp_path: Path) -> None:
    result = run_audit(tmp_path, "clean")

    assert result.returncode == 0 and "### AUDITED: no known vulnerability" in result.stdout


@pytest.mark.parametrize(("answer", "code"), [("clean", 0), ("vulnerable", 0), ("offline", 3)])
def test_the_reachability_probe(tmp_path: Path, answer: str, code: int) -> None:
    assert run_audit(tmp_path, answer, "--reachable").returncode == code


def test_ci_sets_cpv_audit_offline_ok_only_where_the_data_cannot_be_reached_and_says_so() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    step = ci[ci.index('step "dependency audit"') : ci.index('step "tests"')]

    assert ".ci/audit --reachable" in step and "export CPV_AUDIT_OFFLINE_OK=1" in step
    assert step.index("--reachable") < step.index("export CPV_AUDIT_OFFLINE_OK=1") < step.index("make audit")
    assert "!!!" in step


def test_a_scheduled_workflow_reruns_the_audit_against_the_locks() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "audit.yml").read_text())

    triggers = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1 reads `on` as true
    assert triggers["schedule"][0]["cron"]
    steps = workflow["jobs"]["audit"]["steps"]
    assert any(step.get("run") == "make audit" for step in steps)
    assert workflow["jobs"]["audit"]["env"]["CPV_AUDIT_OFFLINE_OK"] in ("", "0")


def test_the_makefile_audit_runs_the_script_over_every_lock() -> None:
    makefile = (ROOT / "Makefile").read_text()
    script = AUDIT.read_text()

    assert ".ci/audit" in makefile
    for lock in ("requirements.txt", "requirements-demo.txt", "requirements-dev.txt"):
        assert lock in script


def test_django_and_cryptography_are_pinned_at_their_latest_patch_releases() -> None:
    """Django 5.2.20 and cryptography 50.0.2 were the latest patch releases of their series on this machine's index
    when last locked; an older pin is a regression."""
    for lock in ("requirements.txt", "requirements-demo.txt", "requirements-dev.txt"):
        pins = locked(lock)
        assert tuple(int(p) for p in pins["django"][0].split(".")) >= (5, 2, 20), lock
        assert tuple(int(p) for p in pins["cryptography"][0].split(".")) >= (50, 0, 2), lock

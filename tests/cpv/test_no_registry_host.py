"""The project names no package registry's host: CI and the tools use the clients as the machine has them set up,
and an audit that cannot reach its data says so without naming where the data would come from."""

from __future__ import annotations

import subprocess

from tests.conftest import ROOT

# Spelled in pieces, so that this file does not name them either.
HOSTS = ["pypi" + ".org", "pythonhosted" + ".org", "registry.npmjs" + ".org", "deb.debian" + ".org"]


def test_no_tracked_file_names_a_package_registry_host() -> None:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    named = [
        (name, host)
        for name in files
        if (ROOT / name).is_file()
        for host in HOSTS
        if host in (ROOT / name).read_text(errors="ignore")
    ]

    assert named == []


def test_ci_runs_the_audit_through_make_audit_which_reports_an_audit_it_could_not_run() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()

    assert "make audit" in ci and "curl" not in ci
    assert "NOT AUDITED" in makefile and "NOT AUDITED" in (ROOT / ".ci" / "audit").read_text()

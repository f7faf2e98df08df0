"""The demo as a new user meets it in two terminals: `make demo` in one, the README's commands in the other.

The demo runs in a copy of the checkout (its own `var/`, as a user's checkout has), and every command runs from a
plain shell: no settings module, no simulator variables, nothing exported, `.venv/bin/python manage.py ...`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from cpv.env_files import env_file_values
from simulator.control_client import SimulatorControl
from tests.conftest import ROOT, free_port, wait_until
from tests.simulated import sign_in

pytestmark = pytest.mark.slow

KEY_LINES_END = "use this demo's settings"
NOT_COPIED = (".git", ".venv", "var", "test-output", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache")


def _user_shell() -> dict[str, str]:
    """What a user's terminal has: a PATH, a home, a locale, maybe the system's CA bundle. Nothing of the project's."""
    shell = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}
    system_bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if system_bundle.is_file():
        shell["REQUESTS_CA_BUNDLE"] = shell["SSL_CERT_FILE"] = str(system_bundle)
    return shell


class Demo:
    """`python -m cpv.demo` (what `make demo` runs) in a checkout, with its output in a log file."""

    def __init__(self, checkout: Path, port: int) -> None:
        self.checkout = checkout
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.runs = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = checkout / "demo-0.log"

    def start(self) -> str:
        """Start it and wait for its key lines; returns its output so far."""
        self.runs += 1
        self.log_path = self.checkout / f"demo-{self.runs}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [".venv/bin/python", "-m", "cpv.demo"],
                cwd=self.checkout,
                env=_user_shell() | {"CPV_DEMO_PORT": str(self.port)},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def printed_its_key_lines() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"the demo exited early:\n{self.log()}")
            return KEY_LINES_END in self.log()

        wait_until(printed_its_key_lines, timeout=180, what="the demo's key lines")
        return self.log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Ctrl-C, as in the terminal."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of this checkout, with `.venv` pointing at the interpreter's environment, and no `var/` yet."""
    copy = tmp_path / "checkout"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(*NOT_COPIED), symlinks=True)
    (copy / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    return copy


@pytest.fixture
def demo(checkout: Path) -> Iterator[Demo]:
    running = Demo(checkout, free_port())
    try:
        yield running
    finally:
        running.stop()


def manage(checkout: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`.venv/bin/python manage.py ARGS` typed in another terminal of the same checkout."""
    return subprocess.run(
        [".venv/bin/python", "manage.py", *args],
        cwd=checkout,
        env=_user_shell(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _partners(checkout: Path) -> dict[str, dict[str, object]]:
    listed = manage(checkout, "partners", "--json")
    assert listed.returncode == 0, listed.stderr
    return {p["name"]: p for p in json.loads(listed.stdout)}


def _settled(row: dict[str, object]) -> bool:
    """Every customer of the demo's partner has the app or waits without GDAP access (the demo's showcase customers
    have each GDAP state), and more than the eight ordinary ones have it."""
    consented, waiting, total = (
        int(str(row[key])) for key in ("consented_customers", "customers_without_access", "customers")
    )
    return consented > 8 and waiting > 0 and consented + waiting == total


def _consent_as_the_partners_admin(demo: Demo, output: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The partner's admin opens the printed consent link and accepts on the simulated sign-in page."""
    settings = env_file_values(demo.checkout / "var" / "demo.env")
    ca_bundle = settings["REQUESTS_CA_BUNDLE"]
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_bundle)
    control = SimulatorControl(settings["SIMULATOR_CONTROL_URL"], ca_bundle=ca_bundle)
    try:
        admin = control.world()["partners"][0]["users"][0]
    finally:
        control.close()
    link = re.search(r"Try a partner's consent: (\S+)", output)
    assert link, output
    with requests.Session() as browser:
        landing = browser.get(link.group(1), timeout=10)
        start = re.search(r'action="([^"]+/start)"', landing.text)
        assert start, landing.text
        started = browser.post(
            demo.base + start.group(1),
            data={"csrfmiddlewaretoken": browser.cookies["csrftoken"]},
            headers={"Referer": landing.url},
            allow_redirects=False,
            timeout=20,
        )
        assert started.status_code == 303, started.text
        # A browser sends the Secure binding cookie to http://127.0.0.1 (a secure context); requests does not.
        for cookie in browser.cookies:
            cookie.secure = False
        target, fields = sign_in(started.headers["Location"], user_oid=admin["oid"])
        result = browser.post(target, data=fields, timeout=60)
    assert result.status_code == 200, result.text
    assert "Consent recorded" in result.text


def test_commands_from_another_terminal_act_on_the_running_demo_and_a_restart_loses_nothing(
    demo: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = demo.start()
    # The key lines come last, after the worker's and beat's banners.
    tail = output[output.index("[demo] The control panel is at") :]
    assert f"[demo] The control panel is at {demo.base}/" in tail
    password = re.search(r"Demo staff user: username demo  password (\S+)", tail)
    assert password, tail
    for private in ("demo.env", "demo-password", "simulator/state.json"):
        assert (demo.checkout / "var" / private).stat().st_mode & 0o777 == 0o600, private

    _consent_as_the_partners_admin(demo, output, monkeypatch)
    wait_until(
        lambda: _settled(_partners(demo.checkout)["Contoso Partners (demo)"]),
        timeout=120,
        what="the demo's worker to put the app into the partner's customers",
    )

    # The README's command, from a plain shell, renews through the demo's simulated Microsoft cloud.
    renewed = manage(demo.checkout, "renew_tokens", "--all", "--force")
    assert renewed.returncode == 0, renewed.stdout + renewed.stderr
    assert "Renewal: 1 renewed" in renewed.stdout
    partner = _partners(demo.checkout)["Contoso Partners (demo)"]
    assert (partner["status"], partner["token_status"]) == ("active", "healthy")
    checked = manage(demo.checkout, "vault_check")
    assert checked.returncode == 0 and "vault check passed" in checked.stdout + checked.stderr

    authority = env_file_values(demo.checkout / "var" / "demo.env")["CPV_AUTHORITY_HOST"]
    demo.stop()
    stopped = manage(demo.checkout, "renew_tokens", "--all", "--force")
    assert stopped.returncode != 0
    assert stopped.stderr.startswith("The demo is not running"), stopped.stderr
    assert "Traceback" not in stopped.stderr

    # Ctrl-C and start again: the same password, and the partner renews with what the simulator issued before.
    again = demo.start()
    assert f"Demo staff user: username demo  password {password.group(1)}" in again
    # on the same ports, so a sign-in page left open in a browser goes on
    assert env_file_values(demo.checkout / "var" / "demo.env")["CPV_AUTHORITY_HOST"] == authority
    renewed = manage(demo.checkout, "renew_tokens", "--all", "--force")
    assert renewed.returncode == 0, renewed.stdout + renewed.stderr
    assert "Renewal: 1 renewed" in renewed.stdout
    partner = _partners(demo.checkout)["Contoso Partners (demo)"]
    assert (partner["status"], partner["token_status"]) == ("active", "healthy")
    with requests.Session() as session:
        login = session.get(f"{demo.base}/accounts/login/", timeout=10)
        signed_in = session.post(
            login.url,
            data={
                "username": "demo",
                "password": password.group(1),
                "csrfmiddlewaretoken": session.cookies["csrftoken"],
            },
            headers={"Referer": login.url},
            timeout=10,
        )
    assert signed_in.url == f"{demo.base}/", signed_in.text


def _audit_count(checkout: Path, action: str) -> int:
    with sqlite3.connect(checkout / "var" / "db.sqlite3") as db:
        (count,) = db.execute("SELECT COUNT(*) FROM partners_auditevent WHERE action = ?", [action]).fetchone()
    return int(count)


def _ctrl_c(demo: Demo) -> float:
    """Ctrl-C in the demo's terminal (SIGINT to its process group): how long it took to exit."""
    assert demo.process is not None
    started = time.monotonic()
    os.killpg(demo.process.pid, signal.SIGINT)
    demo.process.wait(timeout=30)
    took = time.monotonic() - started
    demo.process = None
    return took


def test_the_demo_prints_its_key_lines_and_warnings_only_stops_within_5_s_and_a_restart_changes_nothing(
    demo: Demo,
) -> None:
    output = demo.start()
    tail = output[output.index("[demo] The control panel is at") :]
    # Which account consents for the invited partner, what each seeded account lacks, and the certificate.
    assert re.search(r'To consent for the invited "Contoso Partners \(demo\)", sign in as admin@\S+', tail), tail
    assert "globaladmin@...  lacks the Admin Agent role" in tail
    assert "nomfa@...  lacks MFA registration" in tail
    assert "kept across restarts: a browser warns about it once" in tail
    assert "Manage certificates > Authorities > Import" in tail
    # Warnings and the key lines: no banner, no kombu warning, no request lines.
    for noise in ("-------------- [queues]", "celery beat v", "No hostname was supplied", "Quit the server with"):
        assert noise not in output, noise
    ca = (demo.checkout / "var" / "simulator" / "ca.pem").read_bytes()
    assert _audit_count(demo.checkout, "staff.microsoft_bound") == 1

    took = _ctrl_c(demo)
    assert took < 5, f"Ctrl-C took {took:.1f} s"
    assert re.search(r"\[demo\] stopped \(\d+\.\d s\)", demo.log()), demo.log()

    again = demo.start()
    # Nothing changed: no new audit row for the binding, the same CA (a browser that trusts it or passed its
    # warning is not asked again).
    assert _audit_count(demo.checkout, "staff.microsoft_bound") == 1
    assert (demo.checkout / "var" / "simulator" / "ca.pem").read_bytes() == ca
    assert "sign in as admin@" in again
    took = _ctrl_c(demo)
    assert took < 5, f"Ctrl-C took {took:.1f} s"
    assert "[demo] stopped (" in demo.log()

"""`make demo` runs the control panel on embedded defaults, serves the staff home page, and stops cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from cpv.demo import demo_user_password
from cpv.env_files import env_file_values
from tests.conftest import ROOT, free_port, project_env, wait_until


def _running(pattern: str) -> bool:
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True, check=False).returncode == 0


@pytest.mark.slow
def test_make_demo_serves_the_staff_home_page_and_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "demo.log"
    # The embedded defaults: no database, broker or vault variables, only a folder and a port of its own.
    env = project_env(CPV_VAR_DIR=str(tmp_path / "var"), CPV_DEMO_PORT=str(port))
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CPV_BASE_URL", "VAULT_KEY"):
        env.pop(name, None)
    with log_path.open("wb") as log:
        demo = subprocess.Popen(
            ["make", "--no-print-directory", "demo"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            if demo.poll() is not None:
                raise AssertionError(f"make demo exited early:\n{log_path.read_text()}")
            try:
                return requests.get(f"{base}/healthz", timeout=2).ok
            except requests.ConnectionError:
                return False

        wait_until(healthy, timeout=180, what="make demo to answer /healthz")
        # The key lines come once the worker and beat are ready, after their banners.
        wait_until(lambda: "Demo staff user:" in log_path.read_text(), timeout=60, what="the demo's key lines")
        output = log_path.read_text()
        credentials = re.search(r"Demo staff user: username (\S+)  password (\S+)", output)
        assert credentials, output
        assert output.index(" ready.") < credentials.start()

        session = requests.Session()
        login = session.get(f"{base}/accounts/login/", timeout=10)
        response = session.post(
            f"{base}/accounts/login/",
            data={
                "username": credentials.group(1),
                "password": credentials.group(2),
                "csrfmiddlewaretoken": session.cookies["csrftoken"],
            },
            headers={"Referer": login.url},
            timeout=10,
        )
        assert response.status_code == 200
        assert response.url == f"{base}/"
        assert "Needs attention" in response.text
        assert "Contoso Partners (demo)" in session.get(f"{base}/partners/", timeout=10).text
        # The printed consent link starts a sign-in at the demo's own simulated Microsoft cloud.
        link = re.search(r"Try a partner's consent: (\S+)", output)
        assert link, output
        landing = session.get(link.group(1), timeout=10)
        start = re.search(r'action="([^"]+/start)"', landing.text)
        assert start, landing.text
        started = session.post(
            base + start.group(1),
            data={"csrfmiddlewaretoken": session.cookies["csrftoken"]},
            headers={"Referer": landing.url},
            allow_redirects=False,
            timeout=20,
        )
        assert started.status_code == 303, started.text
        assert started.headers["Location"].startswith("https://127.0.0.1:")
        # The vault's key pair: the web seals with the public half, the worker opens with the private one.
        assert (tmp_path / "var" / "vault-seal.key").stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "var" / "vault-seal.pub").exists()
        assert not (tmp_path / "var" / "vault.key").exists()

        # Staff sign in with Microsoft too, on the simulated vendor's tenant, as the demo user it printed.
        microsoft = re.search(r'Or "Sign in with Microsoft" as (\S+) on the simulated sign-in page', output)
        assert microsoft, output
        staff = requests.Session()
        # The demo's CA bundle, given on each call (requests lets REQUESTS_CA_BUNDLE win over a session's verify).
        demo_ca = env_file_values(tmp_path / "var" / "demo.env")["REQUESTS_CA_BUNDLE"]
        sign_in_page = staff.get(f"{base}/accounts/login/", timeout=10)
        assert 'id="sign-in-microsoft"' in sign_in_page.text
        to_microsoft = staff.post(
            f"{base}/accounts/microsoft/",
            data={"csrfmiddlewaretoken": staff.cookies["csrftoken"]},
            headers={"Referer": sign_in_page.url},
            allow_redirects=False,
            timeout=20,
        )
        page = staff.get(to_microsoft.headers["Location"], timeout=10, verify=demo_ca)
        txn = re.search(r'name="txn" value="([^"]+)"', page.text)
        assert txn and microsoft.group(1) in page.text, page.text
        answer = staff.post(
            page.url.split("?", 1)[0],
            data={"txn": txn.group(1), "username": microsoft.group(1), "action": "accept"},
            timeout=10,
            verify=demo_ca,
        )
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', answer.text))
        # The browser-binding cookie is a __Host- (Secure) cookie, which a browser sends to http://127.0.0.1
        # (a secure context) and requests does not: the test sends the jar's cookies itself.
        every_cookie = {"Cookie": "; ".join(f"{c.name}={c.value}" for c in staff.cookies)}
        callback = staff.post(
            f"{base}/accounts/microsoft/callback/", data=fields, headers=every_cookie, allow_redirects=False, timeout=20
        )
        assert callback.status_code == 303, callback.text
        welcome = staff.get(
            base + callback.headers["Location"], headers=every_cookie, allow_redirects=False, timeout=10
        )
        assert welcome.status_code == 303, welcome.text
        home = staff.get(base + welcome.headers["Location"], timeout=10)
        assert home.url == f"{base}/" and "Needs attention" in home.text, home.text[:2000]
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        demo.wait(timeout=60)

    output = log_path.read_text()
    assert "stopping web, worker, beat and the simulator" in output
    assert not _running(str(tmp_path / "var" / "simulator"))
    wait_until(lambda: not _running(f"demo-{port}@"), timeout=30, what="the demo's worker to stop")
    assert not _running(str(tmp_path / "var" / "celerybeat-schedule"))
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/healthz", timeout=2)


def test_the_demo_registers_every_redirect_uri_the_product_signs_in_with() -> None:
    from django.urls import reverse

    from cpv.demo import redirect_uris

    assert redirect_uris("http://127.0.0.1:8000/") == [
        "http://127.0.0.1:8000" + reverse("consent:callback"),
        "http://127.0.0.1:8000" + reverse("portal:callback"),
        "http://127.0.0.1:8000" + reverse("sign_in_microsoft_callback"),
    ]


@pytest.mark.slow
def test_the_demo_users_password_is_kept_while_it_signs_in_and_made_anew_when_it_no_longer_does(
    tmp_path: Path,
) -> None:
    var_dir = tmp_path / "var"
    env = project_env(CPV_VAR_DIR=str(var_dir), DJANGO_SETTINGS_MODULE="cpv.settings")
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "VAULT_KEY"):
        env.pop(name, None)

    def migrate() -> None:
        subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=env, check=True)

    migrate()
    first = demo_user_password(var_dir, env)
    assert (var_dir / "demo-password").stat().st_mode & 0o777 == 0o600
    assert demo_user_password(var_dir, env) == first

    # A fresh database has no demo user: the kept password would not sign anyone in.
    (var_dir / "db.sqlite3").unlink()
    migrate()
    second = demo_user_password(var_dir, env)
    assert second != first
    assert (var_dir / "demo-password").read_text().strip() == second

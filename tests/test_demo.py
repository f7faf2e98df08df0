"""`make demo` runs the control panel on embedded defaults, serves the staff home page, and stops cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from cpv.demo import certificates_only, demo_user_password
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
        # The key lines come once the worker and beat are ready (their banners are not shown).
        wait_until(lambda: "Demo staff user:" in log_path.read_text(), timeout=60, what="the demo's key lines")
        output = log_path.read_text()
        credentials = re.search(r"Demo staff user: username (\S+)  password (\S+)", output)
        assert credentials, output
        assert "-------------- [queues]" not in output

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
        # Ctrl-C in the terminal: SIGINT to make and everything in its process group.
        started = time.monotonic()
        os.killpg(demo.pid, signal.SIGINT)
        demo.wait(timeout=60)
        took = time.monotonic() - started

    output = log_path.read_text()
    assert "stopping web, worker, beat and the simulator" in output
    assert took < 5, f"Ctrl-C took {took:.1f} s"
    assert re.search(r"\[demo\] stopped \(\d+\.\d s\)", output), output[-2000:]
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


def test_the_embedded_database_lets_the_web_server_and_two_worker_processes_write_at_once(
    tmp_path: Path, django_db_blocker: Any
) -> None:
    """Two transactions that read then write the demo's SQLite file at the same moment: the second waits for the
    first instead of failing with "database is locked" (what staff saw as "the database connection failed")."""
    import threading
    import time

    from django.db.backends.sqlite3.base import DatabaseWrapper

    from cpv.config import load_config

    settings_dict = load_config({}, base_dir=tmp_path).database
    settings_dict = {
        "TIME_ZONE": None,
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": False,
        "AUTOCOMMIT": True,
        "OPTIONS": {},
    } | settings_dict

    def connection() -> DatabaseWrapper:
        return DatabaseWrapper(dict(settings_dict), alias=f"demo-{threading.get_ident()}")

    django_db_blocker.unblock()
    first = connection()
    with first.cursor() as cursor:
        cursor.execute("CREATE TABLE renewal (id INTEGER PRIMARY KEY, n INTEGER)")
        cursor.execute("INSERT INTO renewal (n) VALUES (0)")
    first.close()
    failures: list[BaseException] = []
    barrier = threading.Barrier(2)

    def renew() -> None:
        db = connection()
        try:
            db.ensure_connection()
            barrier.wait()
            # what transaction.atomic() begins with on SQLite
            db._start_transaction_under_autocommit()
            with db.cursor() as cursor:
                cursor.execute("SELECT n FROM renewal WHERE id = 1")
                (n,) = cursor.fetchone()
                time.sleep(0.3)
                cursor.execute("UPDATE renewal SET n = %s WHERE id = 1", [n + 1])
            db.connection.commit()
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            failures.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=renew) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not failures, failures
    check = connection()
    with check.cursor() as cursor:
        cursor.execute("SELECT n FROM renewal WHERE id = 1")
        assert cursor.fetchone() == (2,)
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone() == ("wal",)
    check.close()
    django_db_blocker.restore()


@pytest.mark.django_db
def test_binding_a_staff_account_to_the_account_it_already_has_writes_no_audit_row(
    settings: Any, django_user_model: Any
) -> None:
    import uuid

    from partners.access import Role
    from partners.models import AuditEvent
    from partners.services import staff_identity_set
    from tests.factories import make_staff

    settings.CPV_STAFF_TENANT_ID = str(uuid.uuid4())
    user = make_staff(django_user_model, "binder", Role.ADMIN)
    oid = uuid.uuid4()
    staff_identity_set(actor=None, user=user, object_id=oid)
    staff_identity_set(actor=None, user=user, object_id=oid)  # every `make demo` start does this
    assert AuditEvent.objects.filter(action="staff.microsoft_bound").count() == 1
    staff_identity_set(actor=None, user=user, object_id=uuid.uuid4())
    assert AuditEvent.objects.filter(action="staff.microsoft_bound").count() == 2


def test_the_demos_terminal_shows_warnings_and_errors_not_banners_request_lines_or_a_refused_requests_traceback() -> (
    None
):
    from cpv.demo import _Terminal

    web, worker = _Terminal(), _Terminal()
    lines = [
        (web, "Starting development server at http://127.0.0.1:8000/", False),
        (web, "2026-12-07 12:21:40,001 WARNING django.request Forbidden (Permission denied): /partners/bulk", True),
        (web, "Traceback (most recent call last):", False),
        (web, '  File "/x/django/core/handlers/exception.py", line 55, in inner', False),
        (web, "django.core.exceptions.PermissionDenied", False),
        (web, '2026-12-07 12:21:40,002 WARNING django.server "POST /partners/bulk HTTP/1.1" 403 1234', False),
        (web, '2026-12-07 12:21:41,000 INFO django.server "GET / HTTP/1.1" 200 5120', False),
        (web, "2026-12-07 12:21:42,000 ERROR django.request Internal Server Error: /partners/", True),
        (web, "Traceback (most recent call last):", True),
        (web, "ZeroDivisionError: division by zero", True),
        (worker, " -------------- demo-8000@vm v5.7.0 (collider)", False),
        (
            worker,
            "/x/celery/platforms.py:893: SecurityWarning: You're running the worker with superuser privileges",
            False,
        ),
        (worker, "absolutely not recommended!", False),
        (worker, "/x/cpv/tasks.py:12: DeprecationWarning: something the code should change", True),
        (
            worker,
            "2026-12-07 12:21:33,015 WARNING kombu.connection No hostname was supplied. Reverting to default",
            False,
        ),
        (worker, "2026-12-07 12:21:33,033 INFO celery.apps.worker demo-8000@vm ready.", False),
        (worker, "2026-12-07 12:22:00,000 WARNING tokens.tasks renewal of partner 42 is retrying", True),
        (worker, '{"time": "t", "level": "WARNING", "logger": "tokens.tasks", "message": "retrying"}', True),
        (worker, '{"time": "t", "level": "INFO", "logger": "celery.apps.worker", "message": "ready."}', False),
    ]
    assert [terminal.shown(line) for terminal, line, _ in lines] == [shown for _, _, shown in lines]


def test_a_simulator_that_keeps_its_state_keeps_its_certificate_until_it_nears_its_end(tmp_path: Path) -> None:
    import datetime as dt

    from simulator.tls import kept_tls_material, make_tls_material

    assert kept_tls_material(tmp_path).ca_pem  # nothing kept yet: a new one
    first = make_tls_material()
    (tmp_path / "ca.pem").write_bytes(first.ca_pem)
    first.server_context(tmp_path)  # writes server.pem (the certificate and the CA) and server-key.pem
    kept = kept_tls_material(tmp_path)
    assert (kept.ca_pem, kept.cert_pem, kept.key_pem) == (first.ca_pem, first.cert_pem, first.key_pem)
    # within its last days it is made anew, before a browser would refuse it
    assert kept_tls_material(tmp_path, at_least=dt.timedelta(days=40)).ca_pem != first.ca_pem


def test_the_demo_signs_in_with_certificates_and_keeps_a_secret_only_where_an_app_has_nothing_else() -> None:
    variables = {
        "CPV_CLIENT_ID": "a",
        "CPV_CLIENT_SECRET": "Sim8Q~SIMCANARY-global",
        "CPV_CLIENT_CERTIFICATE": "/var/cpv-app.pem",
        "CPV_USGOV_CLIENT_SECRET": "Sim8Q~SIMCANARY-usgov",
        "CPV_USGOV_CLIENT_CERTIFICATE": "/var/cpv-app-usgov.pem",
        "CPV_SANDBOX_CLIENT_SECRET": "Sim8Q~SIMCANARY-sandbox",
        "AZURE_CLIENT_SECRET": "Sim8Q~SIMCANARY-vault",
    }

    kept = certificates_only(variables)

    assert "CPV_CLIENT_SECRET" not in kept and "CPV_USGOV_CLIENT_SECRET" not in kept
    assert kept["CPV_CLIENT_CERTIFICATE"] == "/var/cpv-app.pem"
    assert kept["CPV_USGOV_CLIENT_CERTIFICATE"] == "/var/cpv-app-usgov.pem"
    assert kept["CPV_SANDBOX_CLIENT_SECRET"] == "Sim8Q~SIMCANARY-sandbox"
    assert kept["AZURE_CLIENT_SECRET"] == "Sim8Q~SIMCANARY-vault"

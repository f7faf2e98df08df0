"""`make demo` walked in Chromium as a new operator and a partner's admin meet it, on a phone (390 px) and on a wide
screen (1440 px): staff sign in with Microsoft, invite a partner, the partner consents, the demo's worker syncs
its customers and puts the app into each, the partner's page shows it, the partner's admin signs in to the portal
and renews the consent, another partner onboards itself, staff download the CSVs, the used invitation link says
it is done, and a bulk renewal's operations are followed from queued to done. Every page is
screenshotted (test-output/screenshots/walk-*) and checked for running off the screen's right edge."""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from cpv.env_files import env_file_values
from tests.browser.conftest import CHROMIUM, screenshot
from tests.browser.test_responsive import OVERFLOW
from tests.conftest import ROOT, free_port, project_env, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SIZES = {"phone": (390, 844), "wide": (1440, 900)}


class Demo:
    """`make demo` in a folder of its own, on a port of its own; stopped with Ctrl-C at the end."""

    def __init__(self, var_dir: Path) -> None:
        self.var_dir = var_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = var_dir.parent / "demo.log"
        env = project_env(CPV_VAR_DIR=str(var_dir), CPV_DEMO_PORT=str(self.port))
        for name in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CPV_BASE_URL", "VAULT_KEY"):
            env.pop(name, None)
        env.pop("DJANGO_SETTINGS_MODULE", None)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                ["make", "--no-print-directory", "demo"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"make demo exited early:\n{self.log_path.read_text()}")
            return "Demo staff user:" in self.log_path.read_text()

        wait_until(ready, timeout=240, what="the demo's key lines")
        self.settings = env_file_values(self.var_dir / "demo.env")
        world = requests.get(
            f"{self.settings['SIMULATOR_CONTROL_URL']}/world", timeout=10, verify=self.settings["REQUESTS_CA_BUNDLE"]
        ).json()
        self.staff_admin = next(u["upn"] for u in world["vendor"]["users"] if u["upn"].startswith("staff.admin@"))
        self.partner_admins = [p["users"][0]["upn"] for p in world["partners"]]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    running = Demo(tmp_path / "var")
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


@pytest.fixture
def demo_browser(demo: Demo, browser: Any, tmp_path: Path) -> Iterator[Any]:
    """Chromium trusting the demo's simulated Microsoft cloud, as its administrator would install its CA (a second
    browser of the suite's Playwright, whose own browser trusts the suite's simulator)."""
    home = tmp_path / "home"
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{nssdb}", "--empty-password"], check=True)
    ca = demo.var_dir / "simulator" / "ca.pem"
    subprocess.run(["certutil", "-A", "-d", f"sql:{nssdb}", "-t", "C,,", "-n", "demo", "-i", str(ca)], check=True)
    chromium = browser.browser_type.launch(
        executable_path=CHROMIUM,
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run", "--disable-quic"],
        env={**os.environ, "HOME": str(home)},
    )
    yield chromium
    chromium.close()


class Walk:
    """One person's browser at one screen size: every page it lands on is screenshotted and must fit."""

    def __init__(self, browser: Any, size: str, who: str) -> None:
        width, height = SIZES[size]
        self.context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
        self.page = self.context.new_page()
        self.page.set_default_timeout(30_000)
        self.size, self.who, self.problems = size, who, []  # type: ignore[var-annotated]

    def look(self, name: str) -> None:
        screenshot(self.page, f"walk-{self.who}-{name}-{SIZES[self.size][0]}")
        found = self.page.evaluate(OVERFLOW)
        if found["scrollWidth"] > found["width"] or found["offenders"]:
            self.problems.append(f"{name}: {found['scrollWidth']}px wide; {found['offenders']}")

    def microsoft(self, upn: str) -> None:
        """Pick the account on the simulated Microsoft sign-in page and accept."""
        self.page.wait_for_selector("#accept")
        self.look("microsoft-sign-in")
        self.page.check(f'input[name="user"][data-upn="{upn}"]')
        self.page.click("#accept")


@pytest.mark.parametrize("size", list(SIZES))
def test_the_demo_walked_by_staff_and_partners(demo: Demo, demo_browser: Any, size: str) -> None:
    staff = Walk(demo_browser, size, "staff")
    partner = Walk(demo_browser, size, "partner")
    base = demo.url

    # Staff sign in with Microsoft, on the simulated vendor's tenant.
    staff.page.goto(f"{base}/accounts/login/")
    staff.look("sign-in")
    staff.page.click("#sign-in-microsoft")
    staff.microsoft(demo.staff_admin)
    staff.page.wait_for_url(f"{base}/")
    staff.look("overview")

    # Invite a partner; the link is shown once, in a field with a copy button.
    staff.page.goto(f"{base}/consent/staff/invite")
    staff.page.fill("#id_name", "Walk Partners")
    staff.page.fill("#id_contact_email", "it@walk.example")
    staff.page.uncheck("#id_send_email")
    staff.look("invite")
    staff.page.click("#invite button[type=submit]")
    staff.page.wait_for_selector("#new-link")
    staff.look("invited")
    link = staff.page.input_value("#new-link-1")
    partner_page = staff.page.url

    # The partner's admin consents.
    partner.page.goto(link)
    partner.page.wait_for_selector("#start")
    partner.look("landing")
    partner.page.click("#start")
    partner.microsoft(demo.partner_admins[0])
    partner.page.wait_for_selector("#result")
    partner.look("result")
    assert partner.page.get_attribute("#result", "data-outcome") == "success"

    # The demo's worker syncs the customers and puts the app into each that GDAP allows (the demo's showcase
    # customers have each GDAP state): the partner's page shows every customer settled.
    def covered() -> bool:
        staff.page.goto(partner_page)
        text = staff.page.inner_text("#customers")
        have = re.search(r"(\d+) of (\d+) have the vendor's app", text)
        waiting = re.search(r"(\d+) customers? without GDAP access", text)
        if not have or not waiting:
            return False
        consented, total, held = int(have[1]), int(have[2]), int(waiting[1])
        seen["customers"] = total
        return consented > 8 and consented + held == total

    seen: dict[str, int] = {}

    wait_until(covered, timeout=180, what="ApplicationConsent in every customer GDAP allows", interval=2)
    staff.look("partner")

    # The partner's admin signs in to the portal and renews the consent.
    partner.page.goto(f"{base}/portal/")
    partner.look("portal-sign-in")
    partner.page.click("#portal-sign-in")
    partner.microsoft(demo.partner_admins[0])
    partner.page.wait_for_selector("#consent-status")
    partner.look("portal")
    partner.page.click("#renew-consent")
    partner.page.wait_for_selector("#start")
    partner.page.click("#start")
    partner.microsoft(demo.partner_admins[0])
    partner.page.wait_for_selector("#result")
    partner.look("reconsent-result")
    assert partner.page.get_attribute("#result", "data-outcome") == "success"

    # Another partner onboards itself.
    newcomer = Walk(demo_browser, size, "newcomer")
    newcomer.page.goto(f"{base}/onboard/")
    newcomer.page.fill("#id_company_name", "Self-Serve Cloud")
    newcomer.page.fill("#id_contact_email", "it@selfserve.example")
    newcomer.look("onboard")
    newcomer.page.click("#continue")
    newcomer.page.wait_for_selector("#start")
    newcomer.page.click("#start")
    newcomer.microsoft(demo.partner_admins[1])
    newcomer.page.wait_for_selector("#result")
    newcomer.look("result")
    assert newcomer.page.get_attribute("#result", "data-outcome") == "success"

    # Staff download the partner list, the partner's customers and the audit log.
    staff.page.goto(f"{base}/partners/")
    staff.look("partners")
    with staff.page.expect_download() as download:
        staff.page.click("#partners-csv")
    names = [row[0] for row in csv.reader(io.StringIO(download.value.path().read_text()))]
    staff.page.goto(partner_page)
    with staff.page.expect_download() as download:
        staff.page.click("#customers-csv")
    customers = list(csv.reader(io.StringIO(download.value.path().read_text())))
    staff.page.goto(f"{base}/audit/")
    staff.look("audit")
    with staff.page.expect_download() as download:
        staff.page.click("#audit-csv")
    audit = download.value.path().read_text()

    # The invitation link, used: it says the consent is already done, with the way to the portal.
    partner.page.goto(link)
    partner.page.wait_for_selector("#result")
    partner.look("used-link")
    assert "already done" in partner.page.inner_text("#result")

    # A bulk action on both partners: its message says queued and links to its operations, which go from queued to
    # done with counts; each has its own page, also linked from the partner's Operations panel.
    staff.page.goto(f"{base}/partners/")
    for name in ("Walk Partners", "Self-Serve Cloud"):
        staff.page.check(f'input[name="partners"][aria-label="Select {name}"]')
    staff.page.select_option("#bulk-action-list", "renew")
    staff.page.click("#bulk-submit")
    staff.page.wait_for_selector("#confirm-action")
    staff.look("bulk-confirm")
    staff.page.click("#confirm-action")
    staff.page.wait_for_selector("#bulk-progress")
    assert "Renew tokens now: queued for 2 partners." in staff.page.inner_text(".messages")
    staff.look("bulk-queued")
    staff.page.click("#bulk-progress")
    staff.page.wait_for_selector("#bulk-counts")
    staff.look("bulk-operations")

    def renewed() -> bool:
        staff.page.reload()
        return staff.page.inner_text("#bulk-done").startswith("2")

    wait_until(renewed, timeout=120, what="the bulk renewal to be done for both partners", interval=2)
    staff.look("bulk-operations-done")
    assert staff.page.inner_text("#bulk-queued").startswith("0")
    staff.page.click("#bulk-operations .operation a.when >> nth=0")
    staff.page.wait_for_selector("#operation-page")
    staff.look("operation")
    assert "Renewed." in staff.page.inner_text("#operation-page")
    staff.page.goto(partner_page)
    staff.page.click("#operations .operation a >> nth=0")
    staff.page.wait_for_selector("#operation-bulk")
    staff.look("operation-from-panel")

    assert {"Walk Partners", "Self-Serve Cloud"} <= set(names)
    assert len(customers) == 1 + seen["customers"]
    assert "Invited the partner" in audit and "Walk Partners" in audit
    assert staff.problems + partner.problems + newcomer.problems == []

"""A real browser: Debian's Chromium driven by Playwright, trusting the simulator's CA through its own NSS
database (never by turning certificate checks off), against the product on a live server."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.simulated import sim_app, sim_cloud
from tokens.vault import reset_vault

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = ROOT / "test-output" / "screenshots"
# Playwright's sync API runs an event loop in this thread; the test's own ORM calls stay synchronous.
# Child processes never inherit this (tests.conftest.project_env drops it).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="session")
def browser_home(simulator, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    """A HOME whose NSS database trusts the simulator's CA, as an administrator would install it."""
    for tool in (CHROMIUM, shutil.which("certutil")):
        if not tool or not Path(tool).exists():
            pytest.fail(
                "the browser tests need Debian's chromium and libnss3-tools: `apt-get install chromium libnss3-tools`"
            )
    home = tmp_path_factory.mktemp("browser-home")
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{nssdb}", "--empty-password"], check=True)
    subprocess.run(
        [
            "certutil",
            "-A",
            "-d",
            f"sql:{nssdb}",
            "-t",
            "C,,",
            "-n",
            "cpv-simulator",
            "-i",
            str(simulator.state_dir / "ca.pem"),
        ],
        check=True,
    )
    return home


@pytest.fixture(scope="session")
def browser(browser_home: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    chromium = playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
        ],
        env={**os.environ, "HOME": str(browser_home)},
    )
    yield chromium
    chromium.close()
    playwright.stop()


@pytest.fixture
def page(browser) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


@pytest.fixture
def live_cpv(sim, live_server, settings) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """The product on a live server, pointed at the simulator, with the redirect URI registered there."""
    settings.CPV_CLOUD_CONFIG = sim_cloud(sim)
    settings.CPV_APP = sim_app(sim, certificate=True)
    settings.CPV_BASE_URL = live_server.url
    settings.VAULT_BACKEND = "local"
    settings.VAULT_KEYS = [os.urandom(32)]
    # The product's three callbacks, as a vendor registers them (the settings page's self-check reads them).
    callbacks = ("/consent/callback", "/portal/callback", "/accounts/microsoft/callback/")
    sim.world.add_redirect_uris([f"{live_server.url}{path}" for path in callbacks])
    reset_vault()
    yield live_server
    reset_vault()


def screenshot(page: Any, name: str) -> Path:
    """Write a PNG of the page where a person can look at it (test-output/ is ignored by git)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path

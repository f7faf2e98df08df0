"""The staff pages' own scripts in Chromium: the settings page fills its live check in after loading, a new consent
link is copied with its button, and the CSV downloads arrive as files. Screenshots go to test-output/screenshots/."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from partners.access import Role
from tests.browser.conftest import screenshot
from tests.factories import PASSWORD, active_partner_with_data, make_staff

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def sign_in(page: Any, url: str, username: str) -> None:
    page.goto(f"{url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("#sign-in")
    page.wait_for_url(f"{url}/")


def test_the_settings_page_fills_in_its_live_check_after_loading(page, live_cpv, django_user_model) -> None:  # type: ignore[no-untyped-def]
    make_staff(django_user_model, "ada-admin", Role.ADMIN)
    sign_in(page, live_cpv.url, "ada-admin")

    page.goto(f"{live_cpv.url}/settings/")
    page.wait_for_selector("#check-rows tr.ok-row >> nth=3")

    # the authority, the vault, the broker and the app registration's self-check
    assert page.locator("#check-rows tr").count() == 4
    assert page.inner_text("#checks-state") == "Everything answered."
    assert "Workers and schedule" in page.inner_text("main")
    screenshot(page, "dashboard-settings")


def test_an_operator_copies_a_new_consent_link_and_downloads_the_csvs(page, live_cpv, django_user_model) -> None:  # type: ignore[no-untyped-def]
    active_partner_with_data("Contoso Partners", customers=3, failed=1)
    make_staff(django_user_model, "otto-operator", Role.OPERATOR)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_cpv.url)
    sign_in(page, live_cpv.url, "otto-operator")

    page.goto(f"{live_cpv.url}/consent/staff/invite")
    page.fill("#id_name", "Copy Co")
    page.fill("#id_contact_email", "contact@copy.example")
    page.uncheck("#id_send_email")
    page.click("#invite button[type=submit]")
    page.wait_for_selector("#new-link")

    link = page.input_value("#new-link-1")
    assert "/consent/i/" in link
    # The page's script shortens the message once the page has loaded (the link is in the field below it).
    page.wait_for_selector(".messages :text('below, with a copy button')")
    page.click("#new-link button.copy-button")
    page.wait_for_selector("#new-link button.copy-button:text('Copied')")
    assert page.evaluate("navigator.clipboard.readText()") == link
    screenshot(page, "dashboard-new-consent-link")

    page.goto(f"{live_cpv.url}/partners/?q=contoso")
    with page.expect_download() as download:
        page.click("#partners-csv")
    rows = list(csv.reader(io.StringIO(download.value.path().read_text())))
    assert [r[0] for r in rows] == ["Name", "Contoso Partners"]

    page.goto(f"{live_cpv.url}/audit/?action=partner.invited")
    with page.expect_download() as download:
        page.click("#audit-csv")
    rows = list(csv.reader(io.StringIO(download.value.path().read_text())))
    assert [(r[1], r[2], r[3]) for r in rows[1:]] == [("otto-operator", "Invited the partner", "Copy Co")]

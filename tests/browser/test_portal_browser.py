"""The partner portal in Chromium: a partner's admin signs in with Microsoft on the simulator's page and sees
their organisation; screenshots go to test-output/screenshots/."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.browser.conftest import screenshot
from tests.factories import active_partner_with_data
from tests.simulated import partner_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_partner_admin_signs_in_to_the_portal_through_microsoft(page, sim, live_cpv) -> None:  # type: ignore[no-untyped-def]
    sim.world.add_redirect_uris([f"{live_cpv.url}/portal/callback"])
    world = sim.world.partners[0]
    active_partner_with_data("Contoso Partners", customers=10, failed=2, tenant=uuid.UUID(str(world.tenant_id)))
    active_partner_with_data("Someone Else", customers=3)
    admin = partner_user(sim, global_admin=True, admin_agent=True, mfa_registered=True)

    page.goto(f"{live_cpv.url}/portal/")
    screenshot(page, "portal-sign-in")
    page.click("#portal-sign-in")
    page.wait_for_selector("#accept")
    assert page.url.startswith(sim.authority_host)
    assert "scope=openid+profile&" in page.url
    page.check(f'input[name="user"][value="{admin.oid}"]')
    screenshot(page, "portal-microsoft-sign-in")
    page.click("#accept")
    page.wait_for_url(re.compile(re.escape(live_cpv.url) + r"/portal/$"))
    page.wait_for_selector("#consent-status")

    assert page.inner_text("#org-name") == "Contoso Partners"
    assert "Your consent works" in page.inner_text("#consent-status")
    assert "8 of 10 customers" in page.inner_text("#portal-customers")
    assert "Someone Else" not in page.content()
    screenshot(page, "portal-status")

    page.click("#renew-consent")
    page.wait_for_selector("#start")
    screenshot(page, "portal-renew-landing")
    assert "/consent/i/" in page.url


def test_a_user_from_a_tenant_that_is_no_partner_sees_a_clear_page(page, sim, live_cpv) -> None:  # type: ignore[no-untyped-def]
    sim.world.add_redirect_uris([f"{live_cpv.url}/portal/callback"])
    user = partner_user(sim, partner=1, global_admin=True)

    page.goto(f"{live_cpv.url}/portal/")
    page.click("#portal-sign-in")
    page.wait_for_selector("#accept")
    page.check(f'input[name="user"][value="{user.oid}"]')
    page.click("#accept")
    page.wait_for_selector("#not-partner")

    assert "not one of our partners yet" in page.inner_text("#not-partner")
    screenshot(page, "portal-not-a-partner")

"""Ways out in Chromium: the authenticator's QR code is an image, `/admin/` as an operator is one page, a
deactivated partner comes back and a locked staff account is unlocked (both audited), and each dead-end page of
the consent flow and the staff sign-in offers a next step that works."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from consent.models import ConsentFlow
from consent.services import partner_invite
from partners.access import Role
from partners.invitations import links_invalidate, partner_reconsent_link
from partners.models import AuditEvent, SentEmail
from partners.services import partner_deactivate
from tests.browser.conftest import screenshot
from tests.factories import PASSWORD, active_partner_with_data, make_staff

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def password_sign_in(page: Any, url: str, username: str) -> None:
    page.goto(f"{url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("#sign-in")


def test_the_authenticator_qr_code_is_an_image_the_browser_draws(page, live_cpv, django_user_model, settings) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_STAFF_TOTP = "required"
    make_staff(django_user_model, "ada-admin", Role.ADMIN)

    password_sign_in(page, live_cpv.url, "ada-admin")
    page.wait_for_selector("#totp-qr")
    page.wait_for_function("document.querySelector('#totp-qr').complete")
    screenshot(page, "authenticator-qr")

    assert page.eval_on_selector("#totp-qr", "img => img.naturalWidth") > 0


def test_the_admin_as_an_operator_is_one_page_that_says_why_not_a_loop(page, live_cpv, django_user_model) -> None:  # type: ignore[no-untyped-def]
    make_staff(django_user_model, "otto-operator", Role.OPERATOR)
    password_sign_in(page, live_cpv.url, "otto-operator")
    page.wait_for_selector("#by-status")
    redirects: list[str] = []
    page.on("response", lambda r: redirects.append(r.url) if 300 <= r.status < 400 else None)

    response = page.goto(f"{live_cpv.url}/admin/")
    screenshot(page, "admin-refused-operator")

    assert response.status == 403 and not redirects and page.url == f"{live_cpv.url}/admin/"
    assert "a staff operator" in page.inner_text("#admin-refused")
    page.click("#to-dashboard")
    page.wait_for_selector("#by-status")


def test_an_operator_reactivates_a_deactivated_partner_and_it_is_audited(page, live_cpv, django_user_model) -> None:  # type: ignore[no-untyped-def]
    operator = make_staff(django_user_model, "otto-operator", Role.OPERATOR)
    partner = active_partner_with_data("Contoso Partners", customers=3, failed=0)
    partner_deactivate(actor=None, partner=partner, reason="paused by mistake")
    password_sign_in(page, live_cpv.url, "otto-operator")
    page.wait_for_selector("#by-status")

    page.goto(f"{live_cpv.url}/partners/{partner.code}/")
    page.click("#action-reactivate")
    page.wait_for_selector("#confirm")
    page.click("#confirm-action")
    page.wait_for_selector(".messages")
    screenshot(page, "partner-reactivated")

    assert "Contoso Partners is active again" in page.inner_text(".messages")
    assert page.inner_text("#partner-status") == "Active"
    assert AuditEvent.objects.get(action="partner.reactivated").actor == operator


def test_an_admin_unlocks_a_locked_out_account_from_the_staff_page(browser, live_cpv, django_user_model) -> None:  # type: ignore[no-untyped-def]
    admin = make_staff(django_user_model, "ada-admin", Role.ADMIN)
    make_staff(django_user_model, "vera-viewer", Role.VIEWER)
    viewer_page = browser.new_context().new_page()
    for _ in range(5):
        viewer_page.goto(f"{live_cpv.url}/accounts/login/")
        viewer_page.fill("#id_username", "vera-viewer")
        viewer_page.fill("#id_password", "wrong")
        viewer_page.click("#sign-in")
    password_sign_in(viewer_page, live_cpv.url, "vera-viewer")
    assert "Too many failed sign-ins" in viewer_page.content()
    admin_page = browser.new_context().new_page()

    password_sign_in(admin_page, live_cpv.url, "ada-admin")
    admin_page.wait_for_selector("#by-status")
    admin_page.goto(f"{live_cpv.url}/staff/")
    assert "locked out" in admin_page.inner_text("#staff-vera-viewer")
    screenshot(admin_page, "staff-locked-out")
    admin_page.click("#unlock-vera-viewer")
    admin_page.wait_for_selector(".messages")

    assert "vera-viewer can sign in again" in admin_page.inner_text(".messages")
    assert AuditEvent.objects.get(action="staff.unlocked").actor == admin
    password_sign_in(viewer_page, live_cpv.url, "vera-viewer")
    viewer_page.wait_for_selector("#by-status")
    viewer_page.context.close()
    admin_page.context.close()


def test_a_replaced_link_in_the_browser_asks_for_a_fresh_one_by_email(page, live_cpv) -> None:  # type: ignore[no-untyped-def]
    invitation = partner_invite(actor=None, name="Contoso", contact_email="admin@contoso.example", send_email=False)
    partner_reconsent_link(actor=None, partner=invitation.partner)
    old = invitation.url.replace(settings.CPV_BASE_URL, live_cpv.url)

    page.goto(old)
    assert "replaced by a newer one" in page.inner_text("#result")
    screenshot(page, "consent-link-replaced")
    page.click("#fresh-link")
    page.wait_for_selector("#sent-to")

    assert "A new link is on its way" in page.inner_text("#result")
    assert page.inner_text("#sent-to") == "a•••@contoso.example"
    assert SentEmail.objects.filter(partner=invitation.partner, to="admin@contoso.example").count() == 1


def test_a_used_link_in_the_browser_says_done_and_leads_to_the_portal(page, live_cpv) -> None:  # type: ignore[no-untyped-def]
    invitation = partner_invite(actor=None, name="Contoso", contact_email="admin@contoso.example", send_email=False)
    partner = invitation.partner
    ConsentFlow.objects.create(
        partner=partner,
        expires_at=timezone.now(),
        status=ConsentFlow.Status.VAULTED,
        link_generation=partner.link_generation,
    )
    links_invalidate(partner=partner)  # what a successful consent does to the link it used

    page.goto(invitation.url.replace(settings.CPV_BASE_URL, live_cpv.url))
    assert "This consent is already done" in page.inner_text("#result")
    screenshot(page, "consent-link-used")
    page.click("#to-portal")
    page.wait_for_url(f"{live_cpv.url}/portal/")

    assert page.locator("#portal-sign-in").count() == 1

"""Partners consenting in a real browser: Chromium, the product on a live server, the simulator's sign-in."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from consent.models import ConsentFlow
from consent.services import partner_invite
from cpv.branding import Vendor
from partners.models import Partner
from tests.browser.conftest import screenshot
from tests.simulated import partner_user
from tokens.models import PartnerToken, VaultSecretVersion
from tokens.vault import get_vault

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def sign_in_on_microsofts_page(page: Any, sim: Any, user: Any, *, name: str, action: str = "accept") -> None:
    page.wait_for_selector("#accept")
    assert page.url.startswith(sim.authority_host)
    page.check(f'input[name="user"][value="{user.oid}"]')
    screenshot(page, f"{name}-microsoft-sign-in")
    page.click(f"#{action}")


def wait_for_result(page: Any, live_cpv: Any) -> str:
    page.wait_for_url(re.compile(re.escape(live_cpv.url) + r"/consent/result/"))
    page.wait_for_selector("#result")
    return str(page.get_attribute("#result", "data-outcome"))


def consent_in_browser(
    page: Any, sim: Any, live_cpv: Any, url: str, user: Any, *, name: str, action: str = "accept"
) -> str:
    page.goto(url)
    page.wait_for_selector("#start")
    screenshot(page, f"{name}-landing")
    page.click("#start")
    sign_in_on_microsofts_page(page, sim, user, name=name, action=action)
    outcome = wait_for_result(page, live_cpv)
    screenshot(page, f"{name}-result")
    return outcome


def test_an_invited_partner_consents_and_becomes_active(page, sim, live_cpv) -> None:  # type: ignore[no-untyped-def]
    invitation = partner_invite(
        actor=None, name="Contoso Partners", contact_email="a@contoso.example", send_email=False
    )
    admin = partner_user(sim, global_admin=True, admin_agent=True, mfa_registered=True)

    outcome = consent_in_browser(page, sim, live_cpv, invitation.url, admin, name="invited-success")

    assert outcome == "success"
    assert "Consent recorded" in page.inner_text("#result")
    partner = Partner.objects.get(pk=invitation.partner.pk)
    assert partner.status == Partner.Status.ACTIVE
    pointer = PartnerToken.objects.get(partner=partner)
    assert get_vault().read(name=pointer.secret_name).version == pointer.current_version
    assert [e["status"] for e in sim.control.log(service="partner_center") if "profiles/organization" in e["path"]] == [
        200
    ]
    # The result page loads nothing from another site.
    assert all(request.startswith(live_cpv.url) for request in _resources(page))


def test_the_consent_page_and_microsofts_sign_in_name_the_same_vendor(page, sim, live_cpv, settings) -> None:  # type: ignore[no-untyped-def]
    # Configured as the README asks: the vendor's name is its app registration's display name.
    settings.CPV_VENDOR = Vendor(name=sim.world.cpv_app.display_name, support_email="partners@contoso.example")
    invitation = partner_invite(actor=None, name="Tailspin Partners", contact_email="a@t.example", send_email=False)

    page.goto(invitation.url)
    page.wait_for_selector("#start")
    on_our_page = page.inner_text("#landing-title")
    page.click("#start")
    page.wait_for_selector("#accept")
    on_microsofts_page = page.inner_text("#app-name")

    assert on_our_page == f"{on_microsofts_page} asks to work with Tailspin Partners"


def test_a_self_onboarding_partner_consents_too(page, sim, live_cpv) -> None:  # type: ignore[no-untyped-def]
    admin = partner_user(sim, partner=1, global_admin=True, admin_agent=True, mfa_registered=True)
    page.goto(f"{live_cpv.url}/onboard/")
    page.fill("#id_company_name", "Fabrikam Cloud")
    page.fill("#id_contact_email", "it@fabrikam.example")
    page.select_option("#id_cloud", "global")
    screenshot(page, "self-onboarding-form")
    page.click("#continue")
    page.wait_for_selector("#start")
    screenshot(page, "self-onboarding-landing")
    page.click("#start")
    sign_in_on_microsofts_page(page, sim, admin, name="self-onboarding")

    assert wait_for_result(page, live_cpv) == "success"
    partner = Partner.objects.get(name="Fabrikam Cloud")
    assert partner.status == Partner.Status.ACTIVE
    assert str(partner.tenant_id) == str(sim.world.partners[1].tenant_id)
    assert ConsentFlow.objects.get(partner=partner).origin == ConsentFlow.Origin.SELF_ONBOARDING


def test_cancel_on_the_sign_in_page_gives_the_declined_page(page, sim, live_cpv) -> None:  # type: ignore[no-untyped-def]
    invitation = partner_invite(actor=None, name="Declining", contact_email="a@d.example", send_email=False)
    admin = partner_user(sim, global_admin=True, admin_agent=True, mfa_registered=True)

    outcome = consent_in_browser(page, sim, live_cpv, invitation.url, admin, name="declined", action="cancel")

    assert outcome == "declined"
    assert page.is_visible("#retry")
    assert not VaultSecretVersion.objects.exists()
    # "Try again" posts from the result page (Django's CSRF check reads the Origin a browser sends with it) and
    # leads back to Microsoft's sign-in with the same link.
    page.click("#retry")
    page.wait_for_selector("#accept")
    assert page.url.startswith(sim.authority_host)


@pytest.mark.parametrize(
    ("flags", "expected", "name"),
    [
        ({"global_admin": True, "admin_agent": False, "mfa_registered": True}, "not_admin_agent", "not-admin-agent"),
        ({"global_admin": True, "admin_agent": True, "mfa_registered": False}, "no_mfa", "no-mfa"),
    ],
)
def test_a_user_who_cannot_consent_gets_their_own_page_and_leaves_no_token(
    page, sim, live_cpv, flags, expected, name
) -> None:  # type: ignore[no-untyped-def]
    invitation = partner_invite(actor=None, name=f"Partner {name}", contact_email="a@p.example", send_email=False)

    outcome = consent_in_browser(page, sim, live_cpv, invitation.url, partner_user(sim, **flags), name=name)

    assert outcome == expected
    assert page.is_visible("#retry")
    assert not VaultSecretVersion.objects.exists()
    assert not PartnerToken.objects.exclude(current_version="").exists()
    assert Partner.objects.get(pk=invitation.partner.pk).status == Partner.Status.INVITED


def test_an_account_that_is_no_administrator_is_stopped_on_microsofts_page(page, sim, live_cpv) -> None:  # type: ignore[no-untyped-def]
    """Two of the app's permissions need an administrator's consent: Microsoft stops anyone else at its own page
    (AADSTS90094), and nothing comes back to the control panel."""
    invitation = partner_invite(actor=None, name="Partner no-admin", contact_email="a@p.example", send_email=False)
    page.goto(invitation.url)
    page.wait_for_selector("#start")
    page.click("#start")

    sign_in_on_microsofts_page(page, sim, partner_user(sim, global_admin=False, admin_agent=True), name="no-admin")

    page.wait_for_load_state()
    screenshot(page, "no-admin-microsoft-refusal")
    assert page.url.startswith(sim.authority_host) and "AADSTS90094" in page.content()
    assert not PartnerToken.objects.exists()
    assert Partner.objects.get(pk=invitation.partner.pk).status == Partner.Status.INVITED


def test_no_issued_secret_appears_anywhere_after_a_browser_consent(
    page, sim, live_cpv, caplog, django_user_model
) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level("DEBUG")
    invitation = partner_invite(actor=None, name="Canary Partners", contact_email="a@canary.example", send_email=False)
    admin = partner_user(sim, global_admin=True, admin_agent=True, mfa_registered=True)
    assert consent_in_browser(page, sim, live_cpv, invitation.url, admin, name="canary") == "success"
    pages = [page.content()]
    staff = Client()
    staff.force_login(django_user_model.objects.create_superuser("root", "r@example.com", "x" * 20))
    for path in (
        "/",
        f"/partners/{invitation.partner.code}/",
        "/admin/partners/partner/",
        "/admin/partners/auditevent/",
        "/admin/",
        f"/admin/partners/partner/{invitation.partner.pk}/change/",
    ):
        response = staff.get(path)
        assert response.status_code == 200, path
        pages.append(response.content.decode())

    rows = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            if table == VaultSecretVersion._meta.db_table:
                continue  # the embedded vault's ciphertext, the one place a token may be
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - names from introspection
            rows.extend(repr(row) for row in cursor.fetchall())
    issued = sim.control.issued_secrets()
    assert issued, "the simulator issued nothing?"
    haystack = "\n".join(rows + pages) + caplog.text
    assert [s[:12] for s in issued if s and s in haystack] == []


def _resources(page: Any) -> list[str]:
    return list(page.evaluate("performance.getEntriesByType('resource').map(e => e.name)"))

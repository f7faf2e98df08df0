"""Every staff page and every partner-facing page, on a phone (390 x 844) and a wide screen (1440 x 900), and at
768 and 1024 px between them, in Chromium: nothing runs off the right edge of the screen (a wide table scrolls
inside its own box, on purpose), the staff navigation folds into a menu on the phone, filters stay wide enough
to read, and no table squeezes a column of words down to a few letters. A full-page screenshot of each lands in
test-output/screenshots/<page>-<width>.png."""

from __future__ import annotations

import re
from typing import Any

import pytest

from consent.services import partner_invite
from cpv.config import load_config
from customers import tasks as customer_tasks
from customers.services import customers_sync
from events.services import subscription_create
from partners.access import Role
from partners.invitations import partner_reconsent_link
from partners.models import Partner
from tests.browser.conftest import screenshot
from tests.conftest import ROOT
from tests.factories import PASSWORD, active_partner_with_data, make_staff
from tests.simulated import partner_user
from tokens import tasks as token_tasks

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# A phone and a wide screen, and between them a tablet (the menu folded, tables scrolling) and a small laptop
# (the full navigation, tables at their tightest).
SIZES = [(390, 844), (768, 1024), (1024, 768), (1440, 900)]

# What runs off the right edge of the viewport: every element whose box ends past it, unless an ancestor scrolls
# horizontally on purpose (overflow-x: auto or scroll), where the overflow is the point.
OVERFLOW = """() => {
  const width = window.innerWidth;
  const scrolls = (element) => {
    for (let p = element.parentElement; p && p !== document.body; p = p.parentElement) {
      const x = getComputedStyle(p).overflowX;
      if (x === "auto" || x === "scroll") return true;
    }
    return false;
  };
  const name = (e) => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") +
    (typeof e.className === "string" && e.className ? "." + e.className.trim().split(/\\s+/).join(".") : "");
  const offenders = [];
  for (const element of document.body.querySelectorAll("*")) {
    const box = element.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) continue;
    if (box.right > width + 0.5 && !scrolls(element)) {
      offenders.push(name(element) + " ends at " + Math.round(box.right) + "px");
    }
  }
  return {scrollWidth: document.documentElement.scrollWidth, width: width, offenders: offenders.slice(0, 8)};
}"""

# Table cells holding words that the layout squeezed to a sliver (a column a few letters wide, a page metres tall).
SQUEEZED = """() => {
  const found = [];
  for (const cell of document.querySelectorAll("td, th")) {
    const text = cell.innerText.trim();
    const box = cell.getBoundingClientRect();
    if (text.length > 8 && box.width > 0 && box.width < 64) {
      found.push(text.slice(0, 30) + " in " + Math.round(box.width) + "px");
    }
  }
  return found.slice(0, 8);
}"""

# Form fields narrower than this on a phone are unreadable ("Ar" for "Active").
NARROW_FIELDS = """(minimum) => Array
  .from(document.querySelectorAll(".filters input:not([type=hidden]), .filters select"))
  .filter((field) => field.getBoundingClientRect().width < minimum)
  .map((field) => (field.name || field.id) + " is " + Math.round(field.getBoundingClientRect().width) + "px wide")"""


def look(page: Any, url: str, name: str, ready: str, problems: list[str]) -> None:
    """Open `url` at each size, save its screenshot, and note what does not fit."""
    for width, height in SIZES:
        page.set_viewport_size({"width": width, "height": height})
        page.goto(url)
        page.wait_for_selector(ready)
        screenshot(page, f"{name}-{width}")
        found = page.evaluate(OVERFLOW)
        if found["scrollWidth"] > found["width"] or found["offenders"]:
            problems.append(f"{name} at {width}px: the page is {found['scrollWidth']}px wide; {found['offenders']}")
        if squeezed := page.evaluate(SQUEEZED):
            problems.append(f"{name} at {width}px: squeezed cells {squeezed}")
        if narrow := page.evaluate(NARROW_FIELDS, 160 if width < 600 else 90):
            problems.append(f"{name} at {width}px: filters too narrow {narrow}")


@pytest.fixture
def world(sim, live_cpv, django_user_model, monkeypatch, settings) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """A vendor with a long name and a logo; partners in every state, one with consent attempts (a failed one,
    then a success), its customers from Partner Center and an audit trail; another with customers failing
    ApplicationConsent; an admin."""
    settings.CPV_VENDOR = load_config(
        {
            "CPV_VENDOR_NAME": "Contoso Cloud Solutions International",
            "CPV_VENDOR_SUPPORT_EMAIL": "partner-support@contoso-cloud-solutions.example",
            "CPV_VENDOR_LOGO": str(ROOT / "static" / "favicon.svg"),
            "CPV_VAR_DIR": str(settings.CPV_VAR_DIR),
        },
        base_dir=ROOT,
    ).vendor
    sent: list[dict[str, Any]] = []
    for task in (
        token_tasks.token_renew,
        customer_tasks.customers_sync,
        customer_tasks.application_consent_batch,
        customer_tasks.application_consent_next,
    ):
        monkeypatch.setattr(task, "apply_async", lambda *a, **kw: sent.append(kw["kwargs"]))
    sim.world.add_redirect_uris([f"{live_cpv.url}/portal/callback"])
    failing = active_partner_with_data("Northwind Information Technology Services", customers=25, failed=9)
    failing.status = Partner.Status.RECONSENT_NEEDED
    failing.status_reason = "The refresh token expired (AADSTS700082): the partner must consent again."
    failing.save()
    active_partner_with_data("Fabrikam Cloud", customers=12, failed=0, age_days=20)
    for i in range(4):
        Partner.objects.create(name=f"Invited Partner With A Long Name {i}", contact_email=f"i{i}@example.com")
    invitation = partner_invite(
        actor=None, name="Contoso Partners", contact_email="admin@contoso.example", send_email=False
    )
    make_staff(django_user_model, "ada-admin", Role.ADMIN)
    return {"url": live_cpv.url, "invitation": invitation, "failing": failing, "sent": sent}


def sign_in(page: Any, url: str) -> None:
    """The admin signs in to the staff pages; the overview opens."""
    page.goto(f"{url}/accounts/login/")
    page.fill("#id_username", "ada-admin")
    page.fill("#id_password", PASSWORD)
    page.click("#sign-in")
    page.wait_for_selector("#by-status")


def consent(page: Any, sim: Any, url: str, user: Any) -> str:
    """A partner's admin goes from the consent page through Microsoft's sign-in; returns the result page's URL."""
    page.goto(url)
    page.click("#start")
    page.wait_for_selector("#accept")
    page.check(f'input[name="user"][value="{user.oid}"]')
    page.click("#accept")
    page.wait_for_selector("#result")
    return str(page.url)


def test_every_page_fits_a_phone_and_a_wide_screen(browser, sim, world) -> None:  # type: ignore[no-untyped-def]
    url = world["url"]
    problems: list[str] = []
    partner_page = browser.new_context()
    page = partner_page.new_page()
    page.set_default_timeout(20_000)

    # The partner-facing pages: the consent page, a failed attempt's result, a success's, self-onboarding, the
    # portal's sign-in and, signed in, the partner's own status.
    contoso = world["invitation"].partner
    look(page, world["invitation"].url, "partner-landing", "#start", problems)
    # The vendor's logo is shown under the Content-Security-Policy (a data: image, from no other site).
    assert page.evaluate("document.querySelector('.vendor-logo').naturalWidth") > 0
    failed = consent(page, sim, world["invitation"].url, partner_user(sim, global_admin=True, admin_agent=False))
    look(page, failed, "partner-result-failed", "#result", problems)
    link = partner_reconsent_link(actor=None, partner=Partner.objects.get(pk=contoso.pk))
    admin = partner_user(sim, global_admin=True, admin_agent=True, mfa_registered=True)
    succeeded = consent(page, sim, link, admin)
    assert Partner.objects.get(pk=contoso.pk).status == Partner.Status.ACTIVE
    look(page, succeeded, "partner-result", "#result", problems)
    customers_sync(partner_id=contoso.pk)
    look(page, f"{url}/onboard/", "partner-onboard", "#onboard", problems)
    look(page, f"{url}/portal/", "partner-portal-sign-in", "#portal-sign-in", problems)
    page.click("#portal-sign-in")
    page.wait_for_selector("#accept")
    page.check(f'input[name="user"][value="{admin.oid}"]')
    page.click("#accept")
    page.wait_for_url(re.compile(re.escape(url) + r"/portal/$"))
    look(page, f"{url}/portal/", "partner-portal", "#consent-status", problems)
    look(page, f"{url}/consent/nothing-here", "partner-not-found", "#not-found", problems)
    partner_page.close()

    # The staff pages, as an admin (who sees them all).
    staff = browser.new_context()
    page = staff.new_page()
    page.set_default_timeout(20_000)
    look(page, f"{url}/accounts/login/", "staff-sign-in", "#sign-in", problems)
    sign_in(page, url)
    look(page, f"{url}/", "staff-overview", "#by-status", problems)
    look(page, f"{url}/partners/", "staff-partner-list", "#partners", problems)
    look(page, f"{url}/partners/?q=o&status=active", "staff-partner-list-filtered", "#partners", problems)
    look(page, f"{url}/partners/{contoso.code}/", "staff-partner", "#flows .flow", problems)
    look(page, f"{url}/partners/{world['failing'].code}/", "staff-partner-failing", "#customers", problems)
    look(page, f"{url}/partners/{contoso.code}/do/sync", "staff-confirm", "#confirm", problems)
    look(page, f"{url}/audit/", "staff-audit", "#audit-events", problems)
    look(page, f"{url}/staff/", "staff-staff", "#staff", problems)
    look(page, f"{url}/settings/", "staff-settings", "main h1", problems)
    hook, _ = subscription_create(
        actor=None, name="Billing", url="https://billing.example/hooks", event_types=["partner.activated"]
    )
    look(page, f"{url}/webhooks/", "staff-webhooks", "#new-webhook", problems)
    look(page, f"{url}/webhooks/{hook.code}/", "staff-webhook", "#deliveries", problems)
    look(page, f"{url}/consent/staff/invite", "staff-invite", "#invite", problems)
    staff.close()

    assert not problems, "\n".join(problems)


def test_the_staff_navigation_folds_into_a_menu_on_a_phone(browser, world) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.set_default_timeout(20_000)
    sign_in(page, world["url"])

    assert not page.is_visible("#nav-partners")
    page.click("label[for=nav-toggle]")
    assert page.is_visible("#nav-partners") and page.is_visible("#nav-settings")
    screenshot(page, "staff-menu-open-390")
    page.click("#nav-partners")
    page.wait_for_selector("#partners")
    assert not page.is_visible("#nav-audit")

    page.set_viewport_size({"width": 1440, "height": 900})
    assert page.is_visible("#nav-audit") and not page.is_visible("label[for=nav-toggle]")
    context.close()


def test_on_a_phone_a_wide_table_scrolls_in_its_box_and_a_list_of_records_stacks(browser, world) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.set_default_timeout(20_000)
    sign_in(page, world["url"])
    page.goto(f"{world['url']}/partners/")
    page.wait_for_selector("#partners")

    table = page.evaluate(
        """() => { const t = document.querySelector("#partners");
        return {client: t.clientWidth, scroll: t.scrollWidth, overflow: getComputedStyle(t).overflowX}; }"""
    )
    assert table["overflow"] == "auto"
    assert table["scroll"] > table["client"]  # its columns are all there, reached by scrolling the table alone
    assert page.evaluate("document.documentElement.scrollWidth") <= 390

    # The audit trail: each event a block whose detail reads at nearly the screen's width.
    page.goto(f"{world['url']}/audit/")
    page.wait_for_selector("#audit-events")
    widths = page.evaluate(
        """() => Array.from(document.querySelectorAll("#audit-events td.detail"))
        .map((cell) => cell.getBoundingClientRect().width)"""
    )
    assert widths and min(widths) > 280
    assert not page.is_visible("#audit-events thead")
    # A partner's customers likewise: the error in words under the customer's name, not in a scrolled column.
    page.goto(f"{world['url']}/partners/{world['failing'].code}/")
    page.wait_for_selector("#customers")
    errors = page.evaluate(
        """() => Array.from(document.querySelectorAll("#customers td.wrap"))
        .filter((cell) => cell.innerText.trim()).map((cell) => cell.getBoundingClientRect().width)"""
    )
    assert errors and min(errors) > 280
    context.close()

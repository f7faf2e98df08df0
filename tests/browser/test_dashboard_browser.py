"""The staff dashboard in Chromium: signing in, the overview, the list with filters, a partner's page, an action
confirmed by an operator, and a viewer who may look but not act. Screenshots go to test-output/screenshots/."""

from __future__ import annotations

from typing import Any

import pytest

from customers import tasks as customer_tasks
from partners.access import Role
from partners.models import AuditEvent, Partner
from tests.browser.conftest import screenshot
from tests.factories import PASSWORD, active_partner_with_data, make_staff
from tokens import tasks as token_tasks

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def dashboard(live_cpv, django_user_model, monkeypatch) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    # The tasks an action queues are recorded instead of sent: this test is about the pages.
    sent: list[dict[str, Any]] = []
    for task in (
        token_tasks.token_renew,
        customer_tasks.customers_sync,
        customer_tasks.application_consent_batch,
        customer_tasks.application_consent_next,
    ):
        monkeypatch.setattr(task, "apply_async", lambda *a, **kw: sent.append(kw["kwargs"]))
    partners = [
        active_partner_with_data("Contoso Partners", customers=30, failed=4, age_days=3),
        active_partner_with_data("Fabrikam Cloud", customers=12, failed=0, age_days=20),
        active_partner_with_data("Northwind IT", customers=8, failed=8, age_days=80),
    ]
    tail = Partner.objects.get(name="Northwind IT")
    tail.status = Partner.Status.RECONSENT_NEEDED
    tail.status_reason = "The refresh token expired (AADSTS700082): the partner must consent again."
    tail.save()
    for i in range(6):
        Partner.objects.create(name=f"Invited Partner {i}", contact_email=f"i{i}@example.com")
    return {
        "partners": partners,
        "sent": sent,
        "viewer": make_staff(django_user_model, "vera-viewer", Role.VIEWER),
        "operator": make_staff(django_user_model, "otto-operator", Role.OPERATOR),
        "url": live_cpv.url,
    }


def sign_in(page: Any, url: str, username: str) -> None:
    page.goto(f"{url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("#sign-in")
    page.wait_for_selector("#by-status")


def test_an_operator_reads_the_overview_filters_the_list_and_runs_an_action(page, dashboard) -> None:  # type: ignore[no-untyped-def]
    url = dashboard["url"]
    page.goto(f"{url}/accounts/login/")
    screenshot(page, "dashboard-sign-in")
    sign_in(page, url, "otto-operator")

    assert page.locator("svg.chart").count() >= 5
    assert "Northwind IT" in page.inner_text("#attention")
    assert "Re-consent needed" in page.inner_text("#attention")
    screenshot(page, "dashboard-overview")

    page.click("#nav-partners")
    page.wait_for_selector("#partners")
    assert page.locator("#partners tbody tr").count() == 9
    page.select_option("#id_status", "active")
    page.fill("#id_q", "o")
    page.click("#apply-filters")
    page.wait_for_url("**/partners/?*status=active*")
    assert page.locator("#partners tbody tr").count() == 2
    assert "Invited Partner" not in page.inner_text("#partners")
    screenshot(page, "dashboard-partner-list-filtered")

    page.click("text=Contoso Partners")
    page.wait_for_selector("#customers")
    assert "26 of 30" in page.inner_text("#customers")
    assert "AdminAgents group" in page.inner_text("#customers")  # a 403 from Partner Center, in words
    assert "abababab" in page.inner_text("#token")
    screenshot(page, "dashboard-partner-page")

    page.click("#action-sync")
    page.wait_for_selector("#confirm")
    screenshot(page, "dashboard-confirm-sync")
    page.click("#confirm-action")
    page.wait_for_selector("#operations")
    assert "Customer sync queued" in page.inner_text(".messages")
    assert "queued" in page.inner_text("#operations")
    screenshot(page, "dashboard-operation-queued")

    contoso = dashboard["partners"][0]
    assert dashboard["sent"] == [
        {"partner_id": contoso.pk, "apply": False, "correlation_id": dashboard["sent"][0]["correlation_id"]}
    ]
    assert AuditEvent.objects.filter(action="partner.sync_requested", actor_label="otto-operator").count() == 1


def test_an_operator_runs_a_bulk_action_from_the_list(page, dashboard) -> None:  # type: ignore[no-untyped-def]
    url = dashboard["url"]
    sign_in(page, url, "otto-operator")
    page.goto(f"{url}/partners/?status=active")
    page.check("input.select-all")
    page.select_option("#bulk-action-list", "renew")
    page.click("#bulk-submit")
    page.wait_for_selector("#confirm")
    screenshot(page, "dashboard-bulk-confirm")
    page.click("#confirm-action")
    page.wait_for_selector(".messages")

    assert "queued for 2 partners" in page.inner_text(".messages")
    assert len(dashboard["sent"]) == 2


def test_a_viewer_sees_everything_but_can_run_no_action(page, dashboard) -> None:  # type: ignore[no-untyped-def]
    url = dashboard["url"]
    sign_in(page, url, "vera-viewer")
    contoso = dashboard["partners"][0]

    page.goto(f"{url}/partners/{contoso.code}/")
    page.wait_for_selector("#customers")
    assert page.locator("#actions").count() == 0
    assert page.locator("#nav-staff").count() == 0
    screenshot(page, "dashboard-partner-page-viewer")
    response = page.goto(f"{url}/partners/{contoso.code}/do/renew")
    assert response.status == 403
    assert "may look but not act" in page.inner_text("#forbidden")
    screenshot(page, "dashboard-viewer-refused")
    assert page.goto(f"{url}/settings/").status == 404

    page.goto(f"{url}/audit/?actor=system")
    page.wait_for_selector("#audit-events")
    screenshot(page, "dashboard-audit-log")
    assert not dashboard["sent"]

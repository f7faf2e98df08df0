"""Partner Center's MFA rule across the product: every call sends `ValidateMfa: true`, the partner's last
`isMfaCompliant` is kept and shown, and a 401 with code 900421 during renewal, customer sync or ApplicationConsent
marks the partner "re-consent needed" with MFA as the reason and emails the link once, retrying nothing blindly."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core import mail
from django.core.management import call_command
from django.utils import timezone

from customers.models import CustomerConsent
from customers.services import CallFailed, customer_consent_apply, customers_sync
from partners.models import AuditEvent, Customer, Partner
from tests.factories import active_partner
from tokens.models import PartnerToken, TokenEvent
from tokens.renewal import renew_one

pytestmark = pytest.mark.django_db

WITHOUT_MFA = {"global_admin": True, "admin_agent": True, "mfa_registered": False}


def mfa_refusals(sim) -> list[dict]:  # type: ignore[no-untyped-def]
    return [e for e in sim.control.log(service="partner_center", status=401)]


def assert_marked_once(partner: Partner) -> None:
    partner.refresh_from_db()
    assert partner.status == Partner.Status.RECONSENT_NEEDED
    assert "multi-factor" in partner.status_reason
    assert partner.mfa_compliant is False and partner.mfa_checked_at is not None
    assert len(mail.outbox) == 1 and partner.contact_email in mail.outbox[0].to
    assert AuditEvent.objects.filter(partner=partner, action="partner.reconsent_needed").count() == 1
    assert TokenEvent.objects.filter(partner=partner, kind=TokenEvent.Kind.MFA_REQUIRED).exists()


@pytest.mark.parametrize("answer_in", ["body", "header"])
def test_every_partner_center_call_asks_for_the_mfa_verdict_and_it_is_kept(cpv_sim, answer_in) -> None:  # type: ignore[no-untyped-def]
    # Partner Center's "isMfaCompliant field in the response": a field of the JSON body or a header, read either way.
    cpv_sim.control.set_settings(pc_mfa_compliant_in=answer_in)
    partner = active_partner(cpv_sim)
    assert partner.mfa_compliant is None

    customers_sync(partner_id=partner.pk)
    customer = Customer.objects.filter(partner=partner).first()
    assert customer is not None
    customer_consent_apply(customer_id=customer.pk)

    calls = cpv_sim.control.log(service="partner_center")
    assert calls and all(c.get("request_headers", {}).get("ValidateMfa") == "true" for c in calls)
    if answer_in == "header":
        assert all(c.get("response_headers", {}).get("isMfaCompliant") == "true" for c in calls)
    else:
        assert not any("isMfaCompliant" in c.get("response_headers", {}) for c in calls)
    partner.refresh_from_db()
    assert partner.mfa_compliant is True and partner.mfa_checked_at is not None


def test_a_renewed_token_without_mfa_is_refused_by_partner_center_and_the_partner_marked_once(  # type: ignore[no-untyped-def]
    cpv_sim, django_capture_on_commit_callbacks
) -> None:
    partner = active_partner(cpv_sim, **WITHOUT_MFA)
    before = PartnerToken.objects.get(partner=partner)
    PartnerToken.objects.filter(partner=partner).update(last_renewed_at=timezone.now() - timedelta(days=8))

    with django_capture_on_commit_callbacks(execute=True):
        result = renew_one(partner_id=partner.pk)
        again = renew_one(partner_id=partner.pk, force=True)

    # The renewal itself succeeded: the new token is kept, nothing is lost.
    assert result.outcome == "renewed" and again.outcome == "skipped"
    after = PartnerToken.objects.get(partner=partner)
    assert after.generation == before.generation + 1
    # Partner Center was asked once, refused with 900421, and nothing was retried.
    refusals = mfa_refusals(cpv_sim)
    assert len(refusals) == 1 and "profiles/organization" in refusals[0]["path"]
    assert refusals[0]["detail"].get("error_code") in (900421, "900421")
    assert_marked_once(partner)


def test_a_renewed_token_with_mfa_makes_no_partner_center_call(cpv_sim, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)

    with django_capture_on_commit_callbacks(execute=True):
        assert renew_one(partner_id=partner.pk, force=True).outcome == "renewed"

    assert not cpv_sim.control.log(service="partner_center")
    partner.refresh_from_db()
    assert partner.status == Partner.Status.ACTIVE


def enforcement_starts_after_a_sync(sim) -> Partner:  # type: ignore[no-untyped-def]
    """A partner that consented without MFA before Partner Center enforced it, and synced its customers then."""
    sim.control.set_settings(pc_require_mfa=False)
    partner = active_partner(sim, **WITHOUT_MFA)
    customers_sync(partner_id=partner.pk)
    partner.refresh_from_db()
    assert partner.mfa_compliant is False  # kept and shown, but Partner Center still served the call
    assert partner.status == Partner.Status.ACTIVE
    sim.control.set_settings(pc_require_mfa=True)
    sim.control.clear_log()
    return partner


def test_900421_on_application_consent_marks_the_partner_once_and_stops_the_rest(  # type: ignore[no-untyped-def]
    cpv_sim, django_capture_on_commit_callbacks
) -> None:
    partner = enforcement_starts_after_a_sync(cpv_sim)
    customers = list(Customer.objects.filter(partner=partner).order_by("pk")[:3])

    with django_capture_on_commit_callbacks(execute=True):
        states = [customer_consent_apply(customer_id=c.pk, owner=f"task-{c.pk}") for c in customers]

    assert states[0].status == CustomerConsent.Status.FAILED and "900421" in states[0].last_error
    # The partner is no longer active: the other customers are not even tried.
    assert all("re-consent needed" in s.last_error.lower() for s in states[1:])
    posts = cpv_sim.control.log(service="partner_center", method="POST")
    assert [p["status"] for p in posts] == [401]
    assert_marked_once(partner)


def test_900421_on_customer_sync_marks_the_partner_once(cpv_sim, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    partner = enforcement_starts_after_a_sync(cpv_sim)

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(CallFailed) as failed:
        customers_sync(partner_id=partner.pk)
    with pytest.raises(CallFailed) as again:
        customers_sync(partner_id=partner.pk)

    assert failed.value.mfa_required and not failed.value.transient
    # The partner is no longer active: the second sync does not call Partner Center at all.
    assert "re-consent needed" in str(again.value).lower()
    assert [e["status"] for e in cpv_sim.control.log(service="partner_center")] == [401]
    assert_marked_once(partner)


def test_the_mfa_state_is_shown_filtered_and_in_partners_json(cpv_sim, staff_client, capsys) -> None:  # type: ignore[no-untyped-def]
    partner = enforcement_starts_after_a_sync(cpv_sim)
    other = active_partner(cpv_sim, index=1)

    page = staff_client.get(f"/partners/{partner.code}/").content.decode()
    assert 'id="mfa-compliance"' in page and "not compliant" in page
    listed = staff_client.get("/partners/?mfa=not_compliant").content.decode()
    assert partner.name in listed and other.name not in listed
    unknown = staff_client.get("/partners/?mfa=unknown").content.decode()
    assert other.name in unknown and partner.name not in unknown

    call_command("partners", "--json")
    rows = {row["code"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows[str(partner.code)]["mfa_compliant"] is False
    assert rows[str(partner.code)]["mfa_checked_at"]
    assert rows[str(other.code)]["mfa_compliant"] is None

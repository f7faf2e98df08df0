"""Operator alerts: once per condition (one email to the admins, one line on the overview), not once per task,
and cleared when the condition ends."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from tests.factories import active_partner, active_partner_with_data, client_for
from tokens.alerts import alerts_evaluate, alerts_open
from tokens.models import OperatorAlert, PartnerToken
from tokens.renewal import renew_one

pytestmark = pytest.mark.django_db
Condition = OperatorAlert.Condition


def test_a_refused_credential_alerts_the_admins_once_and_clears_after_a_renewal(  # type: ignore[no-untyped-def]
    cpv_sim, admin_with_email, django_capture_on_commit_callbacks
) -> None:
    partners = [active_partner(cpv_sim, index=i) for i in range(2)]
    cpv_sim.control.inject_entra_error(7000215, grant_type="refresh_token", times=2)

    with django_capture_on_commit_callbacks(execute=True):
        for partner in partners:
            renew_one(partner_id=partner.pk, force=True)

    assert [a.condition for a in alerts_open()] == [Condition.CREDENTIAL_REFUSED]
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["ada@vendor.example"]
    assert "app credential was refused" in mail.outbox[0].subject
    page = client_for(admin_with_email).get("/").content.decode()
    assert 'id="alert-credential_refused"' in page

    renew_one(partner_id=partners[0].pk, force=True)
    alerts_evaluate()

    assert alerts_open() == []
    assert 'id="alert-credential_refused"' not in client_for(admin_with_email).get("/").content.decode()


def test_the_sweeps_conditions_email_once_while_they_last(admin_with_email, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    old = active_partner_with_data("Old Partner", age_days=80)
    active_partner_with_data("Fresh Partner", age_days=1)

    with django_capture_on_commit_callbacks(execute=True):
        alerts_evaluate()
        alerts_evaluate()

    assert [a.condition for a in alerts_open()] == [Condition.TOKENS_EXPIRING]
    assert "1 partner token(s)" in alerts_open()[0].message
    assert len(mail.outbox) == 1

    PartnerToken.objects.filter(partner=old).update(last_renewed_at=timezone.now())
    alerts_evaluate()
    assert alerts_open() == []


def test_renewals_failing_for_many_partners_is_one_alert(admin_with_email, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    partners = [active_partner_with_data(f"Partner {i}") for i in range(4)]
    failed_at = timezone.now() + timedelta(seconds=1)
    PartnerToken.objects.filter(partner__in=partners[:2]).update(last_failure_at=failed_at)

    with django_capture_on_commit_callbacks(execute=True):
        alerts_evaluate()

    (alert,) = alerts_open()
    assert alert.condition == Condition.RENEWALS_FAILING and "2 of 4 partners" in alert.message
    assert len(mail.outbox) == 1

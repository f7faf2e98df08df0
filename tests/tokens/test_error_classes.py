"""Each class of Entra error (the AADSTS reference) reaches its own outcome, with the real msal against the
simulator: Conditional Access is not a dead consent; 700016 for several partners is the vendor's registration (one
operator alert, nobody marked or emailed); 65001 for Graph disables only what needs Graph; in a customer tenant,
every refusal but a dead refresh token is that customer's."""

from __future__ import annotations

import pytest
from django.core import mail

from microsoft import identity, permissions
from partners.models import Partner
from partners.permissions import partner_permission_granted
from tests.factories import active_partner
from tokens.access_tokens import GRAPH, PARTNER_CENTER, PermissionMissing, access_token_get, cache_forget
from tokens.models import OperatorAlert, TokenEvent
from tokens.renewal import renew_one

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("code", [50097, 53000, 53001, 53002])
def test_a_device_or_app_policy_is_conditional_access_not_an_expired_consent(  # type: ignore[no-untyped-def]
    cpv_sim, django_capture_on_commit_callbacks, code
) -> None:
    partner = active_partner(cpv_sim)
    cpv_sim.control.inject_entra_error(code, grant_type="refresh_token")

    with django_capture_on_commit_callbacks(execute=True):
        renew_one(partner_id=partner.pk, force=True)

    partner.refresh_from_db()
    assert partner.status == Partner.Status.RECONSENT_NEEDED
    assert "Conditional Access" in partner.status_reason
    assert TokenEvent.objects.filter(partner=partner, kind="conditional_access").count() == 1
    assert not TokenEvent.objects.filter(partner=partner, kind="reconsent_needed").exists()


def test_700016_for_several_partners_is_one_operator_alert_and_nobody_is_marked(  # type: ignore[no-untyped-def]
    cpv_sim, django_capture_on_commit_callbacks
) -> None:
    partners = [active_partner(cpv_sim, index=i) for i in range(3)]
    cpv_sim.control.inject_entra_error(700016, grant_type="refresh_token", times=None)

    with django_capture_on_commit_callbacks(execute=True):
        for partner in partners:
            assert renew_one(partner_id=partner.pk, force=True).outcome == "failed"

    assert {p.status for p in Partner.objects.filter(pk__in=[p.pk for p in partners])} == {Partner.Status.ACTIVE}
    alerts = OperatorAlert.objects.filter(condition=OperatorAlert.Condition.APP_NOT_FOUND, cleared_at__isnull=True)
    assert alerts.count() == 1
    assert "no partner was asked to consent again" in alerts.get().message
    # One email, to the admins, about the alert; none to a partner.
    assert [m.subject for m in mail.outbox if "consent" in m.subject.lower()] == []


def test_700016_for_one_partner_alone_twice_means_it_removed_the_app(  # type: ignore[no-untyped-def]
    cpv_sim, django_capture_on_commit_callbacks
) -> None:
    partner = active_partner(cpv_sim)
    cpv_sim.control.inject_entra_error(700016, grant_type="refresh_token", times=2)

    with django_capture_on_commit_callbacks(execute=True):
        renew_one(partner_id=partner.pk, force=True)
    partner.refresh_from_db()
    # The first time, held for a second look: one partner's answer may still be the vendor's registration.
    assert partner.status == Partner.Status.ACTIVE
    assert partner.token.next_attempt_at is not None

    with django_capture_on_commit_callbacks(execute=True):
        renew_one(partner_id=partner.pk, force=True)
    partner.refresh_from_db()
    assert partner.status == Partner.Status.RECONSENT_NEEDED
    assert not OperatorAlert.objects.filter(condition=OperatorAlert.Condition.APP_NOT_FOUND).exists()


def test_65001_for_graph_disables_only_what_needs_graph_and_the_partner_stays_active(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    partner.refresh_from_db()
    cpv_sim.control.inject_entra_error(65001, grant_type="refresh_token")

    with pytest.raises(PermissionMissing, match="consents again"):
        access_token_get(partner=partner, audience=GRAPH)

    partner.refresh_from_db()
    assert partner.status == Partner.Status.ACTIVE
    assert partner.permissions_granted.get("graph") == []
    assert not partner_permission_granted(partner, permissions.ROLE_CHECK)
    # Partner Center keeps working.
    assert access_token_get(partner=partner, audience=PARTNER_CENTER).token


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (90099, identity.AppNotConsentedInTenant),
        (65001, identity.AppNotConsentedInTenant),
        (530034, identity.NoAccessToTenant),
        (500213, identity.NoAccessToTenant),
    ],
)
def test_in_a_customer_tenant_a_refusal_is_that_customers_not_the_partners(cpv_sim, code, error) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    customer = cpv_sim.world.partners[0].customers[0].tenant_id
    cache_forget()
    cpv_sim.control.inject_entra_error(code, grant_type="refresh_token", tenant=customer)

    with pytest.raises(error) as raised:
        access_token_get(partner=partner, audience=PARTNER_CENTER, tenant=customer)

    assert f"AADSTS{code}" in str(raised.value)
    partner.refresh_from_db()
    assert partner.status == Partner.Status.ACTIVE
    assert not TokenEvent.objects.filter(partner=partner, kind="reconsent_needed").exists()


def test_while_the_app_not_found_alert_is_open_a_second_look_marks_nobody_and_a_moved_token_clears_it(  # type: ignore[no-untyped-def]
    cpv_sim, django_capture_on_commit_callbacks
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from tokens.alerts import alerts_evaluate
    from tokens.models import PartnerToken

    partners = [active_partner(cpv_sim, index=i) for i in range(2)]
    cpv_sim.control.inject_entra_error(700016, grant_type="refresh_token", times=2)
    with django_capture_on_commit_callbacks(execute=True):
        for partner in partners:
            renew_one(partner_id=partner.pk, force=True)
    assert OperatorAlert.objects.filter(condition=OperatorAlert.Condition.APP_NOT_FOUND, cleared_at__isnull=True)
    # Two hours on (a partner's second look comes at its slot of a later sweep), the registration is still gone.
    TokenEvent.objects.filter(partner__in=partners).update(created_at=timezone.now() - timedelta(hours=2))
    cpv_sim.control.inject_entra_error(700016, grant_type="refresh_token", times=1)

    with django_capture_on_commit_callbacks(execute=True):
        renew_one(partner_id=partners[0].pk, force=True)

    assert Partner.objects.get(pk=partners[0].pk).status == Partner.Status.ACTIVE
    # The vendor restored its registration: a token moves, and the sweep's evaluation closes the alert.
    PartnerToken.objects.filter(partner=partners[1]).update(next_attempt_at=None)
    with django_capture_on_commit_callbacks(execute=True):
        assert renew_one(partner_id=partners[1].pk, force=True).outcome == "renewed"
    alerts_evaluate()
    assert not OperatorAlert.objects.filter(condition=OperatorAlert.Condition.APP_NOT_FOUND, cleared_at__isnull=True)

"""Each state change that is announced writes exactly one event in its own transaction, and a re-check that
changes nothing writes none: the services of tokens and customers, spot-checked against the simulator."""

from __future__ import annotations

import uuid
from collections import Counter

import psycopg
import pytest
from django.db import connection, transaction

from consent.services import partner_invite
from customers.models import CustomerConsent
from customers.proof import consent_verify, consents_verify
from customers.services import access_check, application_consent_batch, customer_consent_apply, customers_sync
from events.models import Delivery, Event, EventType
from events.services import event_record, subscription_create
from partners.invitations import partner_reconsent_link
from partners.models import Customer, Partner
from partners.services import partner_mfa_record
from tests.events.conftest import ALL_TYPES
from tests.factories import active_partner
from tests.simulated import partner_user
from tokens.failures import partner_mfa_note, partner_mfa_refused
from tokens.renewal import renew_one_retrying
from tokens.store import partner_token_import, partner_token_revoke

pytestmark = pytest.mark.django_db


def _types(partner: Partner | None = None) -> Counter[str]:
    rows = Event.objects.all() if partner is None else Event.objects.filter(partner=partner)
    return Counter(rows.values_list("type", flat=True))


def test_a_partner_activated_by_its_token_is_one_event_and_a_second_token_none(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    subscription, _ = subscription_create(
        actor=None, name="CRM", url="https://crm.example/hooks", event_types=ALL_TYPES
    )
    partner = active_partner(cpv_sim)

    event = Event.objects.get(partner=partner)
    assert event.type == EventType.PARTNER_ACTIVATED and event.payload["partner"]["code"] == str(partner.code)
    assert event.payload["previous_status"] == Partner.Status.PENDING
    assert Delivery.objects.get(event=event).subscription == subscription
    token = cpv_sim.control.issue_refresh_token(cpv_sim.world.partners[0].users[0].oid,
                                                client_id=cpv_sim.env["CPV_CLIENT_ID"])  # fmt: skip
    partner_token_import(actor=None, partner=partner, refresh_token=token)
    assert _types(partner) == {"partner.activated": 1}
    # No secret in what is announced.
    assert token not in repr(list(Event.objects.values_list("payload", flat=True)))


def test_a_revoked_token_asks_for_consent_once(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)

    partner_token_revoke(actor=None, partner=partner, reason="offboarded by hand")

    assert _types(partner) == {"partner.activated": 1, "partner.consent_needed": 1}
    assert Event.objects.get(type="partner.consent_needed").payload["reason"] == "revoked"


def test_a_dead_consent_found_by_renewal_asks_for_consent_once(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    cpv_sim.control.revoke_user(cpv_sim.world.partners[0].users[0].oid)

    renew_one_retrying(partner_id=partner.pk, force=True, sleep=lambda _: None)
    renew_one_retrying(partner_id=partner.pk, force=True, sleep=lambda _: None)

    assert _types(partner) == {"partner.activated": 1, "partner.consent_needed": 1}


def test_a_renewal_that_gives_up_is_failing_once_until_it_succeeds_again(cpv_sim, settings) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_RENEWAL_MAX_ATTEMPTS = 2
    partner = active_partner(cpv_sim)
    fault = cpv_sim.control.inject_entra_error(90033, grant_type="refresh_token", times=None)

    for _ in range(2):
        assert renew_one_retrying(partner_id=partner.pk, force=True, sleep=lambda _: None).outcome == "failed"
    assert _types(partner)["partner.renewal_failing"] == 1

    cpv_sim.control.remove_fault(fault)
    assert renew_one_retrying(partner_id=partner.pk, force=True, sleep=lambda _: None).outcome == "renewed"
    cpv_sim.control.inject_entra_error(90033, grant_type="refresh_token", times=None)
    renew_one_retrying(partner_id=partner.pk, force=True, sleep=lambda _: None)
    assert _types(partner)["partner.renewal_failing"] == 2


def test_an_mfa_verdict_that_turns_is_one_event_and_a_repeated_one_none(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    partner_mfa_record(partner=partner, compliant=True)

    partner_mfa_note(partner=partner, compliant=True)
    assert _types(partner)["partner.mfa_verdict_changed"] == 0
    partner_mfa_note(partner=partner, compliant=False)
    partner_mfa_note(partner=partner, compliant=False)

    event = Event.objects.get(type="partner.mfa_verdict_changed")
    assert event.payload["mfa_compliant"] is False and event.payload["previous"] is True


def test_customers_consented_failed_and_verified_are_each_announced_once(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    customers_sync(partner_id=partner.pk)
    customers = list(Customer.objects.filter(partner=partner).order_by("pk"))
    refused, rest = customers[0], customers[1:]
    cpv_sim.control.inject_fault("partner_center", status=403, method="POST", path="applicationconsents")

    assert customer_consent_apply(customer_id=refused.pk).status == CustomerConsent.Status.FAILED
    customer_consent_apply(customer_id=refused.pk)  # applied now
    application_consent_batch(partner_id=partner.pk, customer_ids=[c.pk for c in rest], correlation_id="t")
    application_consent_batch(partner_id=partner.pk, customer_ids=[c.pk for c in customers], correlation_id="t")
    consents_verify(customer_ids=[c.pk for c in customers])
    consents_verify(customer_ids=[c.pk for c in customers])

    count = len(customers)
    assert _types(partner) == {
        "partner.activated": 1,
        "customer.consent_failed": 1,
        "customer.consented": count,
        "customer.verified": count,
    }
    failed = Event.objects.get(type="customer.consent_failed")
    assert failed.customer_tenant_id == refused.tenant_id and failed.payload["error_kind"] == "forbidden"
    assert set(Event.objects.filter(type="customer.consented").values_list("customer_tenant_id", flat=True)) == {
        c.tenant_id for c in customers
    }


def test_a_drifted_and_a_missing_customer_are_announced(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    customers_sync(partner_id=partner.pk)
    customers = list(Customer.objects.filter(partner=partner).order_by("pk"))
    application_consent_batch(partner_id=partner.pk, customer_ids=[c.pk for c in customers], correlation_id="t")
    consents_verify(customer_ids=[c.pk for c in customers])
    cpv_sim.control.narrow_grant(str(customers[0].tenant_id), ["Directory.Read.All"])
    cpv_sim.control.delete_service_principal(str(customers[1].tenant_id))

    consent_verify(customer_id=customers[0].pk, repair=False)
    consent_verify(customer_id=customers[1].pk, repair=False)
    consent_verify(customer_id=customers[0].pk, repair=False)

    assert _types(partner)["customer.drifted"] == 1 and _types(partner)["customer.missing"] == 1
    drifted = Event.objects.get(type="customer.drifted")
    assert drifted.customer_tenant_id == customers[0].tenant_id and drifted.payload["drift"]


def test_customers_without_gdap_access_are_announced_once(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    customers_sync(partner_id=partner.pk)
    customers = list(Customer.objects.filter(partner=partner).order_by("pk"))
    for customer in customers[:2]:
        cpv_sim.control.gdap_state(str(partner.tenant_id), str(customer.tenant_id), "none")

    access_check(partner_id=partner.pk)
    access_check(partner_id=partner.pk)

    without = Event.objects.filter(type="customer.without_access")
    assert sorted(str(t) for t in without.values_list("customer_tenant_id", flat=True)) == sorted(
        str(c.tenant_id) for c in customers[:2]
    )
    assert {e.payload["access"] for e in without} == {CustomerConsent.Access.NO_RELATIONSHIP}


def test_a_partner_refused_for_mfa_who_consents_again_with_it_is_announced_each_step(  # type: ignore[no-untyped-def]
    cpv_sim, consent_run
) -> None:
    admin = partner_user(cpv_sim, global_admin=True, admin_agent=True, mfa_registered=True)
    invitation = partner_invite(actor=None, name="Contoso", contact_email="a@contoso.example", send_email=False)
    consent_run(invitation.url, user=admin)
    partner = Partner.objects.get(pk=invitation.partner.pk)
    assert partner.mfa_compliant is True

    assert partner_mfa_refused(partner_id=partner.pk, detail="Partner Center answered isMfaCompliant: false")
    consent_run(partner_reconsent_link(actor=None, partner=partner), user=admin)

    steps = list(Event.objects.filter(partner=partner).order_by("pk").values_list("type", "payload__mfa_compliant"))
    assert steps == [
        ("partner.activated", None),
        ("partner.mfa_verdict_changed", False),
        ("partner.consent_needed", None),
        ("partner.mfa_verdict_changed", True),
        ("partner.activated", None),
    ]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_event_commits_while_a_customer_sync_holds_its_partner_for_update(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    """A customer sync locks the partner FOR UPDATE, then its customers; an ApplicationConsent holds its customer's
    lock until it commits with its event. Were the event's partner a checked foreign key, that COMMIT would wait for
    the partner's row (PostgreSQL's deferred check takes FOR KEY SHARE) and the two would deadlock."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL")
    partner = active_partner(cpv_sim)
    holder = psycopg.connect(
        **{k: v for k, v in connection.get_connection_params().items() if k in ("host", "port", "user", "dbname")}
    )
    try:
        holder.execute("SELECT 1 FROM partners_partner WHERE id = %s FOR UPDATE", (partner.pk,))
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '3s'")
        try:
            with transaction.atomic():
                event_record(type=EventType.CUSTOMER_CONSENTED, partner=partner, customer_tenant_id=uuid.uuid4())
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")
    finally:
        holder.rollback()
        holder.close()
    assert Event.objects.filter(partner=partner, type=EventType.CUSTOMER_CONSENTED).count() == 1

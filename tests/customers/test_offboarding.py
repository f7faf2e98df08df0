"""Offboarding a partner against the simulator: the vendor's app taken out of every customer (ApplicationConsent
DELETE, seen gone in Graph), resumable after an interruption, nothing applied meanwhile; then the token revoked, the
partner deactivated and told in words how to withdraw its own consent; the audit kept; staff start it from the page."""

from __future__ import annotations

import pytest
from django.core import mail
from django.test import Client

from customers.models import CustomerConsent
from customers.offboarding import offboarding_progress, partner_offboard_run, partner_offboard_start
from customers.proof import consents_verify, customers_to_verify
from customers.services import application_consent_batch, customers_needing_consent, customers_sync
from partners.models import AuditEvent, Customer, Partner
from partners.services import PartnerError, partner_reactivate
from tests.factories import active_partner
from tokens.models import PartnerToken

pytestmark = pytest.mark.django_db


def _applied(sim):  # type: ignore[no-untyped-def]
    partner = active_partner(sim)
    sim.control.add_customers(str(partner.tenant_id), 3)
    customers_sync(partner_id=partner.pk)
    ids = customers_needing_consent(partner_id=partner.pk)
    application_consent_batch(partner_id=partner.pk, customer_ids=ids, correlation_id="test")
    customers = list(Customer.objects.filter(partner=partner).order_by("pk"))
    assert len(customers) > 4
    return partner, customers


def _holding_the_app(sim, customers: list[Customer]) -> list[Customer]:  # type: ignore[no-untyped-def]
    app = sim.env["CPV_CLIENT_ID"].lower()
    held = []
    for customer in customers:
        directory = sim.control.directory(str(customer.tenant_id))
        if any(sp["appId"].lower() == app for sp in directory["service_principals"]):
            held.append(customer)
    return held


def test_an_offboarding_interrupted_half_way_and_resumed_leaves_no_customer_with_the_app(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner, customers = _applied(cpv_sim)
    assert _holding_the_app(cpv_sim, customers) == customers

    partner_offboard_start(actor=None, partner=partner)
    # Meanwhile nothing puts the app back: no consent applied, no customer verified (and so none repaired).
    assert customers_needing_consent(partner_id=partner.pk) == []
    assert customers_to_verify(partner_id=partner.pk, due_only=False) == []
    first = partner_offboard_run(partner_id=partner.pk, limit=2)  # stopped half-way

    assert (first.removed, first.finished) == (2, False)
    assert len(_holding_the_app(cpv_sim, customers)) == len(customers) - 2
    assert Partner.objects.get(pk=partner.pk).status == Partner.Status.ACTIVE
    # A sweep running now puts nothing back.
    application_consent_batch(partner_id=partner.pk, customer_ids=[c.pk for c in customers], correlation_id="sweep")
    consents_verify(customer_ids=[c.pk for c in customers])
    assert len(_holding_the_app(cpv_sim, customers)) == len(customers) - 2

    done = partner_offboard_run(partner_id=partner.pk)  # resumed

    assert done.finished and done.removed == len(customers)
    assert _holding_the_app(cpv_sim, customers) == []
    assert {s.status for s in CustomerConsent.objects.filter(customer__in=customers)} == {"removed"}
    partner.refresh_from_db()
    assert partner.status == Partner.Status.DEACTIVATED and partner.offboarded_at is not None
    pointer = PartnerToken.objects.get(partner=partner)
    assert pointer.revoked_at is not None
    # Deletes: one per customer, none twice.
    deletes = cpv_sim.control.log(service="partner_center", method="DELETE", path="applicationconsents")
    assert len(deletes) == len(customers) and len({d["path"] for d in deletes}) == len(customers)
    # The partner is told how to withdraw its own consent; the audit is kept.
    (email,) = [m for m in mail.outbox if "offboarded" in m.subject]
    assert "Enterprise applications" in email.body and cpv_sim.env["CPV_CLIENT_ID"] in email.body
    actions = set(AuditEvent.objects.filter(partner=partner).values_list("action", flat=True))
    assert {"partner.offboarding_started", "partner.offboarded", "partner.deactivated"} <= actions
    # Running it again changes nothing.
    assert partner_offboard_run(partner_id=partner.pk).finished
    assert len(cpv_sim.control.log(service="partner_center", method="DELETE", path="applicationconsents")) == len(
        customers
    )
    with pytest.raises(PartnerError):
        partner_offboard_start(actor=None, partner=partner)
    # Reactivated, it starts afresh: its customers are to be consented again once it consents.
    back = partner_reactivate(actor=None, partner=partner, token_usable=False).partner
    assert back.status == Partner.Status.RECONSENT_NEEDED
    assert back.offboarding_started_at is None and back.offboarded_at is None
    assert sorted(customers_needing_consent(partner_id=partner.pk)) == sorted(c.pk for c in customers)


def test_staff_start_it_from_the_partners_page_and_see_the_progress(cpv_sim, operator) -> None:  # type: ignore[no-untyped-def]
    partner, customers = _applied(cpv_sim)
    client = Client()
    client.force_login(operator)

    response = client.post(f"/partners/{partner.code}/do/offboard", {"confirmed": "yes"})

    assert response.status_code == 302
    partner.refresh_from_db()
    assert partner.offboarding_started_at is not None
    assert offboarding_progress(partner).customers == len(customers)
    page = client.get(f"/partners/{partner.code}/").content.decode()
    assert 'id="offboarding"' in page and f"0 of {len(customers)} customers done" in page
    assert 'id="action-renew"' not in page  # nothing else runs while it is offboarded

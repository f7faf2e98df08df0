"""An ApplicationConsent or customer-sync task cut off in the middle (its soft time limit, or the database gone)
goes on as a retry instead of being acknowledged with its work undone, when a customer would wait for its claim
to lapse and the daily sweep.

The soft time limit is raised where a worker would raise it; Celery also raises it, after a lost broker
connection comes back, in a pool process that has moved on to another task (tests/faults/test_redis_restart.py).
"""

from __future__ import annotations

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.db import OperationalError
from django.utils import timezone

from customers import services as customers
from customers import tasks as customer_tasks
from customers.models import CustomerConsent
from microsoft import partner_center
from partners.models import Customer
from tests.factories import active_partner, once

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    "error", [SoftTimeLimitExceeded(), OperationalError("server closed the connection")], ids=["time limit", "database"]
)
def test_an_application_consent_cut_off_after_partner_center_made_it_is_taken_over_with_the_same_request_id(  # type: ignore[no-untyped-def]
    cpv_sim, monkeypatch, caplog, error
) -> None:
    partner = active_partner(cpv_sim)
    customers.customers_sync(partner_id=partner.pk)
    customer = Customer.objects.filter(partner=partner).order_by("pk").first()
    assert customer is not None
    # The worst moment: Partner Center created the consent, nothing was recorded, and the claim is still held.
    client = partner_center.PartnerCenterClient
    monkeypatch.setattr(
        client, "application_consent_create", once(client.application_consent_create, error, after=True)
    )

    customer_tasks.application_consent_apply.apply(kwargs={"customer_id": customer.pk})

    state = CustomerConsent.objects.get(customer=customer)
    assert state.status == CustomerConsent.Status.APPLIED and state.lease_until is None
    posts = cpv_sim.control.log(service="partner_center", method="POST", path="applicationconsents")
    assert len(posts) == 2 and [p["status"] for p in posts].count(201) == 1
    assert len({p["request_headers"]["MS-RequestId"] for p in posts}) == 1
    assert list(cpv_sim.control.consents(str(customer.tenant_id))) == [cpv_sim.env["CPV_CLIENT_ID"]]
    reason = "it ran out of time" if isinstance(error, SoftTimeLimitExceeded) else "the database connection failed"
    assert f"ApplicationConsent for customer {customer.pk}: {reason}" in caplog.text


def test_a_customer_sync_cut_off_runs_again(cpv_sim, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    cpv_sim.control.add_customers(str(partner.tenant_id), 5)
    monkeypatch.setattr(customers, "customers_sync", once(customers.customers_sync, SoftTimeLimitExceeded()))

    customer_tasks.customers_sync.apply(kwargs={"partner_id": partner.pk, "apply": False})

    assert Customer.objects.filter(partner=partner).count() == 10
    assert f"customer sync of partner {partner.pk}: it ran out of time; trying again" in caplog.text


def test_a_claim_another_task_holds_is_waited_out_and_a_task_takes_its_own_over(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    customers.customers_sync(partner_id=partner.pk)
    customer = Customer.objects.filter(partner=partner).order_by("pk").first()
    assert customer is not None
    held = timezone.now() + customers.LEASE
    CustomerConsent.objects.update_or_create(
        customer=customer, defaults={"lease_until": held, "lease_owner": "another-task", "pending_request_id": ""}
    )

    customer_tasks.application_consent_apply.apply(kwargs={"customer_id": customer.pk})

    # Another task's claim: nothing sent, the claim untouched.
    state = CustomerConsent.objects.get(customer=customer)
    assert state.status == CustomerConsent.Status.PENDING and state.lease_owner == "another-task"
    assert not cpv_sim.control.log(service="partner_center", method="POST", path="applicationconsents")

    # That task's retry (or its message handed back) is the same task: it takes its claim over.
    customer_tasks.application_consent_apply.apply(kwargs={"customer_id": customer.pk}, task_id="another-task")

    state = CustomerConsent.objects.get(customer=customer)
    assert state.status == CustomerConsent.Status.APPLIED and state.lease_until is None

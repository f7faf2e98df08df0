"""ApplicationConsent in a batch of customers, against the simulator: one audit row for the batch with its counts,
never one per customer; a batch that has to try some customers again is audited once, when it is over."""

from __future__ import annotations

from typing import Any

import pytest

from customers import tasks as customer_tasks
from customers.models import ConsentWork, CustomerConsent
from customers.services import application_consent_batch, customers_sync
from partners.models import AuditEvent, Customer
from tests.factories import active_partner

pytestmark = pytest.mark.django_db


def batch_rows(partner: Any) -> list[dict[str, Any]]:
    return list(
        AuditEvent.objects.filter(partner=partner, action="partner.consents_applied").values_list("detail", flat=True)
    )


def no_sleep(seconds: float) -> None:
    return None


def test_a_batch_of_eight_customers_leaves_one_audit_row_with_its_counts(cpv_sim, settings) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    cpv_sim.control.add_customers(str(partner.tenant_id), 3)
    customers_sync(partner_id=partner.pk)
    ids = list(Customer.objects.filter(partner=partner).order_by("pk").values_list("pk", flat=True))
    assert len(ids) == 8
    present = Customer.objects.get(pk=ids[1])
    cpv_sim.control.add_consent(str(present.tenant_id), application_id=settings.CPV_APP.client_id)
    # Partner Center refuses one customer for good.
    cpv_sim.control.inject_fault("partner_center", status=403, method="POST", path="applicationconsents", times=1)

    result = customer_tasks.application_consent_batch.apply(
        kwargs={"partner_id": partner.pk, "customer_ids": ids, "correlation_id": "c0ffee00-0000-4000-8000-000000000001"}
    ).get()

    assert (result["tried"], result["consented"], result["already_present"], result["failed"]) == (8, 6, 1, 1)
    [detail] = batch_rows(partner)
    assert detail["tried"] == 8 and detail["consented"] == 6 and detail["already_present"] == 1
    assert detail["failed"] == 1 and detail["retrying"] == 0
    assert detail["correlation_id"] == "c0ffee00-0000-4000-8000-000000000001"
    assert CustomerConsent.objects.filter(status=CustomerConsent.Status.APPLIED).count() == 7


def test_a_batch_retried_for_a_transient_failure_is_audited_once_when_it_is_over(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    customers_sync(partner_id=partner.pk)
    ids = list(Customer.objects.filter(partner=partner).order_by("pk").values_list("pk", flat=True))
    # The first customer's call meets Partner Center unavailable on every in-process attempt.
    cpv_sim.control.inject_fault("partner_center", status=503, method="POST", path="applicationconsents", times=4)

    first = application_consent_batch(
        partner_id=partner.pk, customer_ids=ids, correlation_id="c1", last_run=False, sleep=no_sleep
    )

    assert first.retry_ids == ids[:1] and first.consented == 4
    assert batch_rows(partner) == []

    second = application_consent_batch(
        partner_id=partner.pk, customer_ids=first.retry_ids, correlation_id="c1", earlier=first.counts(), sleep=no_sleep
    )

    assert (second.tried, second.consented, second.retry_ids) == (5, 5, [])
    [detail] = batch_rows(partner)
    assert (detail["tried"], detail["consented"], detail["failed"], detail["retrying"]) == (5, 5, 0, 0)


def test_the_last_run_of_a_batch_audits_what_is_left_undone(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    customers_sync(partner_id=partner.pk)
    ids = list(Customer.objects.filter(partner=partner).order_by("pk").values_list("pk", flat=True))
    cpv_sim.control.inject_fault("partner_center", status=503, method="POST", path="applicationconsents", times=4)

    result = application_consent_batch(partner_id=partner.pk, customer_ids=ids, correlation_id="c2", sleep=no_sleep)

    assert result.retry_ids == ids[:1]
    [detail] = batch_rows(partner)
    assert (detail["tried"], detail["consented"], detail["retrying"]) == (5, 4, 1)


def test_a_sync_schedules_its_customers_and_starts_pullers_for_them(cpv_sim, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    cpv_sim.control.add_customers(str(partner.tenant_id), 7)
    customers_sync(partner_id=partner.pk)
    queued: list[dict[str, Any]] = []
    monkeypatch.setattr(
        customer_tasks.application_consent_next, "apply_async", lambda kwargs, **o: queued.append(kwargs)
    )

    assert customer_tasks.application_consents_queue(partner_id=partner.pk, correlation_id="c3") == 12

    # Two batches of pending work: two pullers, each a slot of its own.
    assert ConsentWork.objects.filter(partner=partner).count() == 12
    assert queued == [{"slot": 0}, {"slot": 1}]


def test_a_batch_of_a_partner_that_is_gone_ends_quietly(caplog) -> None:  # type: ignore[no-untyped-def]
    result = customer_tasks.application_consent_batch.apply(kwargs={"partner_id": 987654, "customer_ids": [1]}).get()

    assert result == {"partner_id": 987654, "outcome": "gone"}
    assert "no such partner in the database" in caplog.text

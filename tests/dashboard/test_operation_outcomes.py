"""A staff operation's outcome is written into its record by the work it queued, once, with no page read: the
renewal, the sync, the ApplicationConsent batches (their shares adding up) and the verification."""

from __future__ import annotations

import pytest
from django.utils import timezone

from customers import tasks as customer_tasks
from customers.services import customers_needing_consent, customers_sync
from dashboard import operations
from partners.models import AuditEvent, Operation
from tests.customers.scheduled import Broker
from tests.factories import active_partner
from tokens import tasks as token_tasks

pytestmark = pytest.mark.django_db


def _operation(partner, kind: str) -> Operation:  # type: ignore[no-untyped-def]
    event = operations.operation_start(actor=None, partner=partner, kind=kind)
    return Operation.objects.get(code=event.detail["operation"])


def test_the_work_writes_each_operations_outcome_once(cpv_sim, monkeypatch, settings) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    cpv_sim.control.add_customers(str(partner.tenant_id), 3)

    sync = _operation(partner, operations.SYNC)
    customer_tasks.customers_sync.apply(
        kwargs={"partner_id": partner.pk, "apply": False, "correlation_id": str(sync.code)}
    )
    sync.refresh_from_db()
    assert sync.finished_at is not None and sync.state == Operation.State.DONE and "customers listed" in sync.message

    apply = _operation(partner, operations.APPLY)
    ids = customers_needing_consent(partner_id=partner.pk)
    assert apply.total == len(ids) > 2
    # The fair schedule's pullers close its customers two at a time: each batch adds its share, the last completes it.
    settings.CPV_CONSENT_BATCH = 2
    broker = Broker(monkeypatch)
    customer_tasks.application_consent_pullers_start()
    seen = []
    while broker.messages:
        broker.step()
        apply.refresh_from_db()
        seen.append(apply.done)
        assert (apply.finished_at is not None) == (apply.done == len(ids)), seen
    assert seen[0] == 2 and seen[-1] == len(ids)
    assert (apply.state, apply.done, apply.failed) == (Operation.State.DONE, len(ids), 0)
    assert apply.message == f"{len(ids)} applied, 0 failed."
    written = apply.finished_at
    [audit] = AuditEvent.objects.filter(action="partner.consents_finished", detail__operation=str(apply.code))
    assert (audit.detail["tried"], audit.detail["failed"]) == (len(ids), 0)

    verify = _operation(partner, operations.VERIFY)
    customer_tasks.consents_verify.apply(kwargs={"customer_ids": ids, "operation": str(verify.code)})
    verify.refresh_from_db()
    assert (
        verify.state == Operation.State.DONE
        and verify.message == f"{len(ids)} customers read: 0 left drifted or missing."
    )

    renew = _operation(partner, operations.RENEW)
    token_tasks.token_renew.apply(kwargs={"partner_id": partner.pk, "force": True, "operation": str(renew.code)})
    renew.refresh_from_db()
    assert renew.state == Operation.State.DONE and renew.message == "Renewed."

    # Written once: a batch run again (a redelivered message) changes nothing, nor does a page read.
    customer_tasks.application_consent_batch.apply(
        kwargs={"partner_id": partner.pk, "customer_ids": ids, "correlation_id": str(apply.code)}
    )
    operations.operation_progress(apply)
    apply.refresh_from_db()
    assert apply.finished_at == written and apply.done == len(ids)


def test_work_outside_an_operation_writes_no_record(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    customers_sync(partner_id=partner.pk)
    ids = customers_needing_consent(partner_id=partner.pk)
    customer_tasks.application_consent_batch.apply(
        kwargs={"partner_id": partner.pk, "customer_ids": ids, "correlation_id": "sweep"}
    )
    assert not Operation.objects.exists()


def test_an_operation_queued_before_the_fair_schedule_is_finished_by_its_batch_messages(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    cpv_sim.control.add_customers(str(partner.tenant_id), 3)
    customers_sync(partner_id=partner.pk)
    ids = customers_needing_consent(partner_id=partner.pk)
    # Recorded as operations were, with its batch messages still in the broker and nothing in the schedule.
    apply = Operation.objects.create(
        partner=partner, kind=operations.APPLY, actor_label="otto", started_at=timezone.now(), total=len(ids)
    )

    customer_tasks.application_consent_batch.apply(
        kwargs={"partner_id": partner.pk, "customer_ids": ids[:2], "correlation_id": str(apply.code)}
    )
    half = operations.operation_progress(apply)
    customer_tasks.application_consent_batch.apply(
        kwargs={"partner_id": partner.pk, "customer_ids": ids[2:], "correlation_id": str(apply.code)}
    )
    apply.refresh_from_db()

    assert (half.state, half.done, half.message) == ("running", 2, f"2 of {len(ids)} customers done (0 failed).")
    assert (apply.state, apply.done, apply.failed) == (Operation.State.DONE, len(ids), 0)
    assert operations.operation_progress(apply).message == f"{len(ids)} applied, 0 failed."

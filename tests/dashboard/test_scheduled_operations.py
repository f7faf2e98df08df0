"""Staff ApplicationConsent operations go through the fair schedule: a bulk action's partners take turns, each
operation reaches done with its own counts, retrying failures is repair work, pending work of a sweep becomes the
operation's while an earlier operation keeps its own, and a puller killed mid-batch applies none twice."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from customers import scheduling
from customers import tasks as customer_tasks
from customers.models import ConsentWork, CustomerConsent
from customers.services import customers_needing_consent, customers_sync
from dashboard import operations
from partners.models import AuditEvent, Operation, Partner
from partners.services import PartnerError
from tests.customers.scheduled import Broker
from tests.factories import active_partner, client_for

pytestmark = pytest.mark.django_db

Kind = ConsentWork.Kind


def synced(sim, index: int, more: int = 0) -> Partner:  # type: ignore[no-untyped-def]
    partner = active_partner(sim, index=index)
    if more:
        sim.control.add_customers(str(partner.tenant_id), more)
    customers_sync(partner_id=partner.pk)
    return partner


def operation_of(event: AuditEvent) -> Operation:
    return Operation.objects.get(code=event.detail["operation"])


def created_posts(sim) -> Counter[str]:  # type: ignore[no-untyped-def]
    posts = sim.control.log(service="partner_center", method="POST", path="applicationconsents", limit=5000)
    return Counter(p["path"] for p in posts if p["status"] == 201)


def test_a_bulk_apply_takes_turns_across_its_partners_and_each_operation_reaches_done(  # type: ignore[no-untyped-def]
    cpv_sim, operator, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    big, *small = [synced(cpv_sim, 0, more=35), synced(cpv_sim, 1), synced(cpv_sim, 2)]
    everyone = [big, *small]
    totals = {p.pk: len(customers_needing_consent(partner_id=p.pk)) for p in everyone}
    broker = Broker(monkeypatch)
    client = client_for(operator)

    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            "/partners/bulk", {"action": "apply", "partners": [str(p.code) for p in everyone], "confirmed": "True"}
        )
    results = broker.drain()

    # The big partner (40 customers) went first, yet the small ones had their turns among its first batches.
    order = [r["partner_id"] for r in results if r["outcome"] == "done"]
    assert set(order[:3]) == {p.pk for p in everyone}, order
    ops = {op.partner_id: op for op in Operation.objects.filter(kind=operations.APPLY)}
    assert {pk: (op.state, op.total, op.done, op.failed) for pk, op in ops.items()} == {
        pk: (Operation.State.DONE, total, total, 0) for pk, total in totals.items()
    }
    created = created_posts(cpv_sim)
    assert len(created) == sum(totals.values()) and set(created.values()) == {1}
    assert not ConsentWork.objects.exists()
    bulk = operations.operations_bulk(ops[big.pk].bulk)  # type: ignore[arg-type]
    assert bulk is not None and bulk.finished and bulk.counts["done"] == 3
    finished = AuditEvent.objects.filter(action="partner.consents_finished")
    assert sorted(e.detail["tried"] for e in finished) == sorted(totals.values())
    page = client.get(f"/partners/{big.code}/operations/{ops[big.pk].code}", HTTP_ACCEPT="application/json").json()
    assert (page["state"], page["done"], page["failed"], page["finished"]) == ("done", 40, 0, True)


def test_retrying_failed_customers_is_repair_work_counted_by_its_own_operation(cpv_sim, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    partner = synced(cpv_sim, 0, more=3)
    broker = Broker(monkeypatch)
    # Partner Center refuses one customer for good, then, asked again, accepts it.
    cpv_sim.control.inject_fault("partner_center", status=400, method="POST", path="applicationconsents", times=1)
    first = operation_of(operations.operation_start(actor=None, partner=partner, kind=operations.APPLY))
    customer_tasks.application_consent_pullers_start()
    broker.drain()
    first.refresh_from_db()
    assert (first.state, first.done, first.failed, first.message) == ("failed", 8, 1, "7 applied, 1 failed.")

    again = operation_of(operations.operation_start(actor=None, partner=partner, kind=operations.APPLY_FAILED))
    [work] = ConsentWork.objects.filter(correlation_id=str(again.code))
    assert (again.total, work.kind) == (1, Kind.REPAIR)
    customer_tasks.application_consent_pullers_start()
    broker.drain()

    again.refresh_from_db()
    assert (again.state, again.done, again.failed, again.message) == ("done", 1, 0, "1 applied, 0 failed.")
    assert CustomerConsent.objects.filter(status=CustomerConsent.Status.APPLIED).count() == 8
    first.refresh_from_db()
    assert (first.done, first.failed) == (8, 1)


def test_a_sweeps_pending_work_becomes_the_operations_and_an_earlier_operation_keeps_its_own(  # type: ignore[no-untyped-def]
    cpv_sim, monkeypatch
) -> None:
    partner = synced(cpv_sim, 0, more=3)
    ids = customers_needing_consent(partner_id=partner.pk)
    # The daily sweep scheduled half of them as routine re-checks, not yet run.
    sweep = str(uuid.uuid4())
    scheduling.consent_work_add(partner_id=partner.pk, customer_ids=ids[:4], kind=Kind.ROUTINE, correlation_id=sweep)

    op = operation_of(operations.operation_start(actor=None, partner=partner, kind=operations.APPLY))

    work = ConsentWork.objects.filter(partner=partner)
    assert op.total == len(ids) == work.count() == work.filter(correlation_id=str(op.code)).count()
    # Moved up with it: a staff action goes before routine re-checks.
    assert set(work.values_list("priority", flat=True)) == {0}
    # Asked again while the first still has them: nothing to add, said in words.
    with pytest.raises(PartnerError, match="already under way in an earlier operation"):
        operations.operation_start(actor=None, partner=partner, kind=operations.APPLY)
    assert Operation.objects.filter(kind=operations.APPLY).count() == 1

    broker = Broker(monkeypatch)
    customer_tasks.application_consent_pullers_start()
    broker.drain()
    op.refresh_from_db()
    assert (op.state, op.done, op.failed) == ("done", len(ids), 0)


def test_an_operations_puller_killed_mid_batch_is_redelivered_and_counts_each_customer_once(  # type: ignore[no-untyped-def]
    cpv_sim, monkeypatch, settings
) -> None:
    settings.CPV_CONSENT_PULLERS = 1
    partner = synced(cpv_sim, 0, more=7)
    op = operation_of(operations.operation_start(actor=None, partner=partner, kind=operations.APPLY))
    broker = Broker(monkeypatch)
    customer_tasks.application_consent_pullers_start()
    assert len(broker.messages) == 1
    broker.puller_killed_after(3)
    op.refresh_from_db()
    assert op.done == 0

    # Its message comes back (the same id): it takes its claim back, and the chain goes on to the end.
    broker.drain()

    op.refresh_from_db()
    assert (op.state, op.total, op.done, op.failed) == ("done", 12, 12, 0)
    created = created_posts(cpv_sim)
    assert len(created) == 12 and set(created.values()) == {1}
    assert AuditEvent.objects.filter(action="partner.consents_finished").count() == 1


def test_an_operations_work_dropped_with_its_partner_is_counted_failed_and_finishes_it(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner = synced(cpv_sim, 0)
    op = operation_of(operations.operation_start(actor=None, partner=partner, kind=operations.APPLY))
    claim = scheduling.consent_work_claim(owner="puller", size=2)
    assert claim is not None
    scheduling.consent_work_finish(
        owner="puller", partner_id=partner.pk, customer_ids=claim.customer_ids, failed_ids=[], retry_ids=[], retry_in=1
    )

    # What a batch does when it finds its partner gone from the database.
    dropped = scheduling.consent_work_drop(partner_id=partner.pk)

    op.refresh_from_db()
    assert dropped == op.total - 2 and not ConsentWork.objects.exists()
    assert (op.state, op.done, op.failed) == ("failed", op.total, dropped)

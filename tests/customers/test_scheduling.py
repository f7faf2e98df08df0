"""The fair schedule of ApplicationConsent: partners take turns whatever their size, new and repair work goes
before routine re-checks, a redelivered puller takes its own claim back, a killed worker's claim lapses to another,
nothing is lost or applied twice, the partner page shows progress and an estimated finish, and the message form
queued before the scheduler still works."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from customers import scheduling
from customers import tasks as customer_tasks
from customers.models import ConsentLane, ConsentPuller, ConsentWork, CustomerConsent
from customers.services import customers_sync
from partners.models import AuditEvent, Customer, Partner
from tests.customers.scheduled import Broker
from tests.factories import active_partner

pytestmark = pytest.mark.django_db

Kind = ConsentWork.Kind


def partner_with(customers: int, name: str) -> tuple[Partner, list[int]]:
    partner = Partner.objects.create(name=name, contact_email=f"{name}@example.com", status=Partner.Status.ACTIVE)
    now = timezone.now()
    made = [
        Customer(partner=partner, tenant_id=uuid.uuid4(), first_seen_at=now, last_seen_at=now) for _ in range(customers)
    ]
    Customer.objects.bulk_create(made)
    return partner, list(Customer.objects.filter(partner=partner).order_by("pk").values_list("pk", flat=True))


def picks(count: int) -> list[scheduling.Claim]:
    """`count` batches claimed by as many pullers, none finished."""
    claims = [scheduling.consent_work_claim(owner=str(uuid.uuid4())) for _ in range(count)]
    return [c for c in claims if c is not None]


def finish(
    claim: scheduling.Claim, owner: str, *, failed: list[int] | None = None, retry: list[int] | None = None
) -> ConsentLane:
    return scheduling.consent_work_finish(
        owner=owner, partner_id=claim.partner_id, customer_ids=claim.customer_ids, failed_ids=failed or [],
        retry_ids=retry or [], retry_in=5,
    )  # fmt: skip


def test_a_giant_and_partners_that_arrive_later_take_equal_turns() -> None:
    giant, giant_ids = partner_with(300, "giant")
    scheduling.consent_work_add(partner_id=giant.pk, customer_ids=giant_ids, kind=Kind.NEW)
    assert {c.partner_id for c in picks(5)} == {giant.pk}

    small = [partner_with(20, f"small{n}") for n in range(3)]
    for partner, ids in small:
        scheduling.consent_work_add(partner_id=partner.pk, customer_ids=ids, kind=Kind.NEW)

    # Each round hands one batch to each partner with work: the newcomers are not behind the giant's 250 customers.
    first, second, third = picks(4), picks(4), picks(4)
    everyone = {giant.pk} | {p.pk for p, _ in small}
    assert {c.partner_id for c in first} == everyone and {c.partner_id for c in second} == everyone
    # The small ones (20 customers, two batches) are all handed out; the giant has the limit to itself again.
    assert {c.partner_id for c in third} == {giant.pk}
    assert all(len(c.customer_ids) == scheduling.consent_batch_size() == 10 for c in first + second + third)
    handed = Counter(pk for c in first + second for pk in c.customer_ids)
    assert set(handed.values()) == {1}


def test_new_and_repair_work_goes_before_routine_rechecks() -> None:
    routine, routine_ids = partner_with(40, "routine")
    scheduling.consent_work_add(partner_id=routine.pk, customer_ids=routine_ids, kind=Kind.ROUTINE)
    repair, repair_ids = partner_with(10, "repair")
    scheduling.consent_work_add(partner_id=repair.pk, customer_ids=repair_ids, kind=Kind.REPAIR)
    new, new_ids = partner_with(10, "new")
    scheduling.consent_work_add(partner_id=new.pk, customer_ids=new_ids, kind=Kind.NEW)

    order = [c.partner_id for c in picks(6)]

    assert set(order[:2]) == {repair.pk, new.pk} and order[2:] == [routine.pk] * 4
    # Routine work that becomes a repair moves up with its customers.
    scheduling.consent_work_add(partner_id=routine.pk, customer_ids=routine_ids[:3], kind=Kind.REPAIR)
    assert ConsentLane.objects.get(pk=routine.pk).urgent == 3


def test_a_redelivered_puller_takes_its_own_claim_back_and_a_lapsed_claim_goes_to_another() -> None:
    partner, ids = partner_with(15, "p")
    scheduling.consent_work_add(partner_id=partner.pk, customer_ids=ids, kind=Kind.NEW)
    first = scheduling.consent_work_claim(owner="task-a")
    assert first is not None and first.customer_ids == ids[:10]

    # The same task id again (its message redelivered after a kill): the same customers.
    again = scheduling.consent_work_claim(owner="task-a")
    assert again is not None and again.customer_ids == first.customer_ids
    other = scheduling.consent_work_claim(owner="task-b")
    assert other is not None and other.customer_ids == ids[10:]
    assert scheduling.consent_work_claim(owner="task-c") is None

    # task-a is never seen again: once its claim lapses, another puller takes its customers.
    ConsentWork.objects.filter(held_by="task-a").update(held_until=timezone.now() - timedelta(seconds=1))
    taken = scheduling.consent_work_claim(owner="task-c")
    assert taken is not None and taken.customer_ids == first.customer_ids


def test_finishing_counts_done_and_failed_hands_back_retries_and_audits_the_run_once() -> None:
    partner, ids = partner_with(12, "p")
    scheduling.consent_work_add(partner_id=partner.pk, customer_ids=ids, kind=Kind.NEW)
    claim = scheduling.consent_work_claim(owner="a")
    assert claim is not None
    lane = finish(claim, "a", failed=claim.customer_ids[2:3], retry=claim.customer_ids[:2])
    assert (lane.pending, lane.done, lane.failed) == (4, 7, 1)
    # The two to retry wait for their retry time.
    held = ConsentWork.objects.filter(customer_id__in=claim.customer_ids[:2])
    assert all(w.held_by == "" and w.held_until > timezone.now() and w.attempts == 1 for w in held)
    rest = scheduling.consent_work_claim(owner="b")
    assert rest is not None and rest.customer_ids == ids[10:]
    finish(rest, "b")
    assert not AuditEvent.objects.filter(partner=partner, action="partner.consents_scheduled").exists()

    # Their retry time comes; one fails for good on its last try.
    held.update(held_until=timezone.now() - timedelta(seconds=1), attempts=scheduling.MAX_TASK_RETRIES - 1)
    last = scheduling.consent_work_claim(owner="c")
    assert last is not None and last.customer_ids == claim.customer_ids[:2]
    lane = finish(last, "c", retry=last.customer_ids[:1])
    assert (lane.pending, lane.urgent, lane.done, lane.failed) == (0, 0, 10, 2)
    assert lane.finished_at is not None and not ConsentWork.objects.exists()
    [audit] = AuditEvent.objects.filter(partner=partner, action="partner.consents_scheduled")
    assert (audit.detail["done"], audit.detail["failed"]) == (10, 2)


def test_puller_slots_are_started_as_the_work_fills_them_and_freed_when_it_runs_out() -> None:
    assert scheduling.consent_pullers_wanted() == []
    partner, ids = partner_with(25, "p")
    scheduling.consent_work_add(partner_id=partner.pk, customer_ids=ids, kind=Kind.NEW)

    started = scheduling.consent_pullers_wanted()
    assert [slot for slot, _ in started] == [0, 1, 2]
    assert scheduling.consent_pullers_wanted() == []
    (slot, owner), *_ = started
    same, successor, countdown = scheduling.consent_puller_pass(slot=slot, owner=owner, found=True)
    assert same == slot and successor and countdown == 0
    assert not scheduling.consent_puller_holds(slot=slot, owner=owner)
    assert scheduling.consent_puller_holds(slot=slot, owner=successor)

    ConsentWork.objects.all().delete()
    ConsentLane.objects.update(pending=0, urgent=0)
    assert scheduling.consent_puller_pass(slot=slot, owner=successor, found=False) == (slot, "", 0.0)
    assert ConsentPuller.objects.get(slot=slot).owner == ""


def test_a_sync_schedules_its_customers_and_the_pullers_apply_each_once(cpv_sim, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    cpv_sim.control.add_customers(str(partner.tenant_id), 20)
    broker = Broker(monkeypatch)

    customer_tasks.customers_sync.apply(kwargs={"partner_id": partner.pk}).get()
    assert ConsentLane.objects.get(pk=partner.pk).pending == 25
    results = broker.drain()

    assert CustomerConsent.objects.filter(status=CustomerConsent.Status.APPLIED).count() == 25
    assert sum(r.get("consented", 0) for r in results) == 25
    posts = cpv_sim.control.log(service="partner_center", method="POST", path="applicationconsents")
    assert Counter(p["status"] for p in posts) == {201: 25}
    assert not ConsentWork.objects.exists() and not ConsentPuller.objects.exclude(owner="").exists()
    [audit] = AuditEvent.objects.filter(partner=partner, action="partner.consents_scheduled")
    assert (audit.detail["done"], audit.detail["failed"]) == (25, 0)
    # Canaries: no secret in what the pullers were sent, returned, audited or logged.
    assert {m["task"] for m in broker.sent} >= {"consent.application_consent_next"}
    text = repr(broker.sent) + repr(results) + repr(audit.detail) + caplog.text
    assert cpv_sim.control.find_leaks(text) == []


def test_a_puller_killed_mid_batch_is_redelivered_and_applies_none_twice(cpv_sim, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    cpv_sim.control.add_customers(str(partner.tenant_id), 7)
    customers_sync(partner_id=partner.pk)
    broker = Broker(monkeypatch)
    customer_tasks.application_consents_queue(partner_id=partner.pk, correlation_id=str(uuid.uuid4()))
    broker.puller_killed_after(3)

    # Its message comes back (the same id): it takes its claim back, and the chain goes on to the end.
    broker.drain()

    posts = cpv_sim.control.log(service="partner_center", method="POST", path="applicationconsents")
    created = Counter(p["path"] for p in posts if p["status"] == 201)
    assert len(created) == 12 and set(created.values()) == {1}
    assert CustomerConsent.objects.filter(status=CustomerConsent.Status.APPLIED).count() == 12
    lane = ConsentLane.objects.get(pk=partner.pk)
    assert (lane.pending, lane.done, lane.failed) == (0, 12, 0)


def test_a_customer_another_worker_holds_goes_back_and_is_applied_should_that_worker_die(cpv_sim, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    customers_sync(partner_id=partner.pk)
    broker = Broker(monkeypatch)
    held = Customer.objects.filter(partner=partner).order_by("pk").first()
    assert held is not None
    # Another worker (an older form of batch, or a staff action) claimed this customer and died.
    state, _ = CustomerConsent.objects.get_or_create(customer=held)
    CustomerConsent.objects.filter(pk=state.pk).update(
        lease_until=timezone.now() + timedelta(minutes=5), lease_owner="a-worker-since-killed"
    )
    customer_tasks.application_consents_queue(partner_id=partner.pk, correlation_id=str(uuid.uuid4()))

    broker.drain()

    # Not counted done: it waits for that claim to lapse, and nothing else of the partner's is held back.
    work = ConsentWork.objects.get(customer_id=held.pk)
    assert work.held_by == "" and work.held_until > timezone.now() + timedelta(minutes=4) and work.attempts == 0
    lane = ConsentLane.objects.get(pk=partner.pk)
    assert lane.pending == 1 and lane.failed == 0
    assert CustomerConsent.objects.get(pk=state.pk).status != CustomerConsent.Status.APPLIED
    assert CustomerConsent.objects.exclude(pk=state.pk).filter(status=CustomerConsent.Status.APPLIED).count() == (
        lane.done
    )

    # Both claims lapse; the schedule's next run applies it.
    lapsed = timezone.now() - timedelta(seconds=1)
    CustomerConsent.objects.filter(pk=state.pk).update(lease_until=lapsed)
    ConsentWork.objects.filter(pk=work.pk).update(held_until=lapsed)
    broker.wait_over()

    assert CustomerConsent.objects.get(pk=state.pk).status == CustomerConsent.Status.APPLIED
    assert not ConsentWork.objects.exists() and ConsentLane.objects.get(pk=partner.pk).pending == 0


def test_a_message_in_the_form_before_the_scheduler_is_still_applied(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    customers_sync(partner_id=partner.pk)
    ids = list(Customer.objects.filter(partner=partner).values_list("pk", flat=True))

    result = customer_tasks.application_consent_batch.apply(
        kwargs={"partner_id": partner.pk, "customer_ids": ids, "correlation_id": "c0ffee00-0000-4000-8000-000000000002"}
    ).get()

    assert result["outcome"] == "done" and result["consented"] == len(ids)
    assert CustomerConsent.objects.filter(status=CustomerConsent.Status.APPLIED).count() == len(ids)


def test_the_partner_page_shows_progress_and_an_estimated_finish(staff_client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_PC_REQUESTS_PER_SECOND = 50
    partner, ids = partner_with(3000, "busy")
    other, other_ids = partner_with(20, "other")
    scheduling.consent_work_add(partner_id=partner.pk, customer_ids=ids, kind=Kind.NEW)
    scheduling.consent_work_add(partner_id=other.pk, customer_ids=other_ids, kind=Kind.NEW)
    claim = scheduling.consent_work_claim(owner="a")
    assert claim is not None and claim.partner_id == partner.pk
    finish(claim, "a", failed=claim.customer_ids[:2])

    page = staff_client.get(f"/partners/{partner.code}/").content.decode()

    # 2,990 pending at half the limit (two partners with work): about 120 s.
    assert "ApplicationConsent in progress: 8 done, 2990 pending, 2 failed" in page
    assert "(25.0 a second) it should finish in about 1\xa0minute" in page or "about 2\xa0minutes" in page


def test_the_schedule_takes_its_batch_and_puller_counts_from_the_settings(settings) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_CONSENT_BATCH, settings.CPV_CONSENT_PULLERS = 4, 2
    partner, ids = partner_with(30, "p")
    scheduling.consent_work_add(partner_id=partner.pk, customer_ids=ids, kind=Kind.NEW)

    started = scheduling.consent_pullers_wanted()
    claim = scheduling.consent_work_claim(owner=started[0][1])

    assert [slot for slot, _ in started] == [0, 1]
    assert claim is not None and claim.customer_ids == ids[:4]


def test_a_slot_beyond_a_lowered_puller_count_hands_its_successor_to_an_idle_slot_within_it(settings) -> None:  # type: ignore[no-untyped-def]
    partner, ids = partner_with(100, "p")
    scheduling.consent_work_add(partner_id=partner.pk, customer_ids=ids, kind=Kind.NEW)
    started = scheduling.consent_pullers_wanted()
    assert [slot for slot, _ in started] == list(range(8))
    # Lowered to two while all eight run; slot 1's chain ends meanwhile.
    settings.CPV_CONSENT_PULLERS = 2
    ConsentPuller.objects.filter(slot=1).update(owner="", held_until=None)
    slot, owner = started[5]

    moved, successor, countdown = scheduling.consent_puller_pass(slot=slot, owner=owner, found=True)

    assert (moved, countdown) == (1, 0.0) and scheduling.consent_puller_holds(slot=1, owner=successor)
    assert ConsentPuller.objects.get(slot=5).owner == ""
    # No idle slot within the count: the next one beyond it simply ends.
    slot, owner = started[6]
    assert scheduling.consent_puller_pass(slot=slot, owner=owner, found=True) == (6, "", 0.0)
    assert ConsentPuller.objects.get(slot=6).owner == ""

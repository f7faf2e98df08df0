"""A worker killed again and again while it renews tokens and applies ApplicationConsent."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from customers import services as customers
from customers.models import CustomerConsent
from customers.tasks import VERIFY_AFTER_CONSENT
from partners.models import Customer
from simulator.tokens import fingerprint
from tests.conftest import wait_until
from tests.faults.conftest import (
    active_partners,
    broker_idle,
    celery_client,
    dashboard_pages,
    live_fingerprints,
    redemptions,
    restore_unacknowledged,
    shared_database_url,
    table_held,
    viewer_client,
    worker_env,
)
from tokens.models import PartnerToken, TokenEvent
from tokens.vault import get_vault

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

RENEWING = 6
CUSTOMERS = 30
KILLS = 6
VISIBILITY = 10


def test_a_worker_killed_repeatedly_loses_no_task_and_applies_none_twice(fsim, redis_url, fleet) -> None:  # type: ignore[no-untyped-def]
    # Partner 0 is not due and has customers to consent; partners 1..6 are due for renewal.
    partners = active_partners(fsim, RENEWING + 1)
    consenting, renewing = partners[0], partners[1:]
    PartnerToken.objects.filter(partner=consenting).update(last_renewed_at=PartnerToken.objects.get(
        partner=consenting).obtained_at)  # fmt: skip
    fsim.control.add_customers(str(consenting.tenant_id), CUSTOMERS - 4)
    customers.customers_sync(partner_id=consenting.pk)
    assert Customer.objects.filter(partner=consenting).count() == CUSTOMERS
    before = {p.pk: PartnerToken.objects.get(partner=p).generation for p in partners}

    # A short visibility timeout: kombu looks for messages a dead worker held when a worker starts (and every
    # 100 s after), and hands back those unacknowledged for longer than this.
    env = worker_env(fsim, database_url=shared_database_url(), broker_url=redis_url, visibility_timeout=VISIBILITY)
    worker = fleet(env, pool="prefork", concurrency=2)
    app = celery_client(redis_url)
    # Every call takes a while, so that a kill lands in the middle of one.
    slow = [
        fsim.control.inject_fault("entra", path="/token$", latency=1.0, times=None),
        fsim.control.inject_fault("partner_center", path="applicationconsents", latency=0.3, times=None),
    ]
    app.send_task("consent.tokens_renew_sweep", kwargs={"spread": 5}, queue=worker.queue)
    wait_until(
        lambda: PartnerToken.objects.filter(renewal_queued_at__isnull=False).count() == RENEWING,
        timeout=30,
        what="the sweep to queue the renewals",
    )
    app.send_task("consent.customers_sync", kwargs={"partner_id": consenting.pk}, queue=worker.queue)

    # Kill a pool process (the worker hands its message back), then the whole worker (the broker hands its
    # messages back after the visibility timeout), and again, and start it again each time.
    for kill in range(KILLS):
        time.sleep(1.5)
        if kill % 2 == 0:
            assert worker.kill_child(), "no pool process to kill"
        else:
            worker.kill()
            worker.start()
    for fault in slow:
        fsim.control.remove_fault(fault)

    def done() -> bool:
        # The messages the whole worker held come back once unacknowledged for the visibility timeout.
        restore_unacknowledged(redis_url, visibility_timeout=VISIBILITY)
        applied = CustomerConsent.objects.filter(
            customer__partner=consenting, status=CustomerConsent.Status.APPLIED
        ).count()
        renewed = PartnerToken.objects.filter(partner__in=renewing, generation=2).count()
        return applied == CUSTOMERS and renewed == RENEWING and broker_idle(redis_url, worker.queue)

    # The queue is idle only once the verification each ApplicationConsent batch queues has run, a countdown of
    # VERIFY_AFTER_CONSENT after the batch.
    wait_until(done, timeout=VISIBILITY + VERIFY_AFTER_CONSENT + 60,
               what="every renewal and ApplicationConsent, and no message left", interval=1)  # fmt: skip
    assert worker.kills == KILLS

    # Nothing lost, nothing applied twice: each due partner renewed once, each customer consented once.
    live = live_fingerprints(fsim)
    for partner in partners:
        pointer = PartnerToken.objects.get(partner=partner)
        assert pointer.generation == before[partner.pk] + (partner in renewing), partner
        assert TokenEvent.objects.filter(partner=partner, kind=TokenEvent.Kind.RENEWED).count() == (partner in renewing)
        token = get_vault().read(name=pointer.secret_name, version=pointer.current_version).value.reveal()
        assert fingerprint(token) in live
    posts = fsim.control.log(service="partner_center", method="POST", path="applicationconsents", limit=5000)
    created = Counter(p["path"] for p in posts if p["status"] == 201)
    assert len(created) == CUSTOMERS and set(created.values()) == {1}, created
    consents = fsim.control.consents()
    tenants = [str(t) for t in Customer.objects.filter(partner=consenting).values_list("tenant_id", flat=True)]
    assert all(list(consents.get(t, {})) == [fsim.env["CPV_CLIENT_ID"]] for t in tenants)

    # Whether a kill lands on work in flight depends on timing (a pool process may be between tasks); the
    # outcome above must hold either way, and the pages below are checked for the renewals it did cut off.
    # A renewal whose worker died after redeeming redeemed twice; its partner's page says what happened.
    twice = [p for p in renewing if redemptions(fsim, partners).get(p.pk, 0) > 1]
    pages = dashboard_pages(viewer_client(), twice)
    for partner in twice:
        assert "An earlier attempt stopped before it finished" in pages[str(partner.code)], partner
    assert "Healthy" in pages["overview"]


def test_a_batch_killed_after_redeeming_two_partners_in_one_transaction_says_so_on_both_pages(  # type: ignore[no-untyped-def]
    fsim, redis_url, fleet
) -> None:
    partners = active_partners(fsim, 2)
    env = worker_env(fsim, database_url=shared_database_url(), broker_url=redis_url, visibility_timeout=VISIBILITY)
    worker = fleet(env)
    app = celery_client(redis_url)

    # A batch writes its events once, after every redemption of its transaction: with their table held, it
    # redeems both partners and waits there, its transaction open, until the kill rolls both renewals back.
    with table_held("consent_tokenevent"):
        app.send_task("consent.tokens_renew_batch", kwargs={"partner_ids": [p.pk for p in partners]},
                      queue=worker.queue)  # fmt: skip
        wait_until(lambda: len(redemptions(fsim, partners)) == 2, timeout=60, what="both redemptions")
        worker.kill()
    worker.start()

    def renewed() -> bool:
        # The broker hands the message back once it has been unacknowledged for the visibility timeout.
        restore_unacknowledged(redis_url, visibility_timeout=VISIBILITY)
        return PartnerToken.objects.filter(partner__in=partners, generation=2).count() == 2

    wait_until(renewed, timeout=VISIBILITY + 60, what="the batch to come back and renew both partners", interval=1)

    assert redemptions(fsim, partners) == {partners[0].pk: 2, partners[1].pk: 2}
    pages = dashboard_pages(viewer_client(), partners)
    for partner in partners:
        assert "An earlier attempt stopped before it finished" in pages[str(partner.code)], partner

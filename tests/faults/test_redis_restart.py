"""Redis (broker, results, throttle) restarted with renewals and ApplicationConsent tasks queued and running."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

import pytest
from django.db.models import F
from django.utils import timezone

from customers import services as customers
from customers.models import ConsentPuller, ConsentWork, CustomerConsent
from partners.models import Customer
from simulator.tokens import fingerprint
from tests.conftest import wait_until
from tests.faults.conftest import (
    active_partners,
    celery_client,
    dashboard_pages,
    live_fingerprints,
    restore_unacknowledged,
    shared_database_url,
    viewer_client,
    worker_env,
)
from tokens.models import PartnerToken, TokenEvent

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

RENEWING = 5
CUSTOMERS = 30
VISIBILITY = 10


@pytest.mark.parametrize("persistent", [True, False], ids=["append-only file", "no persistence"])
def test_redis_restarted_with_tasks_queued_loses_none_and_applies_none_twice(  # type: ignore[no-untyped-def]
    fsim, private_redis, fleet, persistent
) -> None:
    from tokens.vault import get_vault

    redis = private_redis(persistent=persistent)
    partners = active_partners(fsim, RENEWING + 1)
    consenting, renewing = partners[0], partners[1:]
    PartnerToken.objects.filter(partner=consenting).update(last_renewed_at=F("obtained_at"))
    fsim.control.add_customers(str(consenting.tenant_id), CUSTOMERS - 4)
    customers.customers_sync(partner_id=consenting.pk)
    before = {p.pk: PartnerToken.objects.get(partner=p).generation for p in partners}

    env = worker_env(fsim, database_url=shared_database_url(), broker_url=redis.url, visibility_timeout=VISIBILITY)
    worker = fleet(env, pool="prefork", concurrency=2)
    app = celery_client(redis.url)
    slow = [
        fsim.control.inject_fault("entra", path="/token$", latency=1.0, times=None),
        fsim.control.inject_fault("partner_center", path="applicationconsents", latency=0.3, times=None),
    ]
    app.send_task("consent.tokens_renew_sweep", kwargs={"spread": 5}, queue=worker.queue)
    app.send_task("consent.customers_sync", kwargs={"partner_id": consenting.pk}, queue=worker.queue)

    def applied() -> int:
        return CustomerConsent.objects.filter(
            customer__partner=consenting, status=CustomerConsent.Status.APPLIED
        ).count()

    wait_until(lambda: applied() >= 3, timeout=60, what="the first ApplicationConsents")
    redis.stop()
    time.sleep(3)
    redis.start()
    for fault in slow:
        fsim.control.remove_fault(fault)
    time.sleep(VISIBILITY + 1)
    restore_unacknowledged(redis.url, visibility_timeout=VISIBILITY)
    if not persistent:
        # Redis came back empty: what was queued is gone, and the beat's sweeps queue it again. An hour on
        # (the test moves the times back) the renewal sweep and the daily customer sweep run.
        wait_until(lambda: worker.alive and "Connected to redis" in worker.log().split("ready.")[-1], timeout=30,
                   what="the worker to reconnect")  # fmt: skip
        PartnerToken.objects.update(renewal_queued_at=F("renewal_queued_at") - timedelta(hours=1))
        CustomerConsent.objects.exclude(lease_until=None).update(lease_until=timezone.now() - timedelta(minutes=1))
        # The lost pullers' claims and slots have lapsed an hour on as well.
        ConsentWork.objects.exclude(held_until=None).update(held_until=timezone.now() - timedelta(minutes=1))
        ConsentPuller.objects.exclude(held_until=None).update(held_until=timezone.now() - timedelta(minutes=1))
        app.send_task("consent.tokens_renew_sweep", kwargs={"spread": 2}, queue=worker.queue)
        app.send_task("consent.customers_sync_sweep", queue=worker.queue)

    def done() -> bool:
        renewed = PartnerToken.objects.filter(partner__in=renewing, generation=2).count()
        return applied() == CUSTOMERS and renewed == RENEWING

    try:
        wait_until(done, timeout=60, what="every renewal and every ApplicationConsent", interval=1)
    except AssertionError as exc:
        generations = sorted(PartnerToken.objects.filter(partner__in=renewing).values_list("generation", flat=True))
        states = Counter(CustomerConsent.objects.filter(customer__partner=consenting).values_list("status", flat=True))
        raise AssertionError(f"{exc}: generations {generations}, ApplicationConsent states {dict(states)}") from None
    time.sleep(2)

    live = live_fingerprints(fsim)
    for partner in partners:
        pointer = PartnerToken.objects.get(partner=partner)
        assert pointer.generation == before[partner.pk] + (partner in renewing), partner
        # Renewed by its task, or rotated by an access-token request of the customer sync: once either way.
        moved = TokenEvent.objects.filter(partner=partner, kind__in=[TokenEvent.Kind.RENEWED, TokenEvent.Kind.ROTATED])
        assert moved.count() == (partner in renewing), partner
        token = get_vault().read(name=pointer.secret_name, version=pointer.current_version).value.reveal()
        assert fingerprint(token) in live
    # (The daily sweep also syncs the other partners and consents in their customers: each of those once too.)
    tenants = [str(t) for t in Customer.objects.filter(partner=consenting).values_list("tenant_id", flat=True)]
    posts = fsim.control.log(service="partner_center", method="POST", path="applicationconsents", limit=5000)
    created = Counter(p["path"] for p in posts if p["status"] == 201)
    assert set(created.values()) == {1}, created
    assert sum(1 for path in created if any(t in path for t in tenants)) == CUSTOMERS
    consents = fsim.control.consents()
    assert all(list(consents.get(t, {})) == [fsim.env["CPV_CLIENT_ID"]] for t in tenants)

    pages = dashboard_pages(viewer_client(), partners)
    assert "Token renewal failing" not in pages["overview"]
    assert f"{CUSTOMERS} of {CUSTOMERS} have the vendor" in pages[str(consenting.code)]

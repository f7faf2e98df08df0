"""ApplicationConsent on real Celery worker processes, Redis, PostgreSQL and the simulator: 1,000 customers under
Partner Center's throttle, and no token in Redis or the workers' logs."""

from __future__ import annotations

import bisect
import os
from collections import Counter

import pytest
import redis

from customers.models import CustomerConsent
from microsoft import throttle
from partners.models import Customer
from tests.conftest import wait_until
from tests.factories import active_partner
from tests.workers import celery_client, worker_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.slow, pytest.mark.postgres]


def test_application_consent_across_1000_customers_stays_under_the_throttle_and_leaks_nothing(  # type: ignore[no-untyped-def]
    cpv_sim, redis_url, celery_worker_process, settings
) -> None:
    partner = active_partner(cpv_sim)
    tenant = str(partner.tenant_id)
    cpv_sim.control.add_customers(tenant, 995)
    env = worker_env(cpv_sim, redis_url)
    workers = [celery_worker_process(**env) for _ in range(4)]
    app = celery_client(redis_url)
    # One customer has the consent already: that is success, not an error.
    existing = cpv_sim.control.world()["partners"][0]["customers"][0]["tenant_id"]
    cpv_sim.control.add_consent(existing, application_id=env["CPV_CLIENT_ID"])

    app.send_task("consent.customers_sync", kwargs={"partner_id": partner.pk}, queue=workers[0].queue).get(timeout=120)
    # The sync started the scheduler's pullers on its own queue; the other workers help with that queue too.
    for worker in workers[1:]:
        app.control.add_consumer(workers[0].queue, destination=[f"{worker.queue}@{os.uname().nodename}"], reply=True)

    def done() -> bool:
        return CustomerConsent.objects.filter(status=CustomerConsent.Status.APPLIED).count() == 1000

    wait_until(done, timeout=240, what="ApplicationConsent in all 1,000 customers", interval=1)

    assert Customer.objects.filter(partner=partner).count() == 1000
    consents = cpv_sim.control.consents()
    tenants = {str(t) for t in Customer.objects.values_list("tenant_id", flat=True)}
    assert all(list(consents.get(t, {})) == [env["CPV_CLIENT_ID"]] for t in tenants)
    posts = cpv_sim.control.log(service="partner_center", method="POST", path="applicationconsents", limit=5000)
    statuses = Counter(p["status"] for p in posts)
    # Never over Partner Center's 50 per second: it answered no 429.
    assert statuses == {201: 999, 409: 1}
    # And what the shared limiter promises, on the clock it keeps: every request Partner Center received went out
    # in a slot it granted, and no second of slots holds more than HEADROOM under the 50. (Arrivals are Partner
    # Center's to judge, as it did above: time on the way, longer on a busy machine, can bring 51 requests sent
    # over 1.02 s into one second of arrivals.)
    settings.CPV_THROTTLE_URL = redis_url
    limiter = throttle.limiter_for(env["CPV_CLIENT_ID"])
    assert isinstance(limiter, throttle.RedisLimiter)
    sent = {str(p["request_headers"]["MS-RequestId"]) for p in posts}
    slots = [slot for slot in limiter.slots() if slot.request_id in sent]
    assert {slot.request_id for slot in slots} == sent
    times = sorted(slot.at_ms for slot in slots)
    busiest = max(bisect.bisect_left(times, start + 1000) - i for i, start in enumerate(times))
    assert busiest <= throttle.PARTNER_CENTER_LIMIT - throttle.HEADROOM, busiest
    assert len({p["request_headers"]["MS-CorrelationId"] for p in posts}) == 1

    # Canaries: no token in any Redis key (messages, results) or worker log.
    store = redis.Redis.from_url(redis_url)
    dump = []
    for name in store.scan_iter(count=1000):
        kind = store.type(name).decode()
        if kind == "string":
            dump.append(repr(store.get(name)))
        elif kind == "list":
            dump.append(repr(store.lrange(name, 0, -1)))
        elif kind == "hash":
            dump.append(repr(store.hgetall(name)))
        elif kind == "zset":
            dump.append(repr(store.zrange(name, 0, -1)))
    text = "\n".join(dump) + "\n".join(w.log() for w in workers)
    assert "consent.application_consent_next" in text
    assert cpv_sim.control.find_leaks(text) == []

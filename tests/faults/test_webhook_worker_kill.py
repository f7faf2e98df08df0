"""A webhook delivery whose worker is killed in the middle of its POST: delivered in the end, with the same
webhook-id, and nothing of a rolled-back transaction ever sent."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from events.models import Attempt, Delivery, Event, EventType
from events.services import event_record, subscription_create
from tests.conftest import wait_until
from tests.events.receiver import run_receiver
from tests.faults.conftest import (
    broker_idle,
    celery_client,
    restore_unacknowledged,
    shared_database_url,
    worker_env,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

VISIBILITY = 10


def test_a_committed_event_is_delivered_once_across_a_worker_kill_and_a_rolled_back_one_never(  # type: ignore[no-untyped-def]
    fsim, redis_url, fleet, django_capture_on_commit_callbacks
) -> None:
    receiver = next(gen := run_receiver())
    try:
        subscription, secret = subscription_create(
            actor=None, name="PSA", url=receiver.url, event_types=list(EventType.values)
        )
        with django_capture_on_commit_callbacks(execute=False):
            with pytest.raises(RuntimeError), transaction.atomic():
                event_record(type=EventType.CUSTOMER_DRIFTED, detail={"which": "rolled back"})
                raise RuntimeError("the change failed")
            with transaction.atomic():
                event = event_record(type=EventType.CUSTOMER_VERIFIED, detail={"which": "committed"})
        assert Event.objects.count() == 1
        delivery = Delivery.objects.get()

        # The receiver holds the first POST long enough for the worker to die in the middle of it.
        receiver.delay = 4.0
        env = worker_env(fsim, database_url=shared_database_url(), broker_url=redis_url,
                         visibility_timeout=VISIBILITY, DJANGO_SECRET_KEY=settings.SECRET_KEY)  # fmt: skip
        worker = fleet(env)
        app = celery_client(redis_url)
        app.send_task("events.deliveries_send", kwargs={"delivery_ids": [delivery.pk]}, queue=worker.queue)
        wait_until(lambda: len(receiver.got) == 1, timeout=30, what="the first POST to arrive")
        worker.kill()
        receiver.delay = 0.0

        in_flight = Delivery.objects.get()
        assert in_flight.state == Delivery.State.PENDING and in_flight.lease_until is not None
        assert Attempt.objects.get().status_code is None
        # The dead worker's lease lapses (LEASE, a minute): the test moves it to its end instead of waiting.
        Delivery.objects.update(lease_until=timezone.now() - timedelta(seconds=1))
        worker.start()
        app.send_task("events.deliveries_sweep", queue=worker.queue)

        def delivered() -> bool:
            restore_unacknowledged(redis_url, visibility_timeout=VISIBILITY)
            return Delivery.objects.get().state == Delivery.State.DELIVERED and broker_idle(redis_url, worker.queue)

        wait_until(delivered, timeout=VISIBILITY + 60, what="the delivery, and no message left", interval=1)
        # The message the killed worker held comes back too: it finds the delivery done and posts nothing.
        time.sleep(VISIBILITY + 1)
        restore_unacknowledged(redis_url, visibility_timeout=VISIBILITY)
        wait_until(lambda: broker_idle(redis_url, worker.queue), timeout=30, what="the queue to drain")

        # Twice on the wire with one webhook-id (the first cut off by the kill): the receiver keeps one.
        assert receiver.ids() == [event.webhook_id, event.webhook_id]
        for got in receiver.got:
            assert Webhook(secret).verify(got.body, got.headers)["data"] == {"which": "committed"}
        row = Delivery.objects.get()
        assert (row.state, row.attempts, row.subscription) == (Delivery.State.DELIVERED, 2, subscription)
        attempts = list(Attempt.objects.order_by("number").values_list("number", "status_code"))
        assert attempts == [(1, None), (2, 200)]
    finally:
        gen.close()

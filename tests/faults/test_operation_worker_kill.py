"""A bulk staff ApplicationConsent operation on a real worker, killed in the middle of a batch: the fair schedule
finishes each partner's operation, every customer applied once and counted once by its operation."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest

from customers import services as customers
from customers import tasks as customer_tasks
from customers.models import ConsentWork, CustomerConsent
from dashboard import operations
from partners.models import AuditEvent, Customer, Operation
from tests.conftest import wait_until
from tests.faults.conftest import (
    active_partners,
    celery_client,
    restore_unacknowledged,
    shared_database_url,
    worker_env,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

VISIBILITY = 10
# Customers each partner gets beyond the fault simulator's four.
MORE = 16


def test_a_bulk_operations_worker_killed_mid_batch_finishes_each_operation_counting_each_customer_once(  # type: ignore[no-untyped-def]
    fsim, redis_url, fleet, monkeypatch
) -> None:
    partners = active_partners(fsim, 2)
    for partner in partners:
        fsim.control.add_customers(str(partner.tenant_id), MORE)
        customers.customers_sync(partner_id=partner.pk)
    env = worker_env(fsim, database_url=shared_database_url(), broker_url=redis_url, visibility_timeout=VISIBILITY)
    worker = fleet(env)
    app = celery_client(redis_url)

    def publish(kwargs: dict[str, Any], task_id: str | None = None, **options: Any) -> None:
        # The web tier publishes to the workers' broker; here, to this worker's queue.
        app.send_task("consent.application_consent_next", kwargs=kwargs, task_id=task_id, queue=worker.queue)

    monkeypatch.setattr(customer_tasks.application_consent_next, "apply_async", publish)
    # Every call takes a while, so that the kill lands in the middle of a batch.
    slow = fsim.control.inject_fault("partner_center", path="applicationconsents", latency=0.3, times=None)
    bulk = uuid.uuid4()
    codes = [
        operations.operation_start(actor=None, partner=p, kind=operations.APPLY, bulk=bulk).detail["operation"]
        for p in partners
    ]
    applied = CustomerConsent.objects.filter(status=CustomerConsent.Status.APPLIED)
    wait_until(lambda: applied.count() >= 3, timeout=60, what="the first batch under way", interval=0.1)
    worker.kill()
    # Killed holding a batch, some of its customers applied and some not.
    assert ConsentWork.objects.exclude(held_by="").exists() and applied.count() < 2 * (MORE + 4)
    fsim.control.remove_fault(slow)
    worker.start()

    def finished() -> bool:
        # The messages the dead worker held come back once unacknowledged for the visibility timeout.
        restore_unacknowledged(redis_url, visibility_timeout=VISIBILITY)
        return Operation.objects.filter(code__in=codes, finished_at__isnull=False).count() == len(codes)

    wait_until(finished, timeout=VISIBILITY + 120, what="both operations to finish", interval=1)

    assert worker.kills == 1
    for op in Operation.objects.filter(code__in=codes):
        assert (op.state, op.total, op.done, op.failed) == ("done", MORE + 4, MORE + 4, 0), op
        assert op.message == f"{MORE + 4} applied, 0 failed."
    posts = fsim.control.log(service="partner_center", method="POST", path="applicationconsents", limit=5000)
    created = Counter(p["path"] for p in posts if p["status"] == 201)
    assert len(created) == 2 * (MORE + 4) and set(created.values()) == {1}, created
    assert applied.count() == Customer.objects.filter(partner__in=partners).count() == 2 * (MORE + 4)
    assert not ConsentWork.objects.exists()
    finished_rows = AuditEvent.objects.filter(action="partner.consents_finished")
    assert sorted(e.detail["operation"] for e in finished_rows) == sorted(codes)

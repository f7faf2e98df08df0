"""The verification after ApplicationConsent runs on a queue of its own (CPV_VERIFY_QUEUE), so Partner Center's
budget never waits behind Graph reads: a scheduled batch queues it there (beside a dedicated queue, that queue's own
verification queue), and a worker started as the demo and compose.yaml start theirs consumes it."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest
import yaml
from celery import Celery
from django.conf import settings

from cpv import demo
from cpv.config import load_config
from cpv.task_kit import verify_queue_of
from customers import tasks as customer_tasks
from customers.models import CustomerConsent
from customers.services import customers_sync
from tests.conftest import ROOT, WorkerProcess, project_env, wait_until
from tests.customers.scheduled import Broker
from tests.factories import active_partner

COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())


def _pullers_run(broker: Broker, *, queue: str | None) -> None:
    """Run the queued pullers in order, each as if delivered from `queue`."""
    while broker.messages:
        task, kwargs, task_id = broker.messages.pop(0)
        if task is customer_tasks.application_consent_next:
            task.apply(kwargs=kwargs, task_id=task_id, routing_key=queue).get()


@pytest.mark.django_db
@pytest.mark.parametrize(("queue", "expected"), [(None, "verify"), ("bench-1a2b", "bench-1a2b.verify")])
def test_a_scheduled_batch_queues_its_verification_on_the_verify_queue(cpv_sim, monkeypatch, queue, expected) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    cpv_sim.control.add_customers(str(partner.tenant_id), 15)
    customers_sync(partner_id=partner.pk)
    broker = Broker(monkeypatch)
    customer_tasks.application_consents_queue(partner_id=partner.pk, correlation_id=str(uuid.uuid4()), queue=queue)

    _pullers_run(broker, queue=queue)

    assert CustomerConsent.objects.filter(status=CustomerConsent.Status.APPLIED).count() == 20
    verifications = [m for m in broker.sent if m["task"] == "consent.consents_verify"]
    # Every customer consented is verified later (none dropped), each batch's reads on the verification's queue.
    assert sorted(i for m in verifications for i in m["kwargs"]["customer_ids"]) == sorted(
        CustomerConsent.objects.values_list("customer_id", flat=True)
    )
    assert {m["options"]["queue"] for m in verifications} == {expected}
    assert {m["options"]["countdown"] for m in verifications} == {customer_tasks.VERIFY_AFTER_CONSENT}
    # The pullers' chain stays on its own queue.
    successors = [
        m for m in broker.sent if m["task"] == "consent.application_consent_next" and "countdown" in m["options"]
    ]
    assert successors and {m["options"].get("queue") for m in successors} == {queue}


def test_a_verification_queue_is_named_beside_the_queue_it_follows(settings) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_VERIFY_QUEUE = "graph-reads"

    assert verify_queue_of(None) == "graph-reads"
    assert verify_queue_of("celery") == "graph-reads"
    assert verify_queue_of("bench-9") == "bench-9.graph-reads"
    assert verify_queue_of("bench-9.graph-reads") == "bench-9.graph-reads"


def test_the_verification_is_routed_to_its_queue_which_the_settings_declare_beside_the_default() -> None:
    assert settings.CELERY_TASK_ROUTES["consent.consents_verify"] == {"queue": settings.CPV_VERIFY_QUEUE}
    assert [q.name for q in settings.CELERY_TASK_QUEUES] == ["celery", settings.CPV_VERIFY_QUEUE]


def _client(tmp_path: Path) -> Celery:
    """A client of the embedded broker in `tmp_path`, routing as the product's settings route."""
    config = load_config({"CPV_VAR_DIR": str(tmp_path)}, base_dir=ROOT)
    client = Celery("tests", broker=config.broker_url, backend=config.result_backend, set_as_current=False)
    client.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        broker_transport_options=config.broker_transport_options,
        task_queues=settings.CELERY_TASK_QUEUES,
        task_routes=settings.CELERY_TASK_ROUTES,
    )
    return client


def _compose_worker() -> list[str]:
    command = COMPOSE["services"]["worker"]["command"]
    assert command[0] == "celery" and "-Q" not in command
    return [sys.executable, "-m", *command, "--hostname", f"compose-{uuid.uuid4().hex[:8]}@%h"]


@pytest.mark.slow
@pytest.mark.parametrize("started_as", ["demo", "compose"])
def test_a_worker_started_as_the_demo_and_compose_start_it_consumes_the_verify_queue(tmp_path, started_as) -> None:  # type: ignore[no-untyped-def]
    if started_as == "demo":
        command = demo.worker_command(sys.executable, hostname=f"demo-{uuid.uuid4().hex[:8]}@%h")
    else:
        command = _compose_worker()
    # The embedded broker in a folder of this test's own: nothing else publishes there.
    env = project_env(CPV_VAR_DIR=str(tmp_path), CELERY_BROKER_URL="", CELERY_RESULT_BACKEND="")
    worker = WorkerProcess(env, "", tmp_path / "worker.log", command=command)
    try:
        worker.wait_ready()
        client = _client(tmp_path)
        assert client.amqp.router.route({}, "consent.consents_verify")["queue"].name == settings.CPV_VERIFY_QUEUE

        result = client.send_task("consent.consents_verify", kwargs={"customer_ids": []})

        assert result.get(timeout=90)["outcome"] == "done"
        wait_until(lambda: "consent.consents_verify" in worker.log(), timeout=10, what="the worker's log line")
    finally:
        worker.stop()

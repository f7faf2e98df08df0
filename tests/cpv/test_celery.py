"""The Celery app's settings, and a task run by a real worker process on Redis and on the embedded broker."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from celery import Celery

from cpv.celery import app
from cpv.config import load_config
from tests.conftest import ROOT


def test_the_app_speaks_json_only_with_limits_below_the_visibility_timeout() -> None:
    conf = app.conf

    assert conf.task_serializer == "json"
    assert conf.result_serializer == "json"
    assert conf.accept_content == ["json"]
    assert conf.worker_hijack_root_logger is False
    assert conf.task_soft_time_limit < conf.task_time_limit
    visibility = load_config({}, base_dir=ROOT).visibility_timeout
    assert conf.task_time_limit < visibility
    assert conf.beat_schedule is not None


def test_tasks_are_autodiscovered() -> None:
    app.loader.import_default_modules()
    app.autodiscover_tasks(force=True)

    assert "cpv.ping" in app.tasks


def _client(broker: str, backend: str | None, transport: dict[str, object] | None = None) -> Celery:
    client = Celery("tests", broker=broker, backend=backend, set_as_current=False)
    client.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        broker_transport_options=transport or {},
    )
    return client


@pytest.mark.redis
@pytest.mark.slow
def test_a_task_runs_on_a_real_worker_against_redis(celery_worker_process, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    worker = celery_worker_process(CELERY_BROKER_URL=redis_url, CELERY_RESULT_BACKEND=redis_url)
    client = _client(redis_url, redis_url)

    result = client.send_task("cpv.ping", args=["over redis"], queue=worker.queue)

    assert result.get(timeout=60) == "over redis"
    assert "cpv.ping" in worker.log()


@pytest.mark.slow
def test_a_task_runs_on_a_real_worker_against_the_embedded_broker(celery_worker_process, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # The embedded defaults: no broker variables at all, only a folder of the worker's own.
    worker = celery_worker_process(CPV_VAR_DIR=str(tmp_path), CELERY_BROKER_URL="", CELERY_RESULT_BACKEND="")
    config = load_config({"CPV_VAR_DIR": str(tmp_path)}, base_dir=ROOT)
    assert config.broker_url == "filesystem://"
    client = _client(config.broker_url, config.result_backend, config.broker_transport_options)

    result = client.send_task("cpv.ping", args=["over the filesystem"], queue=worker.queue)

    assert result.get(timeout=60) == "over the filesystem"


def test_work_the_suite_publishes_stays_out_of_the_demos_var_folder(settings) -> None:  # type: ignore[no-untyped-def]
    # In-process code publishes to the embedded broker: into the project's var/, the next `make demo` would run it.
    from consent.tasks import flows_expire

    var = Path(settings.CPV_VAR_DIR).resolve()
    assert var != (ROOT / "var").resolve()
    assert var.parent == (ROOT / "test-output").resolve()
    assert app.conf.broker_url == "filesystem://"  # the embedded broker, as `make test` runs the suite
    folder = Path(app.conf.broker_transport_options["data_folder_in"])
    queue = f"test-{uuid.uuid4().hex}"
    flows_expire.apply_async(queue=queue)
    assert folder.parent.parent == var and len([p for p in folder.iterdir() if f".{queue}." in p.name]) == 1

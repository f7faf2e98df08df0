"""Renewal on real Celery worker processes, Redis, PostgreSQL and the simulator: a worker killed mid-renewal, and
many renewal tasks on several workers."""

from __future__ import annotations

import os
import signal
from collections import Counter
from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from tests.conftest import wait_until
from tests.factories import active_partner, pointer_of
from tests.workers import celery_client, worker_env
from tokens.models import PartnerToken
from tokens.vault import get_vault

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.slow, pytest.mark.postgres]


def lock_table(table: str) -> psycopg.Connection:
    db = connection.settings_dict
    conn = psycopg.connect(host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"], dbname=db["NAME"])
    conn.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
    return conn


def successful_redemptions(sim) -> list[dict]:  # type: ignore[no-untyped-def]
    return sim.control.log(service="entra", path="/token$", grant_type="refresh_token", status=200)


@pytest.mark.parametrize(
    ("crash_point", "table"),
    [("after the redemption, before the vault write", "consent_vaultsecretversion"),
     ("after the vault write, before the commit", "consent_tokenevent")],
)  # fmt: skip
def test_a_worker_killed_mid_renewal_leaves_a_working_token(  # type: ignore[no-untyped-def]
    cpv_sim, redis_url, celery_worker_process, crash_point, table
) -> None:
    partner = active_partner(cpv_sim)
    before = pointer_of(partner)
    PartnerToken.objects.filter(pk=before.pk).update(last_renewed_at=timezone.now() - timedelta(days=8))
    env = worker_env(cpv_sim, redis_url)
    victim = celery_worker_process(**env)
    app = celery_client(redis_url)

    # Hold the table the worker writes next: it redeems, then blocks at exactly that point.
    blocker = lock_table(table)
    try:
        app.send_task("consent.token_renew", kwargs={"partner_id": partner.pk}, queue=victim.queue)
        wait_until(lambda: len(successful_redemptions(cpv_sim)) == 1, timeout=60, what="the redemption")
        if table == "consent_tokenevent":
            wait_until(lambda: "wrote secret" in victim.log(), timeout=30, what="the vault write")
        os.killpg(victim.process.pid, signal.SIGKILL)
        victim.process.wait(timeout=10)
    finally:
        blocker.rollback()
        blocker.close()

    # Nothing moved: the pointer still names the old version, whose token Entra still accepts.
    wait_until(lambda: not _row_locked(before.pk), timeout=30, what="the killed worker's transaction to end")
    after_crash = pointer_of(partner)
    assert (after_crash.current_version, after_crash.generation) == (before.current_version, before.generation)
    old_token = get_vault().read(name=before.secret_name, version=before.current_version).value.reveal()
    assert cpv_sim.control.refresh_token_info(old_token) is not None

    survivor = celery_worker_process(**env)
    result = app.send_task("consent.token_renew", kwargs={"partner_id": partner.pk}, queue=survivor.queue)

    assert result.get(timeout=60) == {"partner_id": partner.pk, "outcome": "renewed"}
    renewed = pointer_of(partner)
    assert renewed.current_version != before.current_version and renewed.generation == before.generation + 1
    new_token = get_vault().read(name=renewed.secret_name).value.reveal()
    assert cpv_sim.control.refresh_token_info(new_token) is not None
    assert len(successful_redemptions(cpv_sim)) == 2


def _row_locked(pk: int) -> bool:
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"], dbname=db["NAME"]
    ) as c:
        row = c.execute("SELECT id FROM consent_partnertoken WHERE id = %s FOR UPDATE SKIP LOCKED", [pk]).fetchone()
        return row is None


def test_ten_renewal_tasks_on_three_workers_redeem_once(cpv_sim, redis_url, celery_worker_process) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    PartnerToken.objects.filter(partner=partner).update(last_renewed_at=timezone.now() - timedelta(days=8))
    env = worker_env(cpv_sim, redis_url)
    workers = [celery_worker_process(**env) for _ in range(3)]
    app = celery_client(redis_url)

    results = [
        app.send_task("consent.token_renew", kwargs={"partner_id": partner.pk}, queue=workers[i % 3].queue)
        for i in range(10)
    ]
    outcomes = Counter(r.get(timeout=60)["outcome"] for r in results)

    assert outcomes["renewed"] == 1 and sum(outcomes.values()) == 10
    assert len(successful_redemptions(cpv_sim)) == 1

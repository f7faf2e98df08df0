"""A renewal on a real Celery worker process whose only app credential is CPV_CLIENT_MANAGED_IDENTITY: the worker
reads it from its environment, asks the host's managed identity endpoint (IDENTITY_ENDPOINT) through azure-identity,
and msal redeems the partner's refresh token with that token as its client assertion."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import active_partner
from tests.workers import celery_client, worker_env
from tokens.models import PartnerToken

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.slow, pytest.mark.postgres]


def test_a_worker_renews_with_the_managed_identity_as_its_only_credential(  # type: ignore[no-untyped-def]
    cpv_sim, redis_url, celery_worker_process
) -> None:
    created = cpv_sim.control.create_managed_identity(trust=[cpv_sim.env["CPV_CLIENT_ID"]])
    partner = active_partner(cpv_sim)
    PartnerToken.objects.filter(partner=partner).update(last_renewed_at=timezone.now() - timedelta(days=8))
    env = worker_env(cpv_sim, redis_url)
    env.pop("CPV_CLIENT_SECRET")
    env.update(
        CPV_CLIENT_MANAGED_IDENTITY=created["client_id"],
        IDENTITY_ENDPOINT=created["identity_endpoint"],
        IDENTITY_HEADER=created["identity_header"],
    )
    worker = celery_worker_process(**env)

    result = celery_client(redis_url).send_task(
        "consent.token_renew", kwargs={"partner_id": partner.pk}, queue=worker.queue
    )

    assert result.get(timeout=60)["outcome"] == "renewed"
    (redemption,) = cpv_sim.control.log(service="entra", path="/token$", grant_type="refresh_token", status=200)
    assert redemption["detail"]["credential"] == "federated"
    assert [e["query"].get("client_id") for e in cpv_sim.control.log(service="entra", path="^/msi/token$")] == [
        created["client_id"]
    ]
    assert cpv_sim.control.find_leaks(worker.log()) == []

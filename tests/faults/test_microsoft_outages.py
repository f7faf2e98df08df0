"""The simulator's Entra ID or Key Vault down while real workers renew tokens."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from dashboard.tasks import overview_refresh_task
from partners.models import Partner
from simulator.tokens import fingerprint
from tests.conftest import wait_until
from tests.faults.conftest import (
    active_partners,
    celery_client,
    dashboard_pages,
    live_fingerprints,
    shared_database_url,
    use_azure_vault,
    viewer_client,
    worker_env,
)
from tokens.models import PartnerToken, TokenEvent
from tokens.vault import get_vault

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

FLEET = 5


def current_fingerprints(partners: list[Partner]) -> dict[int, str]:
    found = {}
    for partner in partners:
        pointer = PartnerToken.objects.get(partner=partner)
        token = get_vault().read(name=pointer.secret_name, version=pointer.current_version).value.reveal()
        found[partner.pk] = fingerprint(token)
    return found


def assert_renewed_once(sim, partners: list[Partner], before: dict[int, int]) -> None:  # type: ignore[no-untyped-def]
    live = live_fingerprints(sim)
    for partner in partners:
        pointer = PartnerToken.objects.get(partner=partner)
        assert pointer.generation == before[partner.pk] + 1, partner
        assert TokenEvent.objects.filter(partner=partner, kind=TokenEvent.Kind.RENEWED).count() == 1
        assert pointer.failure_count == 0 and not pointer.last_error
    assert set(current_fingerprints(partners).values()) <= live


def test_entra_down_for_a_minute_renewals_wait_visibly_and_every_token_keeps_working(  # type: ignore[no-untyped-def]
    fsim, redis_url, fleet
) -> None:
    partners = active_partners(fsim, FLEET)
    before = {p.pk: PartnerToken.objects.get(partner=p).generation for p in partners}
    env = worker_env(fsim, database_url=shared_database_url(), broker_url=redis_url)
    worker = fleet(env, pool="prefork", concurrency=2)
    app = celery_client(redis_url)

    outage = fsim.control.inject_fault("entra", path="/token$", status=503, times=None)
    started = time.monotonic()
    app.send_task("consent.tokens_renew_sweep", kwargs={"spread": 2}, queue=worker.queue)

    # The retries are bounded: each renewal gives up and waits in the database, not on the broker.
    def gave_up() -> bool:
        return TokenEvent.objects.filter(partner__in=partners, kind=TokenEvent.Kind.GAVE_UP).count() == FLEET

    wait_until(gave_up, timeout=55, what="every renewal to give up", interval=1)
    assert PartnerToken.objects.filter(partner__in=partners, next_attempt_at__gt=timezone.now()).count() == FLEET

    # While Entra is down the dashboard names every partner whose renewal fails, and why.
    client = viewer_client()
    pages = dashboard_pages(client, partners)
    for partner in partners:
        assert partner.name in pages["overview"]
        page = pages[str(partner.code)]
        assert "Renewal failing" in page and "Failed after every retry" in page and "token endpoint" in page
        assert "Failed, will retry" in page
    assert pages["overview"].count("Token renewal failing") == FLEET

    time.sleep(max(0.0, 60 - (time.monotonic() - started)))
    fsim.control.remove_fault(outage)

    # After the outage every partner still holds a token Entra accepts: the one from before.
    assert all(pointer.generation == before[pointer.partner_id] for pointer in PartnerToken.objects.all())
    assert set(current_fingerprints(partners).values()) <= live_fingerprints(fsim)

    # The pause ends (six hours on; the test moves the times back), the hourly sweep renews them all once.
    PartnerToken.objects.update(
        next_attempt_at=timezone.now() - timedelta(seconds=1), renewal_queued_at=timezone.now() - timedelta(hours=1)
    )
    app.send_task("consent.tokens_renew_sweep", kwargs={"spread": 2}, queue=worker.queue)
    wait_until(
        lambda: PartnerToken.objects.filter(partner__in=partners, generation=2).count() == FLEET,
        timeout=60,
        what="every partner to be renewed after the outage",
    )
    time.sleep(1)
    assert_renewed_once(fsim, partners, before)
    # Who needs attention is ranked off the request path, by beat twice a minute (the page says as of when): its
    # next run.
    overview_refresh_task()
    pages = dashboard_pages(client, partners)
    assert "Token renewal failing" not in pages["overview"]
    for partner in partners:
        page = pages[str(partner.code)]
        # Healthy now, and the outage stays in the partner's token history.
        assert 'id="token-health">Healthy' in page and "Failed after every retry" in page
    assert "Traceback" not in worker.log()


def test_key_vault_down_renewals_retry_visibly_and_finish_once_it_is_back(  # type: ignore[no-untyped-def]
    fsim, settings, redis_url, fleet
) -> None:
    use_azure_vault(settings, fsim)
    partners = active_partners(fsim, FLEET)
    before = {p.pk: PartnerToken.objects.get(partner=p).generation for p in partners}
    env = worker_env(fsim, database_url=shared_database_url(), broker_url=redis_url, vault="azure")
    worker = fleet(env, pool="prefork", concurrency=2)
    app = celery_client(redis_url)

    outage = fsim.control.inject_fault(
        "vault",
        path="/secrets",
        status=503,
        body={"error": {"code": "ServiceUnavailable", "message": "The service is temporarily unavailable."}},
        times=None,
    )
    app.send_task("consent.tokens_renew_sweep", kwargs={"spread": 2}, queue=worker.queue)
    # The vault client's own bounded retries (1+2+4+8+16 s) run out once; the renewal records it and retries.
    wait_until(
        lambda: TokenEvent.objects.filter(partner__in=partners, kind=TokenEvent.Kind.RETRYING).count() >= 1,
        timeout=50,
        what="a renewal to record the vault outage",
    )
    pages = dashboard_pages(viewer_client(), partners)
    failing = [p for p in partners if "Failed, will retry" in pages[str(p.code)]]
    assert failing and all("vault" in pages[str(p.code)] for p in failing)
    fsim.control.remove_fault(outage)

    wait_until(
        lambda: PartnerToken.objects.filter(partner__in=partners, generation=2).count() == FLEET,
        timeout=90,
        what="every partner to be renewed once the vault is back",
    )
    time.sleep(1)
    assert_renewed_once(fsim, partners, before)
    pages = dashboard_pages(viewer_client(), partners)
    for partner in failing:
        assert "Failed, will retry" in pages[str(partner.code)]
    # Every old version was disabled once the vault answered again: only the current one can be read.
    secrets = fsim.control.secrets_state()
    for partner in partners:
        pointer = PartnerToken.objects.get(partner=partner)
        versions = secrets[pointer.secret_name]["versions"]
        enabled = [v["version"] for v in versions if v["enabled"]]
        assert enabled == [pointer.current_version], (partner, versions)
    assert "Traceback" not in worker.log()

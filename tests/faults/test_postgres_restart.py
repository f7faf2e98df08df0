"""PostgreSQL restarted in the middle of a renewal sweep, with real workers on a private cluster."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from simulator.testing import RunningSimulator
from tests.faults.conftest import (
    PARTNERS,
    PrivatePostgres,
    Probe,
    celery_client,
    live_fingerprints,
    migrate,
    wait_for,
    worker_env,
)
from tests.simulated import partner_user

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


def seed(sim: RunningSimulator, probe: Probe) -> list[dict]:
    payload = []
    for index, world_partner in enumerate(sim.world.partners[:PARTNERS]):
        user = partner_user(sim, partner=index, global_admin=True, admin_agent=True, mfa_registered=True)
        token = sim.control.issue_refresh_token(user.oid, client_id=sim.env["CPV_CLIENT_ID"])
        payload.append({"name": world_partner.name, "tenant_id": str(world_partner.tenant_id), "refresh_token": token})
    return list(probe("seed", payload))


def renewed(pg: PrivatePostgres) -> int:
    return int(pg.query("SELECT count(*) FROM consent_tokenevent WHERE kind = 'renewed'")[0][0])


def redemptions_by_user(sim: RunningSimulator) -> Counter[str]:
    log = sim.control.log(service="entra", path="/token$", grant_type="refresh_token", status=200, limit=5000)
    return Counter(entry["detail"].get("user", "") for entry in log)


@pytest.mark.parametrize("moment", ["while the sweep claims partners", "while the renewals it queued run"])
def test_postgres_restarted_mid_sweep_every_partner_is_renewed_once(  # type: ignore[no-untyped-def]
    fsim, private_postgres, redis_url, fleet, moment
) -> None:
    pg = private_postgres
    env = worker_env(fsim, database_url=pg.url, broker_url=redis_url)
    migrate(env)
    probe = Probe(env)
    seed(fsim, probe)
    worker = fleet(env, pool="prefork", concurrency=2)
    app = celery_client(redis_url)
    # Every redemption takes a while, so that renewals are in flight (holding their row lock) at the restart.
    slow = fsim.control.inject_fault("entra", path="/token$", latency=1.0, times=None)

    if moment == "while the sweep claims partners":
        # Rows may be read and locked but not written: the sweep has selected its partners and waits to claim.
        blocker = pg.connect()
        blocker.execute("LOCK TABLE consent_partnertoken IN SHARE MODE")
        app.send_task("consent.tokens_renew_sweep", kwargs={"spread": 3}, queue=worker.queue)
        wait_for(
            lambda: bool(pg.query("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'")),
            timeout=30,
            what="the sweep to wait on the held row",
        )
        pg.stop()
        blocker.close()
    else:
        app.send_task("consent.tokens_renew_sweep", kwargs={"spread": 4}, queue=worker.queue)
        wait_for(lambda: renewed(pg) >= 2, timeout=60, what="the first renewals")
        pg.stop()
    time.sleep(3)
    pg.start()
    fsim.control.remove_fault(slow)

    # Recovery needs nobody: within a minute every partner's token has been renewed.
    wait_for(lambda: renewed(pg) >= PARTNERS, timeout=90, what="every partner to be renewed", interval=1)
    time.sleep(2)
    report = probe("report")

    live = live_fingerprints(fsim)
    for item in report["partners"]:
        # Renewed exactly once, and the token the vault holds is one Entra still redeems.
        assert item["generation"] == 2, item
        assert [e["kind"] for e in item["events"]].count("renewed") == 1, item
        assert item["status"] == "active" and item["fingerprint"] in live, item
    assert "Traceback" not in worker.log() or "OperationalError" in worker.log()

    # A renewal cut off by the restart after its redemption redeemed twice; each such partner's page says why.
    pages = report["pages"]
    cut_off = [
        item for item, user in zip(report["partners"], _users(fsim), strict=True) if redemptions_by_user(fsim)[user] > 1
    ]
    if moment == "while the renewals it queued run":
        assert cut_off, "the restart interrupted no renewal"
    for item in cut_off:
        page = pages[item["code"]]
        assert "Failed, will retry" in page and "database" in page, item["events"]
    assert "Healthy" in pages["overview"]


def _users(sim: RunningSimulator) -> list[str]:
    return [
        partner_user(sim, partner=i, global_admin=True, admin_agent=True, mfa_registered=True).oid
        for i in range(PARTNERS)
    ]

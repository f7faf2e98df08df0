"""A partner renews after Microsoft's stand-in restarts: the simulator keeps what it issued (`--state-file`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from partners.models import Partner
from simulator.testing import RunningSimulator, SimulatorProcess
from tests.factories import active_partner, pointer_of
from tests.simulated import sim_app, sim_cloud
from tokens.renewal import renew_one
from tokens.selectors import TokenStatus, token_status
from tokens.vault import get_vault, reset_vault

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def _ports(running: RunningSimulator) -> list[str]:
    """The ports this simulator listens on, as the options that make the next one listen on the same."""
    urls = {
        "--port-entra": running.authority_host,
        "--port-pc": running.partner_center_url,
        "--port-graph": running.graph_url,
        "--port-vault": running.vault_url,
    }
    return [arg for option, url in urls.items() for arg in (option, str(urlsplit(url).port))]


@pytest.fixture
def product_on(settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[RunningSimulator], None]]:  # type: ignore[no-untyped-def]
    """Point the product at a simulator process (its cloud, app and CA) with a local vault of the test's own."""

    def point(running: RunningSimulator) -> None:
        for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
            monkeypatch.setenv(name, str(running.ca_bundle))
        settings.CPV_CLOUD_CONFIG = sim_cloud(running)
        settings.CPV_APP = sim_app(running, certificate=True)
        settings.CPV_BASE_URL = "http://127.0.0.1:8000"

    settings.VAULT_BACKEND = "local"
    settings.VAULT_KEYS = [os.urandom(32)]
    reset_vault()
    yield point
    reset_vault()


def _stored_token(partner: Partner) -> str:
    pointer = pointer_of(partner)
    return get_vault().read(name=pointer.secret_name, version=pointer.current_version).value.reveal()


def test_a_partner_renews_after_the_simulator_restarts_from_its_state_file(tmp_path: Path, product_on) -> None:  # type: ignore[no-untyped-def]
    state_dir = tmp_path / "simulator"
    keep = ["--partners", "2", "--customers", "2", "--state-file", str(tmp_path / "state.json")]
    first = SimulatorProcess(state_dir=state_dir, extra_args=keep)
    running = first.start()
    try:
        product_on(running)
        partner = active_partner(running)
        assert renew_one(partner_id=partner.pk, force=True).outcome == "renewed"
        # The token the product now holds was issued by this simulator process, which is about to stop.
        rotated = _stored_token(partner)
        assert running.control.refresh_token_info(rotated) is not None
    finally:
        assert first.stop() == 0

    second = SimulatorProcess(state_dir=state_dir, extra_args=[*keep, *_ports(running)])
    restarted = second.start()
    try:
        product_on(restarted)
        assert restarted.authority_host == running.authority_host
        assert restarted.control.refresh_token_info(rotated) is not None

        result = renew_one(partner_id=partner.pk, force=True)

        assert result.outcome == "renewed", result
        partner.refresh_from_db()
        assert partner.status == Partner.Status.ACTIVE
        assert token_status(partner, pointer_of(partner)) == TokenStatus.HEALTHY
        assert pointer_of(partner).generation == 3
        renewed = _stored_token(partner)
        assert renewed != rotated and restarted.control.refresh_token_info(renewed) is not None
        assert restarted.control.refresh_token_info(rotated)["redemptions"] == 1
    finally:
        assert second.stop() == 0

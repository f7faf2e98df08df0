"""The web tier on Key Vault: its identity may only set secrets. Its vault never asks to read, and its health check
fails when the identity could (the two-identity split of docs/SECURITY.md)."""

from __future__ import annotations

from typing import Any

import pytest

from tokens.vault import build_vault
from tokens.vault.errors import VaultForbidden, VaultMisconfigured


@pytest.fixture
def web_vault(azure_settings: Any, sleeps: list[float]) -> Any:
    azure_settings.CPV_PROCESS_ROLE = "web"
    vault = build_vault(sleep=sleeps.append)
    yield vault
    vault.close()


def test_the_web_tiers_vault_never_reads(web_vault: Any, sim: Any) -> None:
    before = len(sim.control.log(service="vault"))

    with pytest.raises(VaultForbidden, match="reads none"):
        web_vault.read(name="partner-00000000000000000000000000000000-refresh-token")
    assert len(sim.control.log(service="vault")) == before


def test_the_web_tiers_health_fails_when_its_identity_may_read(web_vault: Any) -> None:
    # The simulated vault lets its identity do everything, as a Secrets Officer role would.
    with pytest.raises(VaultMisconfigured, match="may read secrets"):
        web_vault.health()


def test_the_web_tiers_health_passes_when_key_vault_refuses_it_a_read(web_vault: Any, sim: Any) -> None:
    principals = list(sim.world.vault_principals)
    sim.world.vault_principals.clear()
    try:
        web_vault.health()
    finally:
        sim.world.vault_principals.extend(principals)


def test_vault_check_in_the_web_tier_checks_health_and_writes_nothing(web_vault: Any, sim: Any) -> None:
    from tokens.vault.services import FAILED, SKIPPED, vault_check

    steps = vault_check(vault=web_vault)

    assert [(s.step, s.status) for s in steps][:2] == [("health", FAILED), ("write", SKIPPED)]
    assert "may read secrets" in steps[0].detail
    assert sim.control.secrets_state() == {}

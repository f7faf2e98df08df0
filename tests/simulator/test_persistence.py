"""`--state-file`: a simulator restarted on the same file goes on where the last one stopped."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import requests

from simulator.entra import issue_refresh_token_directly
from simulator.persistence import StateFile, StateFileError
from simulator.state import Simulator
from simulator.testing import RunningSimulator, SimulatorProcess, running_simulator
from simulator.world import World
from tests.conftest import wait_until
from tests.simulator.helpers import PC_DEFAULT, admin, consent, redeem, vault_client


def _trust(monkeypatch: pytest.MonkeyPatch, running: RunningSimulator) -> None:
    """Clients trust this simulator's CA (a restarted one writes its new CA to the same file)."""
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.setenv(name, str(running.ca_bundle))


def _customers(running: RunningSimulator, access_token: str) -> requests.Response:
    return requests.get(
        f"{running.partner_center_url}/v1/customers",
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=10,
    )


@pytest.mark.slow
def test_a_restarted_simulator_keeps_its_tokens_consents_customers_clock_and_vault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state_file = tmp_path / "simulator-state.json"
    world = ["--partners", "2", "--customers", "3", "--state-file", str(state_file)]
    first = SimulatorProcess(state_dir=tmp_path / "sim", extra_args=["--seed", "4", *world])
    running = first.start()
    try:
        _trust(monkeypatch, running)
        partner = running.world.partners[0]
        running.control.advance_days(3)
        signed_in = consent(running, user=admin(running).upn)
        assert "refresh_token" in signed_in, signed_in
        renewed = redeem(running, signed_in["refresh_token"])
        assert renewed.status_code == 200, renewed.text
        rotated = renewed.json()["refresh_token"]
        access_token = renewed.json()["access_token"]
        added = running.control.add_customers(partner.tenant_id, names=["Kept Across Restarts Ltd"])
        running.control.add_consent(added[0]["tenant_id"], application_id=running.env["CPV_CLIENT_ID"])
        vault = vault_client(running)
        old = vault.set_secret("cpv-rt-kept", "version-1")
        vault.set_secret("cpv-rt-kept", "version-2")
        vault.update_secret_properties("cpv-rt-kept", old.properties.version, enabled=False)
        before = running.control.state()
    finally:
        assert first.stop() == 0

    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    assert [p.name for p in state_file.parent.iterdir() if p.name.startswith(f".{state_file.name}")] == []

    # The command line's world is ignored: the file wins.
    second = SimulatorProcess(state_dir=tmp_path / "sim", extra_args=["--seed", "5", *world])
    running = second.start()
    try:
        _trust(monkeypatch, running)
        world = running.world
        assert world.seed == 4 and len(world.partners) == 2
        assert "Kept Across Restarts Ltd" in [c.company_name for c in world.partners[0].customers]
        after = running.control.state()
        assert after["consents"] == before["consents"]
        assert after["grants"] == before["grants"] and before["grants"]
        assert after["clock"]["offset"] == before["clock"]["offset"]
        assert {g["id"] for g in after["refresh_tokens"]} == {g["id"] for g in before["refresh_tokens"]}
        # Both refresh tokens still redeem, and the one redeemed before keeps its count.
        assert redeem(running, signed_in["refresh_token"]).status_code == 200
        assert redeem(running, rotated, scope=PC_DEFAULT).status_code == 200
        assert running.control.refresh_token_info(signed_in["refresh_token"])["redemptions"] == 2
        # An access token issued before the restart is still signed by a key the services know.
        listed = _customers(running, access_token)
        assert listed.status_code == 200, listed.text
        assert "Kept Across Restarts Ltd" in listed.text
        vault = vault_client(running)
        assert vault.get_secret("cpv-rt-kept").value == "version-2"
        assert {p.version: p.enabled for p in vault.list_properties_of_secret_versions("cpv-rt-kept")} == {
            old.properties.version: False,
            vault.get_secret("cpv-rt-kept").properties.version: True,
        }
        # What was issued before the restart is still found by the leak search.
        assert rotated in running.control.issued_secrets("refresh_token")
    finally:
        assert second.stop() == 0


def test_a_snapshot_taken_up_by_a_new_simulator_is_the_same_state() -> None:
    """Through JSON, as the file keeps it: whatever the world holds (World.to_dict/from_dict) comes back as it was."""
    world = World.generate(seed=6, partners=2, customers_per_partner=2)
    sim = Simulator(world)
    partner = world.partners[0]
    refresh = issue_refresh_token_directly(
        sim, user=partner.users[0], partner=partner, app=world.cpv_app, scope="openid offline_access"
    )
    sim.clock.advance(60)
    snapshot = json.loads(json.dumps(sim.snapshot()))

    restored_world = World.from_dict(snapshot["world"])
    again = Simulator(restored_world)
    again.restore(snapshot)

    assert restored_world == world
    assert json.loads(json.dumps(again.snapshot())) == snapshot
    assert again.signer.jwk == sim.signer.jwk
    assert again.entra.refresh_tokens[refresh] == sim.entra.refresh_tokens[refresh]
    assert again.entra.grants == sim.entra.grants


def test_a_state_file_of_the_earlier_consent_shape_grants_the_registration() -> None:
    """A file written when a sign-in's scopes were kept as strings (`user_consents`): that simulator gave a consented
    app its registration's whole list, so the grant taken up is that list and the OIDC scopes asked."""
    world = World.generate(seed=6, partners=1, customers_per_partner=1)
    sim = Simulator(world)
    snapshot = json.loads(json.dumps(sim.snapshot()))
    tenant, client = world.partners[0].tenant_id, world.cpv_app.client_id
    del snapshot["entra"]["grants"]
    snapshot["entra"]["user_consents"] = [
        {"tenant_id": tenant, "client_id": client, "scopes": ["https://x/user_impersonation", "openid", "profile"]}
    ]
    again = Simulator(World.from_dict(snapshot["world"]))
    again.restore(snapshot)
    granted = again.entra.grants[(tenant, client)]
    assert granted["https://api.partnercenter.microsoft.com"] == {"user_impersonation"}
    assert granted["https://graph.microsoft.com"] == {
        "User.Read",
        "RoleManagement.Read.Directory",
        "DelegatedAdminRelationship.Read.All",
        "GroupMember.Read.All",
        "openid",
        "profile",
    }


def test_the_state_is_written_shortly_after_a_change_without_a_stop(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    with running_simulator(World.generate(seed=2, partners=1, customers_per_partner=1), state_file=state_file) as sim:
        partner = sim.world.partners[0]
        sim.control.add_customers(partner.tenant_id, names=["Written Soon Oy"])

        def written() -> bool:
            return state_file.exists() and "Written Soon Oy" in state_file.read_text()

        wait_until(written, timeout=10, what="the state file to hold the new customer")
        assert stat.S_IMODE(state_file.stat().st_mode) == 0o600


def test_a_state_file_that_is_not_one_is_refused_not_overwritten(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    state_file.write_text("{not json")
    with pytest.raises(StateFileError, match="not JSON"):
        StateFile(state_file).load()
    state_file.write_text(json.dumps({"version": 999, "world": {}}))
    with pytest.raises(StateFileError, match="version 999"):
        StateFile(state_file).load()

    process = SimulatorProcess(extra_args=["--state-file", str(state_file)])
    with pytest.raises(RuntimeError, match="move it away"):
        process.start()
    assert json.loads(state_file.read_text()) == {"version": 999, "world": {}}

"""Several simulated Key Vaults: each on a host (a port) of its own, with its own secrets and its own throttling."""

from __future__ import annotations

import json

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.keyvault.secrets import SecretClient

from simulator.keyvault import SecretEntry
from simulator.state import Simulator
from simulator.world import World
from tests.simulator.helpers import vault_credential
from tests.simulator.test_keyvault import _session


def _client(sim, url: str) -> SecretClient:
    return SecretClient(url, vault_credential(sim), verify_challenge_resource=False)


def test_each_vault_keeps_its_own_secrets(sim):
    first_url, second_url = sim.vault_urls
    assert first_url == sim.vault_url and second_url != first_url
    first, second = _client(sim, first_url), _client(sim, second_url)

    stored = second.set_secret("partner-two", "token-in-the-second-vault")

    assert stored.id.startswith(f"{second_url}secrets/partner-two/")
    assert second.get_secret("partner-two").value == "token-in-the-second-vault"
    with pytest.raises(ResourceNotFoundError):
        first.get_secret("partner-two")
    assert "partner-two" not in sim.control.secrets_state()
    [more] = sim.control.more_vaults_state()
    assert more["url"] == second_url and list(more["secrets"]) == ["partner-two"]


def test_each_vault_is_throttled_on_its_own(sim):
    sim.control.set_vault_limits(True, creates=3, window=30)
    session = _session(sim)

    def put(url: str, name: str) -> int:
        return session.put(f"{url}secrets/{name}?api-version=7.5", json={"value": "v"}, timeout=10).status_code

    first_url, second_url = sim.vault_urls
    assert [put(first_url, f"a{i}") for i in range(4)] == [200, 200, 200, 429]
    # the first vault's limit is spent; the second's is whole
    assert [put(second_url, f"b{i}") for i in range(4)] == [200, 200, 200, 429]


def test_a_reset_empties_every_vault(sim):
    _client(sim, sim.vault_urls[1]).set_secret("kept-until-reset", "v")
    sim.control.reset()

    assert sim.control.more_vaults_state()[0]["secrets"] == {}


def test_a_snapshot_keeps_every_vaults_secrets():
    world = World.generate()
    before = Simulator(world)
    before.vaults_serve(2)
    before.more_vaults[0].store.secrets["survives"] = SecretEntry(name="survives")

    after = Simulator(World.from_dict(world.to_dict()))
    after.vaults_serve(2)
    after.restore(json.loads(json.dumps(before.snapshot())))

    assert list(after.more_vaults[0].store.secrets) == ["survives"]
    assert after.vault.secrets == {}

"""Fixtures for the vault: keys, each backend, and the contract suite's parametrized `vault`."""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from cpv import clouds
from cpv.keys import KeyPair, decode_key, new_key_pair
from tokens.vault import Vault, build_vault, reset_vault


def pytest_configure(config: pytest.Config) -> None:
    # The root conftest loads the simulator's fixtures once it lists the plugin; until then, load it here.
    if not config.pluginmanager.has_plugin("simulator.pytest_plugin"):
        config.pluginmanager.import_plugin("simulator.pytest_plugin")


def new_key() -> bytes:
    return secrets.token_bytes(32)


def encode_keys(*keys: bytes) -> str:
    return ",".join(base64.urlsafe_b64encode(k).decode() for k in keys)


@pytest.fixture(autouse=True)
def _fresh_vault() -> Iterator[None]:
    reset_vault()
    yield
    reset_vault()


@pytest.fixture
def vault_key() -> bytes:
    return new_key()


@pytest.fixture
def local_settings(settings: Any, vault_key: bytes) -> Any:
    """The local vault as it was before sealing: one symmetric key (VAULT_KEY), no key pair."""
    settings.VAULT_BACKEND = "local"
    settings.VAULT_KEYS = [vault_key]
    settings.VAULT_PUBLIC_KEY = None
    settings.VAULT_PRIVATE_KEYS = []
    settings.CPV_PROCESS_ROLE = "all"
    settings.VAULT_DELETED_SECRET_POLICY = "recover"
    return settings


@pytest.fixture
def key_pair() -> KeyPair:
    return new_key_pair()


@pytest.fixture
def sealed_settings(settings: Any, key_pair: KeyPair) -> Any:
    """The local vault sealing to a public key, as a worker holds it (the private key opens)."""
    settings.VAULT_BACKEND = "local"
    settings.VAULT_KEYS = []
    settings.VAULT_PUBLIC_KEY = decode_key(key_pair.public, what="public")
    settings.VAULT_PRIVATE_KEYS = [decode_key(key_pair.private, what="private")]
    settings.CPV_PROCESS_ROLE = "all"
    settings.VAULT_DELETED_SECRET_POLICY = "recover"
    return settings


@pytest.fixture
def sealed_vault(sealed_settings: Any) -> Vault:
    return build_vault()


@pytest.fixture
def sleeps() -> list[float]:
    """The waits the Azure backend asked for, recorded instead of slept."""
    return []


@pytest.fixture
def azure_env(sim: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The simulator's Azure variables in the process environment, as azure-identity reads them."""
    for name in list(os.environ):
        if name.startswith("AZURE_"):
            monkeypatch.delenv(name)
    wanted = {k: v for k, v in sim.env.items() if k.startswith("AZURE_") or k == "REQUESTS_CA_BUNDLE"}
    for name, value in wanted.items():
        monkeypatch.setenv(name, value)
    return wanted


@pytest.fixture
def azure_settings(settings: Any, sim: Any, azure_env: dict[str, str]) -> Any:
    settings.VAULT_BACKEND = "azure"
    settings.VAULT_URL = sim.vault_url.rstrip("/") + "/"
    settings.VAULT_DELETED_SECRET_POLICY = "recover"
    settings.CPV_CLOUD_CONFIG = clouds.custom_cloud(
        authority_host=sim.authority_host, partner_center_url=sim.partner_center_url, graph_url=sim.graph_url
    )
    return settings


@pytest.fixture
def azure_vault(azure_settings: Any, sleeps: list[float]) -> Iterator[Vault]:
    vault = build_vault(sleep=sleeps.append)
    yield vault
    vault.close()


@pytest.fixture
def local_vault(local_settings: Any) -> Vault:
    return build_vault()


@pytest.fixture(params=["local", "sealed", "azure"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def vault(backend: str, request: pytest.FixtureRequest) -> Vault:
    """Each backend in turn, built from the settings as `get_vault()` builds it."""
    return request.getfixturevalue(f"{backend}_vault")


@pytest.fixture
def use_policy(backend: str, settings: Any, request: pytest.FixtureRequest, sleeps: list[float]) -> Any:
    """Rebuild the current backend under another VAULT_DELETED_SECRET_POLICY."""

    def make(policy: str) -> Vault:
        request.getfixturevalue(f"{backend}_settings")
        settings.VAULT_DELETED_SECRET_POLICY = policy
        return build_vault(sleep=sleeps.append) if backend == "azure" else build_vault()

    return make

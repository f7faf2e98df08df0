"""pytest fixtures: `simulator` (one per session) and `sim` (the same, reset before each test).

Load with `pytest_plugins = ["simulator.pytest_plugin"]`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

from simulator.testing import RunningSimulator, running_simulator

logger = logging.getLogger(__name__)

_TRUST_VARIABLES = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")


@pytest.fixture(scope="session")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSimulator]:
    """The simulator for the whole session; clients trust its CA through REQUESTS_CA_BUNDLE/SSL_CERT_FILE."""
    saved = {name: os.environ.get(name) for name in _TRUST_VARIABLES}
    # Two Key Vaults, so that a test may spread partners' tokens over VAULT_URLS; the first is VAULT_URL.
    with running_simulator(state_dir=tmp_path_factory.mktemp("simulator"), vaults=2) as running:
        for name in _TRUST_VARIABLES:
            os.environ[name] = str(running.ca_bundle)
        try:
            yield running
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@pytest.fixture
def sim(simulator: RunningSimulator) -> RunningSimulator:
    """The session's simulator, reset to its seeded world (and empty logs, faults, clock) for this test."""
    simulator.control.reset()
    return simulator

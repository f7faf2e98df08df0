"""A user-assigned managed identity on the simulated host, for the vendor app's managed identity credential in tests."""

from __future__ import annotations

from typing import Any

import pytest

from cpv.config import MANAGED_IDENTITY, Credential
from simulator.testing import RunningSimulator


def host_identity(sim: RunningSimulator, monkeypatch: pytest.MonkeyPatch, **overrides: Any) -> dict[str, Any]:
    """Assign a new user-assigned identity to the host, trusted by the CPV app (or, with `issuer`, `subject` or
    `audiences`, trusted wrongly), and point azure-identity's App Service variables at the simulator's endpoint.
    Returns what the control surface says of it (client_id, principal_id, ...)."""
    created = sim.control.create_managed_identity(trust=[sim.env["CPV_CLIENT_ID"]], **overrides)
    monkeypatch.setenv("IDENTITY_ENDPOINT", created["identity_endpoint"])
    monkeypatch.setenv("IDENTITY_HEADER", created["identity_header"])
    return created


def managed(client_id: str) -> Credential:
    """The credential CPV_CLIENT_MANAGED_IDENTITY=<client_id> configures."""
    return Credential(MANAGED_IDENTITY, managed_identity_client_id=client_id, source="CPV_CLIENT_MANAGED_IDENTITY")

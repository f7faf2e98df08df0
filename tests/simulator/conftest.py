from __future__ import annotations

from collections.abc import Callable

import pytest
import requests

from simulator.testing import RunningSimulator


def pytest_configure(config: pytest.Config) -> None:
    # The project's tests/conftest.py loads the same plugin; load it here only when it did not, so that
    # there is one simulator per session either way.
    if not config.pluginmanager.has_plugin("simulator.pytest_plugin"):
        config.pluginmanager.import_plugin("simulator.pytest_plugin")


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    """The simulator's tests use no Django cache: they must run without Django settings too
    (`pytest -p no:django tests/simulator`), so the project-wide cache reset is skipped here."""


@pytest.fixture(params=["body", "header"])
def mfa_answer(request: pytest.FixtureRequest, sim: RunningSimulator) -> Callable[[requests.Response], str | None]:
    """Runs the test with Partner Center's `isMfaCompliant` in the JSON body (the default) and in a header
    (`set_settings(pc_mfa_compliant_in="header")`); gives a reader that returns "true", "false" or None (not
    answered), and checks the answer is in that place only."""
    where = str(request.param)
    if where != sim.control.settings()["pc_mfa_compliant_in"]:
        sim.control.set_settings(pc_mfa_compliant_in=where)

    def read(response: requests.Response) -> str | None:
        header = response.headers.get("isMfaCompliant")
        try:
            body = response.json()
        except ValueError:
            body = None
        field = body.get("isMfaCompliant") if isinstance(body, dict) else None
        if where == "header" or not isinstance(body, dict):
            assert field is None, body
            return header
        assert header is None, response.headers
        assert field is None or isinstance(field, bool), field
        return None if field is None else str(field).lower()

    return read

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # The project's tests/conftest.py loads the same plugin; load it here only when it did not, so that
    # there is one simulator per session either way.
    if not config.pluginmanager.has_plugin("simulator.pytest_plugin"):
        config.pluginmanager.import_plugin("simulator.pytest_plugin")


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    """The simulator's tests use no Django cache: they must run without Django settings too
    (`pytest -p no:django tests/simulator`), so the project-wide cache reset is skipped here."""

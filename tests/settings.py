"""The product's settings for the test suite: the same, except for where the suite keeps its files.

Without CPV_VAR_DIR the product keeps its files in the project's `var/` (the embedded broker's messages, the
generated secret key, collected static files), which `make demo` uses too: work published by the suite's
in-process code would wait there for the next demo's worker. The suite's process gets a folder of its own
under `test-output/` instead, removed when the run ends (tests/conftest.py); the processes it starts inherit
it unless a test names another.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

# The folder this process made, which it removes at the end; None in a process the suite started.
CPV_TEST_VAR_DIR_OWNED: str | None = None
if "CPV_TEST_VAR_DIR" not in os.environ:
    # The suite's own process (a child it starts inherits both variables, and its own CPV_VAR_DIR if given one).
    _base = Path(__file__).resolve().parent.parent / "test-output"
    _base.mkdir(exist_ok=True)
    # A run killed before its end left its folder: gone a day later (a run going on now keeps its own).
    for _stale in _base.glob("var-*"):
        if _stale.is_dir() and time.time() - _stale.stat().st_mtime > 86400:
            shutil.rmtree(_stale, ignore_errors=True)
    CPV_TEST_VAR_DIR_OWNED = tempfile.mkdtemp(prefix="var-", dir=_base)
    os.environ["CPV_TEST_VAR_DIR"] = os.environ["CPV_VAR_DIR"] = CPV_TEST_VAR_DIR_OWNED

from cpv.settings import *  # noqa: E402, F403

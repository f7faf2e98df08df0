"""Keeping the simulator's state in a file, so that a restarted simulator goes on where the last one stopped.

Simulator infrastructure, not a Microsoft behaviour: Entra ID, Partner Center and Key Vault never forget, and a
simulator that forgot its issued refresh tokens at every restart would make `make demo` unusable after Ctrl-C.
The file holds simulated secrets (refresh tokens, the token-signing key, vault values): it is written for its
owner only, atomically (a temporary file in the same folder, then `os.replace`), so a crash leaves the old
state or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from simulator.state import SNAPSHOT_VERSION

logger = logging.getLogger(__name__)


class StateFileError(Exception):
    """The state file exists but cannot be read as a simulator's state."""


class StateFile:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def __str__(self) -> str:
        return str(self.path)

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is no file yet. Raises StateFileError for a file that is not
        one (a simulator that started empty over it would throw away every token it issued)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise StateFileError(f"{self.path} is not JSON ({exc}); move it away to start a new world") from exc
        if not isinstance(data, dict) or "world" not in data:
            raise StateFileError(f"{self.path} is not a simulator state; move it away to start a new world")
        if data.get("version") != SNAPSHOT_VERSION:
            raise StateFileError(
                f"{self.path} is a simulator state of version {data.get('version')!r}; this simulator reads version "
                f"{SNAPSHOT_VERSION}: move it away to start a new world"
            )
        return data

    def save(self, data: dict[str, Any]) -> None:
        """Write `data` in place of the file, all or nothing, readable by its owner only."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:  # mkstemp creates it 0600
                json.dump(data, handle, separators=(",", ":"))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise

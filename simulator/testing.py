"""Running the simulator from tests: in-process (a background thread) or as a separate process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.control_client import ControlError, SimulatorControl
from simulator.server import SimulatorServer
from simulator.state import Settings
from simulator.world import World

logger = logging.getLogger(__name__)

__all__ = [
    "ControlError",
    "RunningSimulator",
    "SimulatorControl",
    "SimulatorProcess",
    "running_simulator",
]


@dataclass
class RunningSimulator:
    """Where a running simulator listens, and a client for its control surface."""

    env: dict[str, str]
    control: SimulatorControl
    state_dir: Path
    _server: SimulatorServer | None = field(default=None, repr=False)
    _world: World | None = field(default=None, repr=False)

    @property
    def authority_host(self) -> str:
        return self.env["CPV_AUTHORITY_HOST"]

    @property
    def partner_center_url(self) -> str:
        return self.env["CPV_PARTNER_CENTER_URL"]

    @property
    def graph_url(self) -> str:
        return self.env["CPV_GRAPH_URL"]

    @property
    def vault_url(self) -> str:
        return self.env["VAULT_URL"]

    @property
    def vault_urls(self) -> list[str]:
        """Every Key Vault served, the first `vault_url`'s."""
        return self.env["SIMULATOR_VAULT_URLS"].split(",")

    @property
    def control_url(self) -> str:
        return self.env["SIMULATOR_CONTROL_URL"]

    @property
    def ca_bundle(self) -> Path:
        return Path(self.env["REQUESTS_CA_BUNDLE"])

    @property
    def world(self) -> World:
        """The simulator's current world (in-process: the live object; out of process: a copy)."""
        if self._server is not None:
            return self._server.sim.world
        if self._world is None:
            self._world = World.from_dict(self.control.world())
        return self._world

    def authority(self, tenant: str) -> str:
        """`https://127.0.0.1:PORT/<tenant>`, the authority msal and azure-identity take."""
        return f"{self.authority_host}/{tenant}"


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()


@contextlib.contextmanager
def running_simulator(
    world: World | None = None,
    *,
    state_dir: Path | None = None,
    settings: Settings | None = None,
    state_file: Path | None = None,
    vaults: int = 1,
) -> Iterator[RunningSimulator]:
    """Every service on free loopback ports, served by a background thread with its own event loop.

    `state_file`: where the simulator keeps its state while it runs (as `python -m simulator --state-file`). `vaults`:
    how many Key Vaults it serves (`RunningSimulator.vault_urls`)."""
    world = world or World.generate()
    own_dir = state_dir is None
    directory = Path(tempfile.mkdtemp(prefix="cpv-simulator-")) if state_dir is None else Path(state_dir)
    server = SimulatorServer(world, state_dir=directory, settings=settings, state_file=state_file, vaults=vaults)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=_run_loop, args=(loop,), name="simulator", daemon=True)
    thread.start()
    control: SimulatorControl | None = None
    try:
        env = asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=60)
        control = SimulatorControl(env["SIMULATOR_CONTROL_URL"], ca_bundle=env["REQUESTS_CA_BUNDLE"])
        yield RunningSimulator(env=env, control=control, state_dir=directory, _server=server)
    finally:
        if control is not None:
            control.close()
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
        if own_dir:
            shutil.rmtree(directory, ignore_errors=True)


class SimulatorProcess:
    """`python -m simulator` in a child process, on free ports and a temporary state directory.

    Usage: `with SimulatorProcess(extra_args=["--vault-limits", "off"]) as sim: sim.env[...]`. A generated world
    has no GDAP showcase customers unless `gdap_showcase`, no consent showcase customers unless `consent_showcase`
    (tests count the customers they ask for).
    """

    def __init__(
        self,
        *,
        extra_args: list[str] | None = None,
        python: str | None = None,
        state_dir: Path | None = None,
        startup_timeout: float = 60.0,
        gdap_showcase: bool = False,
        consent_showcase: bool = False,
    ) -> None:
        self.extra_args = list(extra_args or [])
        if "--gdap-showcase" not in self.extra_args:
            self.extra_args += ["--gdap-showcase", "on" if gdap_showcase else "off"]
        if "--consent-showcase" not in self.extra_args:
            self.extra_args += ["--consent-showcase", "on" if consent_showcase else "off"]
        self.python = python or sys.executable
        self._own_dir = state_dir is None
        self.state_dir = Path(tempfile.mkdtemp(prefix="cpv-simulator-")) if state_dir is None else Path(state_dir)
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[str] | None = None
        self.env: dict[str, str] = {}
        self.control: SimulatorControl | None = None
        self._stderr_path = self.state_dir / "simulator.log"

    def start(self) -> RunningSimulator:
        from simulator.__main__ import READY_LINE

        args = [self.python, "-m", "simulator", "--state-dir", str(self.state_dir), *self.extra_args]
        self.state_dir.mkdir(parents=True, exist_ok=True)
        stderr = self._stderr_path.open("w", encoding="utf-8")
        child_env = dict(os.environ)
        child_env["PYTHONPATH"] = os.pathsep.join(
            p for p in [str(Path(__file__).resolve().parent.parent), child_env.get("PYTHONPATH", "")] if p
        )
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            args, stdout=subprocess.PIPE, stderr=stderr, text=True, env=child_env
        )
        stderr.close()
        stdout = self.process.stdout
        if stdout is None:
            raise RuntimeError("the simulator's stdout is not captured")
        env: dict[str, str] = {}
        ready = threading.Event()

        def read() -> None:
            for line in stdout:
                line = line.rstrip("\n")
                if line == READY_LINE:
                    ready.set()
                    break
                key, sep, value = line.partition("=")
                if sep:
                    env[key] = value

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        deadline = time.monotonic() + self.startup_timeout
        while not ready.wait(0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = self._stderr_path.read_text(encoding="utf-8", errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"the simulator did not start:\n{log}")
        self.env = env
        self.control = SimulatorControl(env["SIMULATOR_CONTROL_URL"], ca_bundle=env["REQUESTS_CA_BUNDLE"])
        return RunningSimulator(env=env, control=self.control, state_dir=self.state_dir)

    def stop(self) -> int | None:
        """SIGTERM, then wait; returns the exit code."""
        if self.control is not None:
            self.control.close()
            self.control = None
        code = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=10)
            code = self.process.returncode
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None
        if self._own_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        return code

    def __enter__(self) -> RunningSimulator:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

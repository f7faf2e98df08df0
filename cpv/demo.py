"""`make demo`: the control panel on embedded defaults, with web, worker and beat in one terminal.

Runs every process in its own process group and stops all of them on Ctrl-C (or when one of them dies).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

BASE_DIR = Path(__file__).resolve().parent.parent


# Every path Microsoft posts a sign-in back to: the consent flow's and the partner portal's callbacks.
CALLBACK_PATHS = ("/consent/callback", "/portal/callback")


def redirect_uris(base_url: str) -> list[str]:
    """The redirect URIs the demo's app registration accepts (a real one registers the same)."""
    return [base_url.rstrip("/") + path for path in CALLBACK_PATHS]


def _say(message: str) -> None:
    sys.stdout.write(f"[demo] {message}\n")
    sys.stdout.flush()


def _run(argv: list[str], env: dict[str, str]) -> None:
    subprocess.run(argv, cwd=BASE_DIR, env=env, check=True)  # noqa: S603


def _start_simulator(var_dir: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """The local Microsoft cloud, with a small seeded world that accepts the demo's redirect URI.

    Returns the process and the variables that point the control panel at it.
    """
    state = var_dir / "simulator"
    state.mkdir(parents=True, exist_ok=True)
    env_file = state / "simulator.env"
    env_file.unlink(missing_ok=True)
    process = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            "-m",
            "simulator",
            "--seed",
            "1",
            "--partners",
            "3",
            "--customers",
            "8",
            "--state-dir",
            str(state),
            "--env-file",
            str(env_file),
            *(arg for uri in redirect_uris(env["CPV_BASE_URL"]) for arg in ("--redirect-uri", uri)),
        ],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not env_file.exists() or not env_file.read_text().strip():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit("[demo] the simulator did not start; run `python -m simulator` to see why")
        time.sleep(0.2)
    time.sleep(0.2)  # the file is written in one go; give the last line a moment
    variables = {}
    for line in env_file.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isupper():
            variables[key] = value
    return process, variables


def main() -> int:
    port = os.environ.get("CPV_DEMO_PORT", "8000")
    host = os.environ.get("CPV_DEMO_HOST", "127.0.0.1")
    env = dict(os.environ)
    env.setdefault("CPV_BASE_URL", f"http://{host}:{port}")
    var_dir = Path(env.get("CPV_VAR_DIR") or BASE_DIR / "var")
    var_dir.mkdir(parents=True, exist_ok=True)
    env["CPV_VAR_DIR"] = str(var_dir)

    python = sys.executable
    children: dict[str, subprocess.Popen[bytes]] = {}
    if env.get("CPV_DEMO_SIMULATOR", "on") != "off":
        children["simulator"], variables = _start_simulator(var_dir, env)
        # Everything Microsoft-shaped points at the simulator (CPV_DEMO_SIMULATOR=off keeps your own).
        for key, value in variables.items():
            if key in {"REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"} or key.startswith(("CPV_", "AZURE_", "SIMULATOR_")):
                env[key] = value
        _say(f"the simulated Microsoft cloud signs in at {variables.get('CPV_AUTHORITY_HOST')}")
    try:
        _run([python, "manage.py", "migrate", "--no-input", "-v", "0"], env)
        _run([python, "manage.py", "demo_user"], env)
        if "simulator" in children:
            _run([python, "manage.py", "demo_invitation"], env)
    except (subprocess.CalledProcessError, KeyboardInterrupt):
        for child in children.values():
            os.killpg(child.pid, signal.SIGTERM)
        raise

    commands = {
        "web": [python, "manage.py", "runserver", f"{host}:{port}", "--noreload"],
        "worker": [
            python,
            "-m",
            "celery",
            "-A",
            "cpv",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            "2",
            "--hostname",
            f"demo-{port}@%h",
        ],
        "beat": [
            python,
            "-m",
            "celery",
            "-A",
            "cpv",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(var_dir / "celerybeat-schedule"),
        ],
    }
    stopping = False

    def stop(signum: int = signal.SIGTERM, frame: FrameType | None = None) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        _say("stopping web, worker, beat and the simulator")
        for child in children.values():
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for name, argv in commands.items():
        children[name] = subprocess.Popen(argv, cwd=BASE_DIR, env=env, start_new_session=True)  # noqa: S603
    _say(f"the control panel is at {env['CPV_BASE_URL']}/ (Ctrl-C stops everything)")

    status = 0
    while not stopping:
        for name, child in children.items():
            if child.poll() is not None:
                _say(f"{name} exited with status {child.returncode}")
                status = 1
                stop()
                break
        time.sleep(0.5)
    return status


if __name__ == "__main__":
    sys.exit(main())

"""`make demo`: the control panel on embedded defaults, web, worker, beat and simulator in one terminal, all stopped
together; what it keeps lives under git-ignored `var/`."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import IO, Any
from urllib.parse import urlsplit

import django
import requests

from cpv.env_files import DEMO_ENV_FILE, DEMO_PID_FILE, env_file_values

BASE_DIR = Path(__file__).resolve().parent.parent
DEMO_USERNAME = "demo"
PASSWORD_FILE = "demo-password"  # noqa: S105 - the name of the file under var/ that keeps it
# How long the demo waits for the web server, the worker and beat before it prints its key lines anyway.
READY_TIMEOUT = 120


# Every path Microsoft posts a sign-in back to: the consent flow's, the partner portal's and the staff sign-in's.
CALLBACK_PATHS = ("/consent/callback", "/portal/callback", "/accounts/microsoft/callback/")
# The simulated vendor's staff account the demo user is bound to, for "Sign in with Microsoft".
DEMO_MICROSOFT_LOGIN = "staff.admin"


def redirect_uris(base_url: str) -> list[str]:
    """The redirect URIs the demo's app registration accepts (a real one registers the same)."""
    return [base_url.rstrip("/") + path for path in CALLBACK_PATHS]


_PRINTING = threading.Lock()


def _print(*lines: str) -> None:
    """Whole lines to the terminal, never interleaved with a child's line forwarded at the same time."""
    with _PRINTING:
        sys.stdout.write("".join(f"{line}\n" for line in lines))
        sys.stdout.flush()


def _say(message: str) -> None:
    _print(f"[demo] {message}")


def _run(argv: list[str], env: dict[str, str]) -> None:
    subprocess.run(argv, cwd=BASE_DIR, env=env, check=True)  # noqa: S603


def _output(argv: list[str], env: dict[str, str]) -> list[str]:
    """What a command printed, line by line (its errors still reach the terminal)."""
    done = subprocess.run(argv, cwd=BASE_DIR, env=env, check=True, stdout=subprocess.PIPE, text=True)  # noqa: S603
    return done.stdout.splitlines()


def _write_private(path: Path, text: str) -> None:
    """Replace `path` with `text`, readable by its owner only, all or nothing."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # made 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_demo_env(var_dir: Path, settings: dict[str, str], *, pid: int) -> Path:
    """Write the demo's settings to var/demo.env (for commands run from the checkout) and `pid` to var/demo.pid: the
    env file's path."""
    _write_private(var_dir / DEMO_PID_FILE, f"{pid}\n")
    lines = [
        "# Written by `make demo`: the settings it gives the control panel while it runs. Every command run from",
        "# this checkout reads them (cpv/env_files.py; variables set in the environment win, but for the CA bundle),",
        "# and says so when the demo is not running (var/demo.pid). Not read in production mode. Holds simulated",
        "# secrets.",
        *(f"{key}={value}" for key, value in sorted(settings.items())),
    ]
    path = var_dir / DEMO_ENV_FILE
    _write_private(path, "\n".join(lines) + "\n")
    return path


def _check_password(username: str, password_file: Path) -> int:
    """In a child process with Django set up: 0 when the kept password still signs the demo user in."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cpv.settings")
    django.setup()
    # the auth models load only once Django's apps are (in this child process, not in the demo's own)
    from django.contrib.auth import get_user_model

    password = password_file.read_text(encoding="utf-8").strip()
    user = get_user_model().objects.filter(username=username, is_active=True, is_staff=True).first()
    return 0 if user is not None and password and user.check_password(password) else 1


def demo_user_password(var_dir: Path, env: dict[str, str]) -> str:
    """The demo staff user's password: the kept one while it still works, else a new one from `manage.py demo_user`."""
    path = var_dir / PASSWORD_FILE
    python = sys.executable
    if path.exists():
        kept = subprocess.run(  # noqa: S603
            [python, "-m", "cpv.demo", "--check-password", DEMO_USERNAME, str(path)], cwd=BASE_DIR, env=env, check=False
        )
        if kept.returncode == 0:
            return path.read_text(encoding="utf-8").strip()
    for line in _output([python, "manage.py", "demo_user", "--username", DEMO_USERNAME], env):
        found = re.search(r"password (\S+)", line)
        if found:
            _write_private(path, found.group(1) + "\n")
            return found.group(1)
    raise SystemExit("[demo] manage.py demo_user printed no password")


# The variables naming each simulated service, and the option that gives it a port.
SIMULATOR_PORTS = {
    "CPV_AUTHORITY_HOST": "--port-entra",
    "CPV_PARTNER_CENTER_URL": "--port-pc",
    "CPV_GRAPH_URL": "--port-graph",
    "VAULT_URL": "--port-vault",
}


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the simulator binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _previous_ports(env_file: Path) -> list[str]:
    """The last simulator's ports as options when all are free (an open sign-in page survives a restart), else none."""
    previous = env_file_values(env_file)
    options: list[str] = []
    for variable, option in SIMULATOR_PORTS.items():
        port = urlsplit(previous.get(variable, "")).port
        if port is None or not _port_free(port):
            return []
        options += [option, str(port)]
    return options


def _start_simulator(var_dir: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """Start the simulator with a seeded world, from its kept state and ports when free: the process and the
    variables that point the control panel at it."""
    state = var_dir / "simulator"
    state.mkdir(parents=True, exist_ok=True)
    env_file = state / "simulator.env"
    ports = _previous_ports(env_file)
    env_file.unlink(missing_ok=True)
    argv = [
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
        "--state-file",
        str(state / "state.json"),
        "--env-file",
        str(env_file),
        *(arg for uri in redirect_uris(env["CPV_BASE_URL"]) for arg in ("--redirect-uri", uri)),
    ]
    process = subprocess.Popen(  # noqa: S603
        argv + ports, cwd=BASE_DIR, env=env, stdout=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while not env_file.exists() or not env_file.read_text().strip():
        if ports and process.poll() is not None:
            # a port was taken between the check and the start: new ones will do
            ports = []
            process = subprocess.Popen(  # noqa: S603
                argv, cwd=BASE_DIR, env=env, stdout=subprocess.DEVNULL, start_new_session=True
            )
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit("[demo] the simulator did not start; run `python -m simulator` to see why")
        time.sleep(0.2)
    time.sleep(0.2)  # the file is written in one go; give the last line a moment
    return process, env_file_values(env_file)


class _Output:
    """Forwards the children's output to the terminal line by line, and notices the lines that say they are ready."""

    def __init__(self) -> None:
        self._threads: list[threading.Thread] = []

    def forward(self, stream: IO[str], ready: threading.Event, is_ready: Callable[[str], bool]) -> None:
        def pump() -> None:
            for line in stream:
                _print(line.rstrip("\n"))
                if not ready.is_set() and is_ready(line):
                    ready.set()
            ready.set()  # a child that exited is not waited for

        thread = threading.Thread(target=pump, daemon=True)
        thread.start()
        self._threads.append(thread)

    def drain(self) -> None:
        for thread in self._threads:
            thread.join(timeout=5)


def _listening(host: str, port: int) -> bool:
    # A connection, not a request: the dev server would log a request line after the demo's key lines.
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _demo_microsoft_account(env: dict[str, str]) -> tuple[str, str] | None:
    """The object id and sign-in name of the simulated vendor's staff admin, read from the simulator's world."""
    control = env.get("SIMULATOR_CONTROL_URL", "")
    if not control:
        return None
    try:
        response = requests.get(f"{control}/world", timeout=10, verify=env.get("REQUESTS_CA_BUNDLE") or True)
        response.raise_for_status()
        users = response.json()["vendor"].get("users", [])
    except (requests.RequestException, ValueError, KeyError) as exc:
        _say(f"no Microsoft staff sign-in for the demo user: the simulator's world could not be read ({exc})")
        return None
    for user in users:
        if str(user.get("upn", "")).split("@", 1)[0] == DEMO_MICROSOFT_LOGIN:
            return str(user["oid"]), str(user["upn"])
    return None


def main() -> int:
    port = os.environ.get("CPV_DEMO_PORT", "8000")
    host = os.environ.get("CPV_DEMO_HOST", "127.0.0.1")
    env = dict(os.environ)
    env.setdefault("CPV_BASE_URL", f"http://{host}:{port}")
    var_dir = Path(env.get("CPV_VAR_DIR") or BASE_DIR / "var")
    var_dir.mkdir(parents=True, exist_ok=True)
    env["CPV_VAR_DIR"] = str(var_dir)

    python = sys.executable
    children: dict[str, subprocess.Popen[Any]] = {}
    # What the demo gives its processes, kept for commands run from another terminal (cpv/env_files.py reads it).
    shared = {"CPV_BASE_URL": env["CPV_BASE_URL"]}
    if env.get("CPV_DEMO_SIMULATOR", "on") != "off":
        children["simulator"], variables = _start_simulator(var_dir, env)
        # Everything Microsoft-shaped points at the simulator (CPV_DEMO_SIMULATOR=off keeps your own).
        for key, value in variables.items():
            if key in {"REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"} or key.startswith(("CPV_", "AZURE_", "SIMULATOR_")):
                env[key] = shared[key] = value
        _say(f"the simulated Microsoft cloud signs in at {variables.get('CPV_AUTHORITY_HOST')}")
        # Staff sign in with Microsoft on the simulated vendor's tenant, and the partner pages name the vendor as
        # its app registration does (unless the environment says otherwise).
        for key, value in (
            ("CPV_STAFF_TENANT_ID", variables.get("CPV_VENDOR_TENANT_ID", "")),
            ("CPV_VENDOR_NAME", variables.get("SIMULATOR_APP_NAME", "")),
        ):
            if value and not env.get(key):
                env[key] = shared[key] = value
    write_demo_env(var_dir, shared, pid=os.getpid())
    try:
        _run([python, "manage.py", "migrate", "--no-input", "-v", "0"], env)
        password = demo_user_password(var_dir, env)
        microsoft = _demo_microsoft_account(env) if "simulator" in children else None
        if microsoft is not None:
            _run([python, "manage.py", "staff_bind_microsoft", DEMO_USERNAME, microsoft[0]], env)
        invitation = _output([python, "manage.py", "demo_invitation"], env) if "simulator" in children else []
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
    # Lines that say a child is ready to work; the demo's key lines are printed after them.
    ready_lines: dict[str, Callable[[str], bool]] = {
        "worker": lambda line: line.rstrip().endswith(" ready."),
        "beat": lambda line: "beat: Starting" in line,
    }
    stopping = False
    output = _Output()

    def stop(signum: int = signal.SIGTERM, frame: FrameType | None = None) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        _say("stopping web, worker, beat and the simulator")
        # From now on a command run from another terminal says the demo is not running (cpv/env_files.py).
        (var_dir / DEMO_PID_FILE).unlink(missing_ok=True)
        # The simulator goes last: a task the worker finishes on its way out still reaches it, and what it issued
        # is in the state the simulator writes when it stops.
        product = [child for name, child in children.items() if name != "simulator"]
        for group in (product, [children["simulator"]] if "simulator" in children else []):
            for child in group:
                if child.poll() is None:
                    os.killpg(child.pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            for child in group:
                try:
                    child.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    os.killpg(child.pid, signal.SIGKILL)
                    child.wait()
        output.drain()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    child_env = env | {"PYTHONUNBUFFERED": "1"}
    # Each process as production splits them: the web seals tokens with the public key alone (var/vault-seal.pub),
    # the worker opens them; beat queues work and holds no key (unless the environment says otherwise).
    roles = {"web": "web", "worker": "worker", "beat": "beat"}
    readiness: list[threading.Event] = []
    for name, argv in commands.items():
        child = subprocess.Popen(  # noqa: S603
            argv,
            cwd=BASE_DIR,
            env={"CPV_PROCESS_ROLE": roles[name]} | child_env,
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        children[name] = child
        if name in ready_lines and child.stdout is not None:
            ready = threading.Event()
            readiness.append(ready)
            output.forward(child.stdout, ready, ready_lines[name])
        elif child.stdout is not None:
            output.forward(child.stdout, threading.Event(), lambda line: False)

    deadline = time.monotonic() + READY_TIMEOUT
    while not stopping and time.monotonic() < deadline:
        if all(ready.is_set() for ready in readiness) and _listening(host, int(port)):
            break
        if any(child.poll() is not None for child in children.values()):
            break
        time.sleep(0.2)
    if not stopping:
        _print(
            "",
            f"[demo] The control panel is at {env['CPV_BASE_URL']}/ (Ctrl-C stops everything)",
            f"Demo staff user: username {DEMO_USERNAME}  password {password}",
            *(
                [f'Or "Sign in with Microsoft" as {microsoft[1]} on the simulated sign-in page.']
                if microsoft is not None
                else []
            ),
            *invitation,
            f"[demo] Commands from another terminal (.venv/bin/python manage.py ...) use this demo's settings "
            f"({var_dir / DEMO_ENV_FILE}).",
            "",
        )

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
    if sys.argv[1:2] == ["--check-password"]:
        sys.exit(_check_password(sys.argv[2], Path(sys.argv[3])))
    sys.exit(main())

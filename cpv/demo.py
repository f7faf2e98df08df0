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
from collections import deque
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
# The demo's invited partner (dashboard/management/commands/demo_invitation.py).
DEMO_PARTNER = "Contoso Partners (demo)"
# How long Ctrl-C gives the web server, worker and beat, then the simulator, before it kills them: an idle worker's
# warm shutdown takes about 5 s (Celery's timer thread), so the worker is most often killed once idle.
STOP_GRACE = 2.5
SIMULATOR_STOP_GRACE = 1.2
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


def worker_command(python: str, *, hostname: str) -> list[str]:
    """The demo's Celery worker: no `-Q`, so it consumes every queue the settings declare (the default queue and the
    verification's, CPV_VERIFY_QUEUE)."""
    return [python, "-m", "celery", "-A", "cpv", "--quiet", "worker", "--loglevel", "INFO", "--concurrency", "2",
            "--hostname", hostname]  # fmt: skip


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


# A line of the product's text logs: "2026-12-07 12:21:32,973 WARNING kombu.connection message".
_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[,.]\d+ (?P<level>[A-Z]+) (?P<logger>\S+)")
_SHOWN_LEVELS = {"WARNING", "ERROR", "CRITICAL"}
# Warnings that say nothing to someone trying the demo: the embedded broker's missing host name, the dev server's
# request lines (a refused request's warning from django.request says it once).
_NOISE = (
    re.compile(r"kombu\.connection No hostname was supplied"),
    re.compile(r" django\.server "),
)
# A Python warning as the warnings module prints it: "path.py:893: SomeWarning: message". Celery's about running as
# root (in a container) is left out.
_PYTHON_WARNING = re.compile(r"^\S+\.py:\d+: (?P<category>\w*Warning): ")
_QUIET_WARNINGS = {"SecurityWarning"}
# What a child printed last, shown if it exits on its own (its error is among them).
_KEPT_LINES = 40


class _Terminal:
    """Which of a child's lines reach the terminal: warnings and errors, an error's traceback, never the banners,
    the request lines, or a warning's traceback (a viewer's refused request logs one)."""

    def __init__(self) -> None:
        self._showing = False  # whether the lines that continue the last log record are shown

    def shown(self, line: str) -> bool:
        record = _LOG_LINE.match(line)
        if record is None:
            if line.lstrip().startswith("{"):  # CPV_LOG_FORMAT=json: one record a line
                return self._json_shown(line)
            warning = _PYTHON_WARNING.match(line)
            if warning is not None:
                self._showing = False
                return warning.group("category") not in _QUIET_WARNINGS
            return self._showing and record_continues(line)
        level = record.group("level")
        noisy = any(pattern.search(line) for pattern in _NOISE)
        self._showing = level in {"ERROR", "CRITICAL"} and not noisy
        return level in _SHOWN_LEVELS and not noisy

    def _json_shown(self, line: str) -> bool:
        import json

        try:
            record = json.loads(line)
        except ValueError:
            return False
        level = str(record.get("level") or record.get("levelname") or "").upper()
        logger = str(record.get("logger") or record.get("name") or "")
        self._showing = False
        return level in _SHOWN_LEVELS and logger != "django.server" and "No hostname was supplied" not in line


def record_continues(line: str) -> bool:
    """A line that belongs to the log record before it (a traceback's), not a banner of its own."""
    return bool(line.strip())


class _Output:
    """Forwards the children's warnings and errors to the terminal line by line, notices the lines that say they are
    ready, and keeps each child's last lines."""

    def __init__(self) -> None:
        self._threads: list[threading.Thread] = []
        self.last_lines: dict[str, deque[str]] = {}

    def forward(self, name: str, stream: IO[str], ready: threading.Event, is_ready: Callable[[str], bool]) -> None:
        terminal = _Terminal()
        kept: deque[str] = deque(maxlen=_KEPT_LINES)
        self.last_lines[name] = kept

        def pump() -> None:
            for line in stream:
                line = line.rstrip("\n")
                kept.append(line)
                if terminal.shown(line):
                    _print(line)
                if not ready.is_set() and is_ready(line):
                    ready.set()
            ready.set()  # a child that exited is not waited for

        thread = threading.Thread(target=pump, daemon=True)
        thread.start()
        self._threads.append(thread)

    def drain(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))


def _signal_group(child: subprocess.Popen[Any], signum: int) -> None:
    try:
        os.killpg(child.pid, signum)
    except ProcessLookupError:
        pass


def _listening(host: str, port: int) -> bool:
    # A connection, not a request: the dev server would log a request line after the demo's key lines.
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _world(env: dict[str, str]) -> dict[str, Any]:
    """The simulator's seeded world (its tenants and accounts), or {} when it cannot be read."""
    control = env.get("SIMULATOR_CONTROL_URL", "")
    if not control:
        return {}
    try:
        response = requests.get(f"{control}/world", timeout=10, verify=env.get("REQUESTS_CA_BUNDLE") or True)
        response.raise_for_status()
        world = response.json()
        users = world["vendor"]["users"]
    except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
        _say(f"the simulator's world could not be read ({exc}): no Microsoft sign-in for the demo user")
        return {}
    return dict(world) if isinstance(users, list) else {}


def _demo_microsoft_account(world: dict[str, Any]) -> tuple[str, str] | None:
    """The object id and sign-in name of the simulated vendor's staff admin."""
    for user in world.get("vendor", {}).get("users", []):
        if str(user.get("upn", "")).split("@", 1)[0] == DEMO_MICROSOFT_LOGIN:
            return str(user["oid"]), str(user["upn"])
    return None


def _lacks(user: dict[str, Any]) -> list[str]:
    """What a seeded partner account lacks to consent for its organisation, in words."""
    missing = []
    if not user.get("global_admin"):
        missing.append("the Global Administrator role")
    if not user.get("admin_agent"):
        missing.append("the Admin Agent role")
    if not user.get("mfa_registered", True):
        missing.append("MFA registration")
    if not user.get("enabled", True):
        missing.append("an enabled account")
    return missing


def account_lines(world: dict[str, Any], *, invited: str) -> list[str]:
    """Which simulated account consents for the invited partner, and what each seeded account lacks."""
    partners = [p for p in world.get("partners", []) if p.get("users")]
    if not partners:
        return []
    first = partners[0]
    able = next((u for u in first["users"] if not _lacks(u)), None)
    lines = []
    if able is not None:
        lines.append(
            f'To consent for the invited "{invited}", sign in as {able["upn"]}: the invited partner becomes its '
            f"tenant, {first.get('name', '')} (the simulated sign-in lists the seeded tenants' accounts; pick, no "
            "password)."
        )
    tenants = ", ".join(f"{p.get('name', '')} ({str(p['users'][0]['upn']).split('@', 1)[1]})" for p in partners)
    lines.append(f"Each seeded partner tenant has the same accounts ({tenants}):")
    for user in first["users"]:
        name = str(user["upn"]).split("@", 1)[0]
        missing = _lacks(user)
        lines.append(f"  {name}@...  " + (f"lacks {' and '.join(missing)}" if missing else "has what consent needs"))
    return lines


def certificate_lines(authority: str, state_dir: Path) -> list[str]:
    """How a browser gets past the simulator's certificate (its CA is kept under var/, so this is asked once)."""
    ca = state_dir / "ca.pem"
    return [
        f"The simulated Microsoft pages ({authority}) use a certificate from the demo's own CA, {ca}, kept across "
        "restarts: a browser warns about it once.",
        '  Pass the warning ("Advanced", then "Proceed to 127.0.0.1"), or trust the CA: Chrome or Edge: Settings > '
        "Privacy and security > Security > Manage certificates > Authorities > Import; Firefox: Settings > Privacy & "
        "Security > View Certificates > Authorities > Import; macOS: open it in Keychain Access, Always Trust.",
    ]


def certificates_only(variables: dict[str, str]) -> dict[str, str]:
    """The simulator's variables without the secret of an app that has a certificate: the demo signs in as production
    should, with certificates (CPV_CLIENT_CERTIFICATE, CPV_USGOV_CLIENT_CERTIFICATE, ...); an app that has only a
    secret (the sandbox's) keeps it."""
    return {
        key: value
        for key, value in variables.items()
        if not (key.endswith("_CLIENT_SECRET") and variables.get(key.removesuffix("_SECRET") + "_CERTIFICATE"))
    }


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
        for key, value in certificates_only(variables).items():
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
        world = _world(env) if "simulator" in children else {}
        microsoft = _demo_microsoft_account(world)
        if microsoft is not None:
            # audited only when the binding changes (the first start, or a new simulated world)
            _output([python, "manage.py", "staff_bind_microsoft", DEMO_USERNAME, microsoft[0]], env)
        invitation = _output([python, "manage.py", "demo_invitation"], env) if "simulator" in children else []
    except (subprocess.CalledProcessError, KeyboardInterrupt):
        for child in children.values():
            os.killpg(child.pid, signal.SIGTERM)
        raise

    commands = {
        "web": [python, "manage.py", "runserver", f"{host}:{port}", "--noreload"],
        "worker": worker_command(python, hostname=f"demo-{port}@%h"),
        "beat": [
            python,
            "-m",
            "celery",
            "-A",
            "cpv",
            "--quiet",
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
        started = time.monotonic()
        _say("stopping web, worker, beat and the simulator")
        # From now on a command run from another terminal says the demo is not running (cpv/env_files.py).
        (var_dir / DEMO_PID_FILE).unlink(missing_ok=True)
        # The simulator goes last: a task the worker finishes on its way out still reaches it, and what it issued
        # is in the state the simulator writes when it stops. Each group has a few seconds, then is killed: the whole
        # stop takes under 5 s.
        product = [child for name, child in children.items() if name != "simulator"]
        simulator = [children["simulator"]] if "simulator" in children else []
        for group, grace in ((product, STOP_GRACE), (simulator, SIMULATOR_STOP_GRACE)):
            for child in group:
                if child.poll() is None:
                    _signal_group(child, signal.SIGTERM)
            deadline = time.monotonic() + grace
            for child in group:
                try:
                    child.wait(timeout=max(0.05, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    _signal_group(child, signal.SIGKILL)
                    child.wait()
        output.drain(timeout=0.5)
        _say(f"stopped ({time.monotonic() - started:.1f} s)")

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
            output.forward(name, child.stdout, ready, ready_lines[name])
        elif child.stdout is not None:
            output.forward(name, child.stdout, threading.Event(), lambda line: False)

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
            *account_lines(world, invited=DEMO_PARTNER),
            *(
                certificate_lines(str(env.get("CPV_AUTHORITY_HOST", "")), var_dir / "simulator")
                if "simulator" in children
                else []
            ),
            f"[demo] Commands from another terminal (.venv/bin/python manage.py ...) use this demo's settings "
            f"({var_dir / DEMO_ENV_FILE}).",
            "",
        )

    status = 0
    while not stopping:
        for name, child in children.items():
            if child.poll() is not None:
                output.drain(timeout=1)
                last = list(output.last_lines.get(name, []))
                _print(*(f"{name}| {line}" for line in last))
                _say(f"{name} exited with status {child.returncode} (its last lines are above)")
                status = 1
                stop()
                break
        time.sleep(0.5)
    return status


if __name__ == "__main__":
    if sys.argv[1:2] == ["--check-password"]:
        sys.exit(_check_password(sys.argv[2], Path(sys.argv[3])))
    sys.exit(main())

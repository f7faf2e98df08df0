"""The files that may fill in the environment before the configuration is read: `.env` when asked for, otherwise,
outside production, a running `make demo`'s `var/demo.env`."""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

import environ

from cpv.config import PRODUCTION, ConfigError

# `make demo` writes the settings it gives its processes here (cpv/demo.py), under the var folder, and its process
# id beside them while it runs.
DEMO_ENV_FILE = "demo.env"
DEMO_PID_FILE = "demo.pid"
DEMO_TRUST_VARIABLES = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")


def read_dotenv_if_asked(environ_map: os._Environ[str], *, base_dir: Path) -> None:
    """Read `.env` when DJANGO_READ_DOT_ENV_FILE is true, else (outside production) `read_demo_env`; set variables win.
    Raises ConfigError when `.env` is missing, SystemExit when var/demo.env's demo is not running."""
    if environ_map.get("DJANGO_READ_DOT_ENV_FILE", "").lower() not in {"1", "true", "yes", "on"}:
        read_demo_env(environ_map, base_dir=base_dir)
        return
    path = Path(environ_map.get("DJANGO_ENV_FILE") or base_dir / ".env")
    if not path.is_file():
        raise ConfigError([f"DJANGO_READ_DOT_ENV_FILE is set but {path} does not exist"])
    # An empty variable counts as unset everywhere in cpv/config.py, so the file may fill it in.
    for name in [k for k, v in environ_map.items() if not v.strip()]:
        del environ_map[name]
    environ.Env.read_env(str(path), overwrite=False)


def env_file_values(path: Path) -> dict[str, str]:
    """The KEY=value lines of a file the demo or the simulator wrote (no quoting, `#` comments); {} if missing."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#") and key.strip():
            values[key.strip()] = value
    return values


def demo_running(var_dir: Path) -> bool:
    """Whether the demo that wrote var/demo.env still runs, by var/demo.pid's process (a local check, no network)."""
    try:
        pid = int((var_dir / DEMO_PID_FILE).read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: asks whether the process exists, and sends nothing
    except OSError:
        # no such process, or another user's: the demo runs as the user who owns var/demo.pid
        return False
    return True


def read_demo_env(environ_map: MutableMapping[str, str], *, base_dir: Path) -> None:
    """Fill in what the running demo gives its processes from var/demo.env (set variables win, but not the CA bundle
    while its simulated cloud is used). Raises SystemExit when the file names the simulator and the demo is not
    running."""
    if (environ_map.get("CPV_MODE") or "").strip() == PRODUCTION:
        return
    var_dir = Path((environ_map.get("CPV_VAR_DIR") or "").strip() or base_dir / "var")
    path = var_dir / DEMO_ENV_FILE
    values = env_file_values(path)
    for name, value in values.items():
        if not (environ_map.get(name) or "").strip():
            environ_map[name] = value
    authority = values.get("CPV_AUTHORITY_HOST")
    if not authority or environ_map.get("CPV_AUTHORITY_HOST") != authority:
        return
    # The demo's simulated cloud is in use: trust it as the demo's own processes do. Its bundle is this machine's
    # CAs (those REQUESTS_CA_BUNDLE named in the shell that started the demo) plus the simulator's own CA, so it
    # takes the place of a bundle the shell names; with the shell's alone, every call to the simulator would fail.
    for name in DEMO_TRUST_VARIABLES:
        if values.get(name):
            environ_map[name] = values[name]
    if not demo_running(var_dir):
        raise SystemExit(
            f"The demo is not running: the settings `make demo` keeps in {path} point at its simulated Microsoft "
            f"cloud ({authority}), which stopped with it.\nStart `make demo` in another terminal and run the "
            f"command again, or delete {path} to run commands on the embedded defaults without the demo."
        )

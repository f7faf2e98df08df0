"""var/demo.env: what a running `make demo` gives its processes, read by every command run from the checkout."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cpv.demo import write_demo_env
from cpv.env_files import env_file_values, read_demo_env
from tests.conftest import free_port

# The demo's simulated cloud, as its file names it. Nothing listens there: reading the file never asks it.
AUTHORITY = f"https://127.0.0.1:{free_port()}"


def _ended_process() -> int:
    """The id of a process that has ended, as a demo that was killed leaves in var/demo.pid."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _demo(var_dir: Path, authority: str = AUTHORITY, *, pid: int | None = None) -> dict[str, str]:
    """The files a demo writes at its start: by default one still running (this process)."""
    var_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "CPV_BASE_URL": "http://127.0.0.1:8181",
        "CPV_CLOUD": "custom",
        "CPV_AUTHORITY_HOST": authority,
        "CPV_CLIENT_SECRET": "Sim8Q~SIMCANARY-not-a-real-secret",
        "REQUESTS_CA_BUNDLE": str(var_dir / "simulator" / "ca-bundle.pem"),
    }
    write_demo_env(var_dir, settings, pid=os.getpid() if pid is None else pid)
    return settings


def test_the_demo_writes_its_settings_and_its_process_for_its_owner_only(tmp_path: Path) -> None:
    settings = _demo(tmp_path / "var")

    path = tmp_path / "var" / "demo.env"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert env_file_values(path) == settings
    pid = tmp_path / "var" / "demo.pid"
    assert stat.S_IMODE(pid.stat().st_mode) == 0o600
    assert pid.read_text().strip() == str(os.getpid())


def test_a_command_gets_the_running_demos_settings_and_explicit_variables_win(tmp_path: Path) -> None:
    _demo(tmp_path / "var")
    shell = {"CPV_VAR_DIR": str(tmp_path / "var"), "CPV_BASE_URL": "http://mine.example", "CPV_CLOUD": "  "}

    read_demo_env(shell, base_dir=tmp_path)

    assert shell["CPV_BASE_URL"] == "http://mine.example"
    assert shell["CPV_CLOUD"] == "custom"  # an empty variable counts as unset
    assert shell["CPV_AUTHORITY_HOST"] == AUTHORITY
    assert shell["REQUESTS_CA_BUNDLE"].endswith("ca-bundle.pem")


def test_the_demos_ca_bundle_takes_the_place_of_the_shells_while_its_cloud_is_in_use(tmp_path: Path) -> None:
    settings = _demo(tmp_path / "var")
    shell = {"CPV_VAR_DIR": str(tmp_path / "var"), "REQUESTS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt"}

    read_demo_env(shell, base_dir=tmp_path)

    assert shell["REQUESTS_CA_BUNDLE"] == settings["REQUESTS_CA_BUNDLE"]


def test_the_file_is_found_in_the_checkouts_var_folder(tmp_path: Path) -> None:
    _demo(tmp_path / "var")
    shell: dict[str, str] = {}

    read_demo_env(shell, base_dir=tmp_path)

    assert shell["CPV_CLOUD"] == "custom"


def test_production_never_reads_it(tmp_path: Path) -> None:
    _demo(tmp_path / "var")
    shell = {"CPV_VAR_DIR": str(tmp_path / "var"), "CPV_MODE": "production"}

    read_demo_env(shell, base_dir=tmp_path)

    assert shell == {"CPV_VAR_DIR": str(tmp_path / "var"), "CPV_MODE": "production"}


def test_without_a_demo_file_nothing_changes(tmp_path: Path) -> None:
    shell = {"CPV_VAR_DIR": str(tmp_path / "var")}

    read_demo_env(shell, base_dir=tmp_path)

    assert shell == {"CPV_VAR_DIR": str(tmp_path / "var")}


@pytest.mark.parametrize("how", ["stopped with Ctrl-C", "was killed"])
def test_a_command_says_the_demo_is_not_running_once_it_stopped(tmp_path: Path, how: str) -> None:
    _demo(tmp_path / "var", pid=_ended_process())
    if how == "stopped with Ctrl-C":
        (tmp_path / "var" / "demo.pid").unlink()

    with pytest.raises(SystemExit) as stopped:
        read_demo_env({"CPV_VAR_DIR": str(tmp_path / "var")}, base_dir=tmp_path)

    message = str(stopped.value.code)
    assert message.startswith("The demo is not running")
    assert AUTHORITY in message and "make demo" in message
    assert "SIMCANARY" not in message


def test_a_command_with_its_own_cloud_does_not_ask_for_the_demo(tmp_path: Path) -> None:
    _demo(tmp_path / "var", pid=_ended_process())
    shell = {
        "CPV_VAR_DIR": str(tmp_path / "var"),
        "CPV_AUTHORITY_HOST": "https://login.example",
        "REQUESTS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
    }

    read_demo_env(shell, base_dir=tmp_path)

    assert shell["CPV_AUTHORITY_HOST"] == "https://login.example"
    assert shell["REQUESTS_CA_BUNDLE"] == "/etc/ssl/certs/ca-certificates.crt"

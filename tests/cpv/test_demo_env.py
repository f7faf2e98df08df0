"""var/demo.env: what a running `make demo` gives its processes, read by every command run from the checkout."""

from __future__ import annotations

import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cpv.demo import write_demo_env
from cpv.env_files import env_file_values, read_demo_env
from tests.conftest import free_port


@pytest.fixture
def listening() -> Iterator[str]:
    """An https URL whose port accepts connections (the demo's simulator, as far as a probe can tell)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield f"https://127.0.0.1:{server.getsockname()[1]}"


def _demo(var_dir: Path, authority: str) -> dict[str, str]:
    var_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "CPV_BASE_URL": "http://127.0.0.1:8181",
        "CPV_CLOUD": "custom",
        "CPV_AUTHORITY_HOST": authority,
        "CPV_CLIENT_SECRET": "Sim8Q~SIMCANARY-not-a-real-secret",
        "REQUESTS_CA_BUNDLE": str(var_dir / "simulator" / "ca-bundle.pem"),
    }
    write_demo_env(var_dir, settings)
    return settings


def test_the_demo_writes_its_settings_for_its_owner_only(tmp_path: Path, listening: str) -> None:
    settings = _demo(tmp_path / "var", listening)

    path = tmp_path / "var" / "demo.env"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert env_file_values(path) == settings


def test_a_command_gets_the_running_demos_settings_and_explicit_variables_win(tmp_path: Path, listening: str) -> None:
    _demo(tmp_path / "var", listening)
    shell = {"CPV_VAR_DIR": str(tmp_path / "var"), "CPV_BASE_URL": "http://mine.example", "CPV_CLOUD": "  "}

    read_demo_env(shell, base_dir=tmp_path)

    assert shell["CPV_BASE_URL"] == "http://mine.example"
    assert shell["CPV_CLOUD"] == "custom"  # an empty variable counts as unset
    assert shell["CPV_AUTHORITY_HOST"] == listening
    assert shell["REQUESTS_CA_BUNDLE"].endswith("ca-bundle.pem")


def test_the_demos_ca_bundle_takes_the_place_of_the_shells_while_its_cloud_is_in_use(
    tmp_path: Path, listening: str
) -> None:
    settings = _demo(tmp_path / "var", listening)
    shell = {"CPV_VAR_DIR": str(tmp_path / "var"), "REQUESTS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt"}

    read_demo_env(shell, base_dir=tmp_path)

    assert shell["REQUESTS_CA_BUNDLE"] == settings["REQUESTS_CA_BUNDLE"]


def test_the_file_is_found_in_the_checkouts_var_folder(tmp_path: Path, listening: str) -> None:
    _demo(tmp_path / "var", listening)
    shell: dict[str, str] = {}

    read_demo_env(shell, base_dir=tmp_path)

    assert shell["CPV_CLOUD"] == "custom"


def test_production_never_reads_it(tmp_path: Path, listening: str) -> None:
    _demo(tmp_path / "var", listening)
    shell = {"CPV_VAR_DIR": str(tmp_path / "var"), "CPV_MODE": "production"}

    read_demo_env(shell, base_dir=tmp_path)

    assert shell == {"CPV_VAR_DIR": str(tmp_path / "var"), "CPV_MODE": "production"}


def test_without_a_demo_file_nothing_changes(tmp_path: Path) -> None:
    shell = {"CPV_VAR_DIR": str(tmp_path / "var")}

    read_demo_env(shell, base_dir=tmp_path)

    assert shell == {"CPV_VAR_DIR": str(tmp_path / "var")}


def test_a_command_says_the_demo_is_not_running_when_its_simulator_does_not_answer(tmp_path: Path) -> None:
    gone = f"https://127.0.0.1:{free_port()}"
    _demo(tmp_path / "var", gone)

    with pytest.raises(SystemExit) as stopped:
        read_demo_env({"CPV_VAR_DIR": str(tmp_path / "var")}, base_dir=tmp_path)

    message = str(stopped.value.code)
    assert message.startswith("The demo is not running")
    assert gone in message and "make demo" in message
    assert "SIMCANARY" not in message


def test_a_command_with_its_own_cloud_does_not_ask_for_the_demo(tmp_path: Path) -> None:
    _demo(tmp_path / "var", f"https://127.0.0.1:{free_port()}")
    shell = {
        "CPV_VAR_DIR": str(tmp_path / "var"),
        "CPV_AUTHORITY_HOST": "https://login.example",
        "REQUESTS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
    }

    read_demo_env(shell, base_dir=tmp_path)

    assert shell["CPV_AUTHORITY_HOST"] == "https://login.example"
    assert shell["REQUESTS_CA_BUNDLE"] == "/etc/ssl/certs/ca-certificates.crt"

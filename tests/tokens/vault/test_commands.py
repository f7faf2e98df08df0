"""`manage.py vault_check` and `manage.py vault_rotate_key`, as an operator runs them."""

from __future__ import annotations

import io
import uuid
from typing import Any

import pytest
from django.core.management import CommandError, call_command

import tokens.vault
from tests.tokens.vault.conftest import new_key
from tokens.vault import Vault, get_vault, secret_name_for
from tokens.vault.local import LocalVault, key_id_for
from tokens.vault.models import VaultSecretVersion

pytestmark = pytest.mark.django_db

PROBE_CANARY = f"probe-canary-{uuid.uuid4().hex}"
STEPS = ["health", "write", "read", "versions", "disable", "delete", "purge"]


@pytest.fixture(autouse=True)
def known_probe_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tokens.vault.services._probe_value", lambda: PROBE_CANARY)


@pytest.fixture
def configured(vault: Vault, monkeypatch: pytest.MonkeyPatch) -> Vault:
    """The contract's vault (for Azure: with recorded sleeps) as the one `get_vault()` returns."""
    monkeypatch.setattr(tokens.vault, "_vaults", {tokens.vault.resolve_vault_url(""): vault})
    return vault


def run(command: str, *args: str) -> tuple[str, CommandError | None]:
    out = io.StringIO()
    try:
        call_command(command, *args, stdout=out, no_color=True)
    except CommandError as exc:
        return out.getvalue(), exc
    return out.getvalue(), None


def statuses(output: str) -> dict[str, str]:
    return {line.split()[0]: line.split()[1] for line in output.splitlines() if line.split()[0] in STEPS}


def test_vault_check_passes_every_step_and_leaves_nothing_behind(configured: Vault, backend: str, request: Any) -> None:
    output, error = run("vault_check")

    assert error is None, output
    assert statuses(output) == dict.fromkeys(STEPS, "OK")
    assert [line.split()[0] for line in output.splitlines()[:7]] == STEPS
    assert output.splitlines()[-1] == "vault check passed"
    assert PROBE_CANARY not in output
    if backend in ("local", "sealed"):
        assert not VaultSecretVersion.objects.exists()
    else:
        assert request.getfixturevalue("sim").control.secrets_state() == {}


def test_vault_check_can_leave_the_probe_soft_deleted(configured: Vault, backend: str) -> None:
    output, error = run("vault_check", "--no-purge")

    assert error is None, output
    assert statuses(output)["purge"] == "SKIPPED"
    assert "--no-purge" in output


def test_vault_check_reports_a_failed_step_with_its_reason_and_cleans_up(
    azure_vault: Vault, sim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens.vault, "_vaults", {tokens.vault.resolve_vault_url(""): azure_vault})
    sim.control.inject_fault(
        "vault",
        method="PATCH",
        status=403,
        body={"error": {"code": "Forbidden", "message": "no update permission"}},
    )

    output, error = run("vault_check")

    assert error is not None
    assert "disable" in str(error)
    got = statuses(output)
    assert got == {
        "health": "OK",
        "write": "OK",
        "read": "OK",
        "versions": "OK",
        "disable": "FAILED",
        "delete": "OK",
        "purge": "OK",
    }
    assert "VaultForbidden" in next(line for line in output.splitlines() if line.startswith("disable"))
    assert sim.control.secrets_state() == {}
    assert PROBE_CANARY not in output


def test_vault_check_fails_at_health_under_a_wrong_key(local_settings: Any) -> None:
    get_vault().write(name=secret_name_for(uuid.uuid4()), value="v")
    local_settings.VAULT_KEYS = [new_key()]

    output, error = run("vault_check")

    assert error is not None
    got = statuses(output)
    assert got["health"] == "FAILED"
    assert {got[step] for step in STEPS[1:]} == {"SKIPPED"}
    assert "VaultMisconfigured" in output


def test_vault_check_fails_when_writes_are_forbidden(
    azure_vault: Vault, sim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens.vault, "_vaults", {tokens.vault.resolve_vault_url(""): azure_vault})
    sim.control.inject_fault("vault", method="PUT", status=403, body={"error": {"code": "Forbidden", "message": "no"}})

    output, error = run("vault_check")

    assert error is not None
    got = statuses(output)
    assert (got["health"], got["write"], got["read"], got["delete"]) == ("OK", "FAILED", "SKIPPED", "SKIPPED")


def test_vault_rotate_key_reports_its_counts(local_settings: Any, vault_key: bytes) -> None:
    vault = get_vault()
    names = [secret_name_for(uuid.uuid4()) for _ in range(3)]
    for name in names:
        vault.write(name=name, value=f"value-of-{name}")
    new = new_key()
    local_settings.VAULT_KEYS = [new, vault_key]

    output, error = run("vault_rotate_key")

    assert error is None, output
    lines = output.splitlines()
    assert lines[:5] == [
        f"newest key id: {key_id_for(new)}",
        "rows: 3",
        "re-encrypted: 3",
        "already under the newest key: 0",
        "failed: 0",
    ]
    local_settings.VAULT_KEYS = [new]
    for name in names:
        assert get_vault().read(name=name).value.reveal() == f"value-of-{name}"
    output, error = run("vault_rotate_key")
    assert "re-encrypted: 0" in output and "already under the newest key: 3" in output


def test_vault_rotate_key_exits_non_zero_when_a_row_cannot_be_read(local_settings: Any, vault_key: bytes) -> None:
    lost_key = new_key()
    LocalVault(keys=[lost_key]).write(name="written-under-a-lost-key", value="v")
    local_settings.VAULT_KEYS = [new_key(), vault_key]

    output, error = run("vault_rotate_key")

    assert error is not None
    assert "failed: 1" in output
    assert "written-under-a-lost-key/" in output
    assert lost_key.hex() not in output


def test_vault_rotate_key_refuses_the_azure_backend(azure_settings: Any) -> None:
    with pytest.raises(CommandError, match="Key Vault"):
        call_command("vault_rotate_key", stdout=io.StringIO())

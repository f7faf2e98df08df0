"""The local backend: tampering, swapped rows, key mismatch, key rotation and the real version budget."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib import admin

from partners.models import AuditEvent
from tests.tokens.vault.conftest import new_key
from tokens.vault import (
    MAX_VERSIONS,
    Vault,
    VaultIntegrityError,
    VaultMisconfigured,
    VersionBudgetExceeded,
    get_vault,
    secret_name_for,
)
from tokens.vault.local import LocalVault, RotationReport, key_id_for
from tokens.vault.models import VaultSecretVersion
from tokens.vault.services import vault_key_rotate

pytestmark = pytest.mark.django_db


def fill(vault: Vault, *, secrets: int = 4, versions: int = 2) -> dict[tuple[str, str], str]:
    """Write some secrets; returns (name, version) -> value."""
    written = {}
    for s in range(secrets):
        name = secret_name_for(uuid.uuid4())
        for v in range(versions):
            value = f"value-{s}-{v}-{uuid.uuid4().hex}"
            written[(name, vault.write(name=name, value=value).version)] = value
    return written


def read_all(vault: Vault, written: dict[tuple[str, str], str]) -> None:
    for (name, version), value in written.items():
        assert vault.read(name=name, version=version).value.reveal() == value


def test_rows_hold_ciphertext_under_a_key_id(local_vault: Vault, vault_key: bytes) -> None:
    name = secret_name_for(uuid.uuid4())
    local_vault.write(name=name, value="plain-text-value")
    row = VaultSecretVersion.objects.get(name=name)
    assert row.key_id == key_id_for(vault_key) and len(row.key_id) == 16
    assert b"plain-text-value" not in bytes(row.ciphertext)
    assert len(bytes(row.nonce)) == 12


def test_a_tampered_ciphertext_is_detected(local_vault: Vault) -> None:
    name = secret_name_for(uuid.uuid4())
    written = local_vault.write(name=name, value="do-not-touch")
    row = VaultSecretVersion.objects.get(name=name)
    tampered = bytearray(bytes(row.ciphertext))
    tampered[0] ^= 0x01
    VaultSecretVersion.objects.filter(pk=row.pk).update(ciphertext=bytes(tampered))

    with pytest.raises(VaultIntegrityError) as caught:
        local_vault.read(name=name)

    assert written.version in str(caught.value)
    assert "do-not-touch" not in str(caught.value)


@pytest.mark.parametrize("same_secret", [False, True], ids=["across-secrets", "across-versions"])
def test_a_swapped_row_is_detected(local_vault: Vault, same_secret: bool) -> None:
    first_name = secret_name_for(uuid.uuid4())
    second_name = first_name if same_secret else secret_name_for(uuid.uuid4())
    first = local_vault.write(name=first_name, value="first-value")
    second = local_vault.write(name=second_name, value="second-value")
    a = VaultSecretVersion.objects.get(version=first.version)
    b = VaultSecretVersion.objects.get(version=second.version)
    VaultSecretVersion.objects.filter(pk=a.pk).update(nonce=bytes(b.nonce), ciphertext=bytes(b.ciphertext))
    VaultSecretVersion.objects.filter(pk=b.pk).update(nonce=bytes(a.nonce), ciphertext=bytes(a.ciphertext))

    with pytest.raises(VaultIntegrityError):
        local_vault.read(name=first_name, version=first.version)
    with pytest.raises(VaultIntegrityError):
        local_vault.read(name=second_name, version=second.version)


def test_a_wrong_vault_key_fails_at_start_naming_key_ids(local_settings: Any, vault_key: bytes) -> None:
    name = secret_name_for(uuid.uuid4())
    get_vault().write(name=name, value="written-with-the-right-key")
    wrong = new_key()
    local_settings.VAULT_KEYS = [wrong]

    vault = get_vault()
    with pytest.raises(VaultMisconfigured) as from_health:
        vault.health()
    with pytest.raises(VaultMisconfigured) as at_first_use:
        vault.version_count(name=secret_name_for(uuid.uuid4()))

    for caught in (from_health, at_first_use):
        message = str(caught.value)
        assert key_id_for(vault_key) in message  # the key id the rows expect
        assert key_id_for(wrong) in message  # the key id VAULT_KEY holds
        for key in (vault_key, wrong):
            assert base64.urlsafe_b64encode(key).decode().rstrip("=") not in message
            assert key.hex() not in message


def test_no_vault_key_at_all_is_misconfiguration(local_settings: Any) -> None:
    local_settings.VAULT_KEYS = []
    vault = get_vault()
    with pytest.raises(VaultMisconfigured, match="VAULT_KEY"):
        vault.health()
    with pytest.raises(VaultMisconfigured, match="VAULT_KEY"):
        vault.write(name="some-name", value="v")


def test_the_readiness_check_reports_a_wrong_key(local_settings: Any) -> None:
    from dashboard.health import check_vault

    get_vault().write(name=secret_name_for(uuid.uuid4()), value="v")
    check_vault()
    local_settings.VAULT_KEYS = [new_key()]
    with pytest.raises(VaultMisconfigured):
        check_vault()


def test_rotation_keeps_every_secret_readable_at_every_step(local_settings: Any, vault_key: bytes) -> None:
    written = fill(get_vault(), secrets=4, versions=3)
    old_id, new = key_id_for(vault_key), new_key()
    new_id = key_id_for(new)
    # A deleted secret is rotated too: it must stay recoverable.
    deleted_name = next(iter(written))[0]
    get_vault().delete(name=deleted_name)
    local_settings.VAULT_KEYS = [new, vault_key]
    steps: list[tuple[int, set[str]]] = []

    def between_rows(report: RotationReport) -> None:
        # A separate vault object, as another process would read while rotation runs.
        reader = LocalVault(keys=[new, vault_key])
        reader.check_keys()
        read_all(reader, {k: v for k, v in written.items() if k[0] != deleted_name})
        steps.append((report.rotated, set(VaultSecretVersion.objects.values_list("key_id", flat=True))))

    report = vault_key_rotate(after_row=between_rows)

    assert (report.total, report.rotated, report.already_current, report.failed) == (12, 12, 0, 0)
    assert [rotated for rotated, _ in steps] == list(range(1, 13))
    assert all(ids == {old_id, new_id} for _, ids in steps[:-1])  # mixed keys in between, readable throughout
    assert steps[-1][1] == {new_id}
    # The old key can go now.
    local_settings.VAULT_KEYS = [new]
    get_vault().health()
    get_vault().recover(name=deleted_name)
    read_all(get_vault(), written)
    event = AuditEvent.objects.get(action="vault.key_rotated")
    assert event.detail == {"key_id": new_id, "rows": 12, "rotated": 12, "already_current": 0, "failed": 0}


def test_rotating_again_changes_nothing(local_settings: Any, vault_key: bytes) -> None:
    fill(get_vault(), secrets=2, versions=1)
    report = vault_key_rotate()
    assert (report.total, report.rotated, report.already_current, report.failed) == (2, 0, 2, 0)


def test_a_row_under_an_unlisted_key_is_reported_and_left_alone(local_settings: Any, vault_key: bytes) -> None:
    fill(get_vault(), secrets=2, versions=1)
    # Written under a key that is then left out of VAULT_KEY.
    stray = LocalVault(keys=[new_key(), vault_key])
    stray_name = secret_name_for(uuid.uuid4())
    stray.write(name=stray_name, value="stray")
    new = new_key()
    local_settings.VAULT_KEYS = [new, vault_key]

    report = vault_key_rotate()

    assert (report.total, report.rotated, report.failed) == (3, 2, 1)
    assert report.failures == [
        f"{stray_name}/{VaultSecretVersion.objects.get(name=stray_name).version}: VaultMisconfigured"
    ]


def test_the_version_budget_holds_at_500(local_vault: Vault, vault_key: bytes) -> None:
    name = secret_name_for(uuid.uuid4())
    local_vault.write(name=name, value="first")
    template = VaultSecretVersion.objects.get(name=name)
    now = datetime.now(tz=UTC)
    VaultSecretVersion.objects.bulk_create(
        VaultSecretVersion(
            name=name,
            version=uuid.uuid4().hex,
            key_id=template.key_id,
            nonce=bytes(template.nonce),
            ciphertext=bytes(template.ciphertext),
            created_at=now,
            updated_at=now,
        )
        for _ in range(MAX_VERSIONS - 2)
    )
    assert local_vault.write(name=name, value="the-500th").version_count == MAX_VERSIONS

    with pytest.raises(VersionBudgetExceeded) as caught:
        local_vault.write(name=name, value="the-501st")
    assert caught.value.count == MAX_VERSIONS
    assert local_vault.version_count(name=name) == MAX_VERSIONS


def test_the_vault_table_is_not_in_the_admin() -> None:
    assert VaultSecretVersion not in admin.site._registry


def test_a_key_ring_shows_only_key_ids(vault_key: bytes) -> None:
    vault = LocalVault(keys=[vault_key])
    assert key_id_for(vault_key) in repr(vault)
    assert vault_key.hex() not in repr(vault)
    assert base64.urlsafe_b64encode(vault_key).decode() not in repr(vault)
    with pytest.raises(VaultMisconfigured):
        LocalVault(keys=[b"short"])
    with pytest.raises(VaultMisconfigured):
        LocalVault(keys=[vault_key], deleted_policy="ignore")

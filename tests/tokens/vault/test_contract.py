"""The vault's contract, run against both backends: the local one and Azure's SDK against the simulator."""

from __future__ import annotations

import pickle
import uuid
from typing import Any

import pytest

from tokens import vault as vault_module
from tokens.vault import (
    MAX_VERSIONS,
    InvalidSecretName,
    SecretDeletedConflict,
    SecretDisabled,
    SecretNotFound,
    SecretValue,
    Vault,
    VaultError,
    VersionBudgetExceeded,
    secret_name_for,
    secret_tags,
)

pytestmark = pytest.mark.django_db


def name() -> str:
    return secret_name_for(uuid.uuid4())


def test_a_write_returns_a_version_that_reads_back(vault: Vault) -> None:
    secret = name()
    code = uuid.uuid4()
    tags = secret_tags(partner_code=code, cloud="global", consent_flow_id=uuid.uuid4())

    written = vault.write(name=secret, value="first-value", tags=tags)

    assert written.name == secret
    assert written.version
    assert written.version_count == 1
    got = vault.read(name=secret)
    assert got.value.reveal() == "first-value"
    assert got.version == written.version
    assert got.enabled is True
    assert got.created_at is not None
    assert got.tags == tags
    assert got.content_type == "application/vnd.cpv.refresh-token"


def test_each_write_is_a_new_version_and_old_versions_stay_readable(vault: Vault) -> None:
    secret = name()
    first = vault.write(name=secret, value="value-one")
    second = vault.write(name=secret, value="value-two")

    assert second.version != first.version
    assert second.version_count == 2
    assert vault.read(name=secret).value.reveal() == "value-two"
    assert vault.read(name=secret, version=first.version).value.reveal() == "value-one"
    assert vault.read(name=secret, version=second.version).value.reveal() == "value-two"
    listed = vault.versions(name=secret)
    assert [(v.version, v.enabled) for v in listed] == [(second.version, True), (first.version, True)]
    assert all(v.created_at is not None for v in listed)
    assert vault.version_count(name=secret) == 2


def test_a_disabled_version_can_no_longer_be_read(vault: Vault) -> None:
    secret = name()
    old = vault.write(name=secret, value="old-value")
    new = vault.write(name=secret, value="new-value")

    vault.disable(name=secret, version=old.version)

    with pytest.raises(SecretDisabled):
        vault.read(name=secret, version=old.version)
    assert vault.read(name=secret).version == new.version
    assert {v.version: v.enabled for v in vault.versions(name=secret)} == {
        old.version: False,
        new.version: True,
    }


def test_a_disabled_latest_version_cannot_be_read_either(vault: Vault) -> None:
    secret = name()
    only = vault.write(name=secret, value="only-value")
    vault.disable(name=secret, version=only.version)
    with pytest.raises(SecretDisabled):
        vault.read(name=secret)


def test_what_does_not_exist_is_not_found(vault: Vault) -> None:
    secret = name()
    with pytest.raises(SecretNotFound):
        vault.read(name=secret)
    assert vault.versions(name=secret) == []
    assert vault.version_count(name=secret) == 0
    with pytest.raises(SecretNotFound):
        vault.disable(name=secret, version=uuid.uuid4().hex)
    with pytest.raises(SecretNotFound):
        vault.delete(name=secret)
    with pytest.raises(SecretNotFound):
        vault.purge(name=secret)
    with pytest.raises(SecretNotFound):
        vault.recover(name=secret)
    vault.write(name=secret, value="some-value")
    with pytest.raises(SecretNotFound):
        vault.read(name=secret, version=uuid.uuid4().hex)


def test_a_deleted_secret_is_gone_until_recovered(vault: Vault) -> None:
    secret = name()
    first = vault.write(name=secret, value="value-one")
    vault.write(name=secret, value="value-two")

    vault.delete(name=secret)

    with pytest.raises(SecretNotFound):
        vault.read(name=secret)
    assert vault.versions(name=secret) == []
    with pytest.raises(SecretNotFound):
        vault.delete(name=secret)

    vault.recover(name=secret)

    assert vault.read(name=secret).value.reveal() == "value-two"
    assert vault.read(name=secret, version=first.version).value.reveal() == "value-one"
    assert vault.version_count(name=secret) == 2


def test_a_purged_secret_is_gone_for_good(vault: Vault) -> None:
    secret = name()
    vault.write(name=secret, value="value-one")
    with pytest.raises(SecretNotFound):
        vault.purge(name=secret)  # only a deleted secret can be purged

    vault.delete(name=secret)
    vault.purge(name=secret)

    with pytest.raises(SecretNotFound):
        vault.recover(name=secret)
    again = vault.write(name=secret, value="value-new")
    assert again.version_count == 1
    assert [v.version for v in vault.versions(name=secret)] == [again.version]


def test_rewriting_a_deleted_name_recovers_it_under_the_recover_policy(use_policy: Any) -> None:
    vault = use_policy("recover")
    secret = name()
    old = vault.write(name=secret, value="old-value")
    vault.delete(name=secret)

    new = vault.write(name=secret, value="new-value")

    assert new.version_count == 2
    assert vault.read(name=secret).value.reveal() == "new-value"
    assert vault.read(name=secret, version=old.version).value.reveal() == "old-value"


def test_rewriting_a_deleted_name_purges_it_under_the_purge_policy(use_policy: Any) -> None:
    vault = use_policy("purge")
    secret = name()
    old = vault.write(name=secret, value="old-value")
    vault.delete(name=secret)

    new = vault.write(name=secret, value="new-value")

    assert new.version_count == 1
    assert vault.read(name=secret).value.reveal() == "new-value"
    with pytest.raises(SecretNotFound):
        vault.read(name=secret, version=old.version)


def test_rewriting_a_deleted_name_fails_loudly_under_the_fail_policy(use_policy: Any) -> None:
    vault = use_policy("fail")
    secret = name()
    vault.write(name=secret, value="old-value")
    vault.delete(name=secret)

    with pytest.raises(SecretDeletedConflict) as caught:
        vault.write(name=secret, value="new-value")

    assert secret in str(caught.value)
    assert "VAULT_DELETED_SECRET_POLICY" in str(caught.value)
    # Nothing changed: the secret is still deleted, and still recoverable.
    with pytest.raises(SecretNotFound):
        vault.read(name=secret)
    vault.recover(name=secret)
    assert vault.read(name=secret).value.reveal() == "old-value"


def test_health_returns_when_the_vault_answers(vault: Vault) -> None:
    assert vault.health() is None


def test_names_are_checked_alike_and_compared_without_case(vault: Vault) -> None:
    for bad in ("", "under_score", "a" * 128, "dot.name", "slash/name", "space name", "ünïcode"):
        with pytest.raises(InvalidSecretName):
            vault.write(name=bad, value="v")
        with pytest.raises(InvalidSecretName):
            vault.read(name=bad)
    with pytest.raises(InvalidSecretName):
        vault.read(name="fine-name", version="../other")

    written = vault.write(name="Mixed-Case-Name-" + uuid.uuid4().hex, value="v1")
    assert written.name == written.name.lower()
    assert vault.read(name=written.name.upper()).version == written.version
    assert vault.write(name="a" * 127, value="longest name").version


def test_empty_or_oversized_values_and_bad_tags_are_refused(vault: Vault) -> None:
    secret = name()
    with pytest.raises(InvalidSecretName):
        vault.write(name=secret, value="")
    with pytest.raises(InvalidSecretName):
        vault.write(name=secret, value="x" * (25 * 1024 + 1))
    with pytest.raises(InvalidSecretName):
        vault.write(name=secret, value="v", tags={str(i): "t" for i in range(16)})
    assert vault.versions(name=secret) == []


def test_a_write_past_the_version_budget_is_refused(
    vault: Vault, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real budget is 500 (tested in full on the local backend); here a budget of 3 keeps it fast.
    monkeypatch.setattr(f"tokens.vault.{'local' if backend == 'sealed' else backend}.MAX_VERSIONS", 3)
    secret = name()
    counts = [vault.write(name=secret, value=f"value-{i}").version_count for i in range(3)]

    with pytest.raises(VersionBudgetExceeded) as caught:
        vault.write(name=secret, value="one-too-many")

    assert counts == [1, 2, 3]
    assert caught.value.count == 3
    assert "budget" in str(caught.value)
    assert vault.version_count(name=secret) == 3


def test_the_budget_is_key_vaults_500() -> None:
    assert MAX_VERSIONS == 500


def test_values_never_show_in_a_repr(vault: Vault) -> None:
    secret = name()
    vault.write(name=secret, value="canary-in-a-repr")
    got = vault.read(name=secret)
    for text in (repr(got), str(got), f"{got.value}", str(got.value), repr(got.value), repr(vault)):
        assert "canary-in-a-repr" not in text
    with pytest.raises(TypeError):
        pickle.dumps(got.value)
    assert got.value == SecretValue("canary-in-a-repr")


def test_get_vault_returns_the_configured_backend_once_per_process(vault: Vault, backend: str) -> None:
    first = vault_module.get_vault()
    assert first.backend == ("local" if backend == "sealed" else backend)
    assert vault_module.get_vault() is first
    vault_module.reset_vault()
    assert vault_module.get_vault() is not first


def test_secret_names_follow_key_vaults_rules() -> None:
    code = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert secret_name_for(code) == "partner-12345678123456781234567812345678-refresh-token"
    assert secret_name_for(code, "app-secret") == "partner-12345678123456781234567812345678-app-secret"
    with pytest.raises(InvalidSecretName):
        secret_name_for(code, "Bad_Purpose")
    with pytest.raises(InvalidSecretName):
        secret_name_for("12345678-1234-5678-1234-567812345678")  # type: ignore[arg-type]
    assert issubclass(InvalidSecretName, VaultError)


def test_the_errors_are_importable_from_the_package() -> None:
    from tokens.vault import (
        VaultForbidden,
        VaultMisconfigured,
        VaultThrottled,
        VaultTransient,
    )

    for error in (SecretNotFound, VaultForbidden, VaultThrottled, VaultTransient, VaultMisconfigured):
        assert issubclass(error, VaultError)
    assert VaultThrottled("x", retry_after=2).transient
    assert VaultTransient("x").transient
    assert not VaultForbidden("x").transient

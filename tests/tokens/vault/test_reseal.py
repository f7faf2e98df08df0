"""`manage.py vault_reseal`: tokens stored under VAULT_KEY before sealing move to the public key, a row at a time,
every token redeemable throughout, through an interruption and a second run."""

from __future__ import annotations

import io
import os
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from cpv.keys import decode_key, new_key_pair
from partners.models import AuditEvent, Partner
from tests.factories import active_partner, pointer_of
from tokens.renewal import renew_one
from tokens.vault import get_vault, reset_vault
from tokens.vault.errors import VaultForbidden, VaultMisconfigured
from tokens.vault.local import RotationReport, key_id_for
from tokens.vault.models import VaultSecretVersion
from tokens.vault.seal import seal_key_id
from tokens.vault.services import vault_reseal

pytestmark = pytest.mark.django_db


class Interrupted(Exception):
    pass


@pytest.fixture
def legacy(cpv_sim: Any, settings: Any) -> bytes:
    """The vault as before sealing: a symmetric VAULT_KEY, no key pair."""
    key = os.urandom(32)
    settings.VAULT_KEYS = [key]
    settings.VAULT_PUBLIC_KEY = None
    settings.VAULT_PRIVATE_KEYS = []
    settings.CPV_PROCESS_ROLE = "worker"
    reset_vault()
    return key


def seal_with(settings: Any, *, keep_legacy: bool = True) -> bytes:
    """The workers given a key pair (and still VAULT_KEY, to open the older rows): the public key's raw bytes."""
    pair = new_key_pair()
    settings.VAULT_PUBLIC_KEY = decode_key(pair.public, what="public")
    settings.VAULT_PRIVATE_KEYS = [decode_key(pair.private, what="private")]
    if not keep_legacy:
        settings.VAULT_KEYS = []
    reset_vault()
    return settings.VAULT_PUBLIC_KEY  # type: ignore[no-any-return]


def run_command() -> str:
    out = io.StringIO()
    call_command("vault_reseal", stdout=out, no_color=True)
    return out.getvalue()


def all_redeemable(partners: list[Partner]) -> None:
    """Each partner's current token opens, and Microsoft (the simulator) takes it: a forced renewal succeeds."""
    for partner in partners:
        pointer = pointer_of(partner)
        assert get_vault().read(name=pointer.secret_name, version=pointer.current_version).value.reveal()
        result = renew_one(partner_id=partner.pk, force=True)
        assert result.outcome == "renewed", result.message


def test_resealing_interrupted_then_run_twice_keeps_every_token_redeemable(
    legacy: bytes, cpv_sim: Any, settings: Any
) -> None:
    partners = [active_partner(cpv_sim, index=i) for i in range(3)]
    for partner in partners:  # a second version each, the first disabled: both kinds of row move
        assert renew_one(partner_id=partner.pk, force=True).outcome == "renewed"
    legacy_id = key_id_for(legacy)
    rows = VaultSecretVersion.objects.count()
    assert rows >= 6 and set(VaultSecretVersion.objects.values_list("key_id", flat=True)) == {legacy_id}
    public = seal_with(settings)
    sealed_id = seal_key_id(public)

    def stop_after_two(report: RotationReport) -> None:
        if report.rotated == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        vault_reseal(after_row=stop_after_two)

    # Half-way: two rows sealed, the rest still under VAULT_KEY, and every token redeemable.
    assert VaultSecretVersion.objects.filter(key_id=sealed_id).count() == 2
    all_redeemable(partners)  # each renewal writes a new, sealed version

    first = run_command()
    assert "failed: 0" in first and "re-sealed: 0" not in first
    second = run_command()
    assert "re-sealed: 0" in second and f"already sealed to it: {VaultSecretVersion.objects.count()}" in second
    assert set(VaultSecretVersion.objects.values_list("key_id", flat=True)) == {sealed_id}

    # VAULT_KEY can now leave the workers: every row opens with the private key alone.
    settings.VAULT_KEYS = []
    reset_vault()
    get_vault().health()
    all_redeemable(partners)

    started = AuditEvent.objects.filter(action="vault.reseal_started")
    finished = AuditEvent.objects.filter(action="vault.resealed").order_by("created_at", "pk")
    assert started.count() == 3 and finished.count() == 2  # the interrupted run has no end row
    assert [e.detail["failed"] for e in finished] == [0, 0]
    assert finished.last().detail["resealed"] == 0  # type: ignore[union-attr]


def test_resealing_needs_a_public_key_and_a_process_that_opens_tokens(legacy: bytes, settings: Any) -> None:
    with pytest.raises(CommandError, match="VAULT_PUBLIC_KEY is not set"):
        run_command()

    seal_with(settings)
    settings.CPV_PROCESS_ROLE = "web"
    reset_vault()
    with pytest.raises(VaultForbidden):
        vault_reseal()
    assert not AuditEvent.objects.filter(action__startswith="vault.reseal").exists()


def test_a_row_sealed_to_an_older_key_pair_moves_to_the_newest(cpv_sim: Any, legacy: bytes, settings: Any) -> None:
    seal_with(settings, keep_legacy=False)
    partner = active_partner(cpv_sim)
    old_private = settings.VAULT_PRIVATE_KEYS
    pair = new_key_pair()
    settings.VAULT_PUBLIC_KEY = decode_key(pair.public, what="public")
    settings.VAULT_PRIVATE_KEYS = [decode_key(pair.private, what="private"), *old_private]
    reset_vault()

    assert "re-sealed: 1" in run_command()
    settings.VAULT_PRIVATE_KEYS = settings.VAULT_PRIVATE_KEYS[:1]
    reset_vault()
    all_redeemable([partner])


def test_the_workers_refuse_rows_they_hold_no_key_for(cpv_sim: Any, legacy: bytes, settings: Any) -> None:
    active_partner(cpv_sim)
    seal_with(settings, keep_legacy=False)  # VAULT_KEY dropped before re-sealing

    with pytest.raises(VaultMisconfigured, match="VAULT_PRIVATE_KEY do not match"):
        get_vault().health()


def test_vault_check_in_the_web_tier_seals_nothing_and_passes(legacy: bytes, settings: Any) -> None:
    seal_with(settings, keep_legacy=False)
    settings.CPV_PROCESS_ROLE = "web"
    reset_vault()
    out = io.StringIO()

    call_command("vault_check", stdout=out, no_color=True)

    lines = out.getvalue().splitlines()
    assert lines[0].split()[:2] == ["health", "OK"] and all(" SKIPPED " in line for line in lines[1:7])
    assert not VaultSecretVersion.objects.exists()

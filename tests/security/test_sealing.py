"""The web tier seals tokens and opens none: what it stores only the workers read, the code paths a page can reach
refuse before touching a token, and a production web process given a key that opens tokens refuses to start."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from consent.services import partner_invite
from cpv.config import ConfigError, load_config
from cpv.keys import decode_key, new_key_pair
from dashboard import operations
from partners.models import Partner
from tests.conftest import ROOT, project_env
from tests.cpv.test_config import production_env
from tests.factories import active_partner, partner_user, pointer_of
from tokens.access_tokens import access_token_get
from tokens.models import TokenEvent
from tokens.renewal import renew_one
from tokens.store import partner_token_import
from tokens.vault import OpeningRefused, get_vault, reset_vault
from tokens.vault.errors import VaultForbidden
from tokens.vault.models import VaultSecretVersion

pytestmark = pytest.mark.django_db


@pytest.fixture
def split(cpv_sim: Any, settings: Any) -> dict[str, bytes]:
    """One key pair; the test switches CPV_PROCESS_ROLE between the web tier and a worker."""
    pair = new_key_pair()
    settings.VAULT_PUBLIC_KEY = decode_key(pair.public, what="public")
    settings.VAULT_PRIVATE_KEYS = [decode_key(pair.private, what="private")]
    settings.VAULT_KEYS = []
    return {"public": settings.VAULT_PUBLIC_KEY, "private": settings.VAULT_PRIVATE_KEYS[0]}


def as_role(settings: Any, role: str) -> None:
    settings.CPV_PROCESS_ROLE = role
    reset_vault()


def test_a_token_the_web_tier_stores_only_a_worker_can_open(
    split: dict[str, bytes], cpv_sim: Any, settings: Any
) -> None:
    partner = active_partner(cpv_sim)  # made by a worker; the web tier then imports a new token (a staff action)
    as_role(settings, "web")
    refresh_token = cpv_sim.control.issue_refresh_token(
        cpv_sim.world.partners[0].users[0].oid, client_id=cpv_sim.env["CPV_CLIENT_ID"]
    )
    partner_token_import(actor=None, partner=partner, refresh_token=refresh_token)
    pointer = pointer_of(partner)
    row = VaultSecretVersion.objects.get(name=pointer.secret_name, version=pointer.current_version)
    assert refresh_token.encode() not in bytes(row.ciphertext)
    assert row.key_id.startswith("s")

    # Even with every key in its settings, the web's vault is built without those that open tokens.
    assert get_vault().write_only  # type: ignore[attr-defined]
    with pytest.raises(VaultForbidden):
        get_vault().read(name=pointer.secret_name, version=pointer.current_version)

    def redemptions_of_partner_tokens() -> int:
        # The live check's app-only probe of the app's own credential (client credentials) opens no partner token.
        entries = cpv_sim.control.log(service="entra", path="/token$")
        return sum(1 for e in entries if e["detail"].get("grant_type") != "client_credentials")

    redemptions = redemptions_of_partner_tokens()
    with pytest.raises(OpeningRefused):
        access_token_get(partner=partner)
    with pytest.raises(OpeningRefused):
        renew_one(partner_id=partner.pk, force=True)
    assert redemptions_of_partner_tokens() == redemptions
    partner.refresh_from_db()
    assert partner.status == Partner.Status.ACTIVE
    events_after_import = TokenEvent.objects.filter(partner=partner).count()

    assert TokenEvent.objects.filter(partner=partner).count() == events_after_import  # nothing recorded

    as_role(settings, "worker")
    assert get_vault().read(name=pointer.secret_name).value.reveal() == refresh_token
    assert renew_one(partner_id=partner.pk, force=True).outcome == "renewed"


def test_the_web_tiers_renew_now_queues_a_worker_and_its_live_check_opens_no_token(
    split: dict[str, bytes],
    cpv_sim: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    partner = active_partner(cpv_sim)
    as_role(settings, "web")
    queued: list[dict[str, Any]] = []
    monkeypatch.setattr(operations.token_tasks.token_renew, "apply_async", lambda **kw: queued.append(kw))

    def redemptions_of_partner_tokens() -> int:
        # The live check's app-only probe of the app's own credential (client credentials) opens no partner token.
        entries = cpv_sim.control.log(service="entra", path="/token$")
        return sum(1 for e in entries if e["detail"].get("grant_type") != "client_credentials")

    redemptions = redemptions_of_partner_tokens()

    with django_capture_on_commit_callbacks(execute=True):
        operations.operation_start(actor=None, partner=partner, kind=operations.RENEW)
    checks = {check.name: check for check in operations.live_checks()}

    assert [q["kwargs"]["partner_id"] for q in queued] == [partner.pk]
    assert "opens no partner's token" in checks["Partner Center"].detail
    assert checks["Vault"].ok, checks["Vault"].detail
    assert redemptions_of_partner_tokens() == redemptions


# --- production refuses a web process that could open tokens ---------------------------------------------------


def web_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    pair = new_key_pair()
    return production_env(
        tmp_path, **{"CPV_PROCESS_ROLE": "web", "VAULT_KEY": "", "VAULT_PUBLIC_KEY": pair.public, **overrides}
    )


def test_a_production_web_process_takes_the_public_key_alone(tmp_path: Path) -> None:
    config = load_config(web_env(tmp_path), base_dir=tmp_path)

    assert config.process_role == "web"
    assert config.vault_public_key is not None
    assert config.vault_private_keys == [] and config.vault_keys == []


@pytest.mark.parametrize("variable", ["VAULT_PRIVATE_KEY", "VAULT_KEY"])
def test_a_production_web_process_refuses_to_start_with_a_key_that_opens_tokens(variable: str, tmp_path: Path) -> None:
    value = new_key_pair().private if variable == "VAULT_PRIVATE_KEY" else base64.urlsafe_b64encode(b"k" * 32).decode()
    env = web_env(tmp_path, **{variable: value})

    with pytest.raises(ConfigError) as caught:
        load_config(env, base_dir=tmp_path)
    assert any(p.startswith(f"{variable} must not be given to a web process") for p in caught.value.problems)
    assert all(value not in p for p in caught.value.problems)

    # The process itself: settings load fails, so gunicorn, runserver or a command never starts.
    started = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=project_env(DJANGO_SETTINGS_MODULE="cpv.settings", **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert started.returncode != 0
    assert f"{variable} must not be given to a web process in production" in started.stderr
    assert value not in started.stderr + started.stdout


def test_production_needs_a_role_and_never_all(tmp_path: Path) -> None:
    for role, expected in (("", "CPV_PROCESS_ROLE is required in production"), ("all", "CPV_PROCESS_ROLE=all")):
        with pytest.raises(ConfigError) as caught:
            load_config(production_env(tmp_path, CPV_PROCESS_ROLE=role), base_dir=tmp_path)
        assert any(p.startswith(expected) for p in caught.value.problems), caught.value.problems


def test_the_web_and_worker_keys_must_be_one_pair(tmp_path: Path) -> None:
    env = production_env(
        tmp_path, VAULT_KEY="", VAULT_PRIVATE_KEY=new_key_pair().private, VAULT_PUBLIC_KEY=new_key_pair().public
    )
    with pytest.raises(ConfigError, match="VAULT_PUBLIC_KEY is not the public half"):
        load_config(env, base_dir=tmp_path)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, "VAULT_READER_CLIENT_ID is required in production for the web tier"),
        ({"VAULT_READER_CLIENT_ID": "w"}, "AZURE_CLIENT_ID is required in production for the web tier"),
        ({"VAULT_READER_CLIENT_ID": "same", "AZURE_CLIENT_ID": "SAME"}, "AZURE_CLIENT_ID is the workers' identity"),
    ],
)
def test_a_production_web_process_on_key_vault_needs_an_identity_of_its_own(
    overrides: dict[str, str], expected: str, tmp_path: Path
) -> None:
    env = production_env(
        tmp_path,
        CPV_PROCESS_ROLE="web",
        VAULT_KEY="",
        VAULT_BACKEND="azure",
        VAULT_URL="https://cpv.vault.azure.net",
        **overrides,
    )
    with pytest.raises(ConfigError) as caught:
        load_config(env, base_dir=tmp_path)
    assert any(p.startswith(expected) for p in caught.value.problems), caught.value.problems

    fine = {**env, "VAULT_READER_CLIENT_ID": "worker-id", "AZURE_CLIENT_ID": "web-id"}
    assert load_config(fine, base_dir=tmp_path).vault_reader_client_id == "worker-id"


def test_a_consent_through_the_web_tier_is_sealed_and_opened_only_by_a_worker(
    split: dict[str, bytes], cpv_sim: Any, settings: Any, consent_run: Any
) -> None:
    as_role(settings, "web")
    admin = partner_user(cpv_sim, global_admin=True, admin_agent=True, mfa_registered=True)
    invitation = partner_invite(
        actor=None, name="Contoso Partners", contact_email="a@contoso.example", send_email=False
    )

    run = consent_run(invitation.url, user=admin)

    assert run.callback.status_code == 303
    partner = Partner.objects.get(pk=invitation.partner.pk)
    assert partner.status == Partner.Status.ACTIVE
    pointer = pointer_of(partner)
    with pytest.raises(VaultForbidden):
        get_vault().read(name=pointer.secret_name)
    as_role(settings, "worker")
    token = get_vault().read(name=pointer.secret_name).value.reveal()
    assert cpv_sim.control.refresh_token_info(token) is not None

"""Partners' tokens spread over the Key Vaults of VAULT_URLS: each token stays in the vault it was first stored in,
through the real azure-keyvault-secrets client to the simulator's two vaults."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.utils import timezone

from dashboard.health import check_vault
from dashboard.operations import _vault_checks
from microsoft.retrying import max_countdown
from partners.models import Partner
from tests.factories import active_partner, active_partner_with_data, pointer_of
from tokens import tasks as token_tasks
from tokens.access_tokens import access_token_get, cache_forget
from tokens.checks import vaults_in_use_check
from tokens.models import PartnerToken, TokenEvent
from tokens.renewal import renew_one
from tokens.selectors import VaultShare, vault_shares, vaults_unnamed
from tokens.store import partner_token_revoke
from tokens.sweep import SPREAD_SECONDS, renewal_sweep
from tokens.vault import VaultMisconfigured, get_vault, reset_vault

pytestmark = pytest.mark.django_db

CANARY = "SIMCANARY"


@pytest.fixture
def two_vaults(cpv_sim: Any, settings: Any, azure_env: dict[str, str]) -> Any:
    """The product on the simulator with VAULT_BACKEND=azure and both of its vaults in VAULT_URLS."""
    settings.VAULT_BACKEND = "azure"
    settings.VAULT_URLS = list(cpv_sim.vault_urls)
    settings.VAULT_URL = cpv_sim.vault_urls[0]
    settings.VAULT_DELETED_SECRET_POLICY = "recover"
    settings.CPV_PROCESS_ROLE = "all"
    reset_vault()
    return cpv_sim


def secrets_of(sim: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """What each simulated vault keeps: secret name -> its state (never a value)."""
    return sim.control.secrets_state(), sim.control.more_vaults_state()[0]["secrets"]


def enabled(state: dict[str, Any], name: str) -> dict[str, bool]:
    return {v["version"]: v["enabled"] for v in state[name]["versions"]}


def make_due(*partners: Partner) -> None:
    PartnerToken.objects.filter(partner__in=partners).update(last_renewed_at=timezone.now() - timedelta(days=8))


def test_a_first_token_goes_to_the_vault_keeping_the_fewest_partners(two_vaults: Any) -> None:
    first, second = two_vaults.vault_urls
    partners = [active_partner(two_vaults, index=i) for i in range(3)]

    assert [pointer_of(p).vault_url for p in partners] == [first, second, first]
    in_first, in_second = secrets_of(two_vaults)
    assert set(in_first) == {pointer_of(partners[0]).secret_name, pointer_of(partners[2]).secret_name}
    assert set(in_second) == {pointer_of(partners[1]).secret_name}
    assert vault_shares() == [VaultShare(first, 2), VaultShare(second, 1)]


def test_a_partner_in_the_second_vault_is_renewed_read_and_revoked_there(
    two_vaults: Any, django_capture_on_commit_callbacks: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    second = two_vaults.vault_urls[1]
    active_partner(two_vaults, index=0)
    partner = active_partner(two_vaults, index=1)
    before = pointer_of(partner)
    assert before.vault_url == second
    make_due(partner)
    two_vaults.control.clear_log()

    with django_capture_on_commit_callbacks(execute=True):
        assert renew_one(partner_id=partner.pk).outcome == "renewed"
    renewed = pointer_of(partner)
    assert enabled(secrets_of(two_vaults)[1], renewed.secret_name) == {
        before.current_version: False,
        renewed.current_version: True,
    }
    # A read: the access-token service opens the stored token again (and keeps the one Entra rotated) there.
    cache_forget()
    assert access_token_get(partner=partner).token
    rotated = pointer_of(partner)

    with django_capture_on_commit_callbacks(execute=True):
        partner_token_revoke(actor=None, partner=partner, reason="test")

    in_first, in_second = secrets_of(two_vaults)
    assert renewed.secret_name not in in_first
    assert not any(enabled(in_second, rotated.secret_name).values())
    assert rotated.current_version in enabled(in_second, rotated.secret_name)
    hosts = {entry["host"] for entry in two_vaults.control.log(service="vault") if renewed.secret_name in entry["path"]}
    assert hosts == {urlsplit(second).netloc}
    # No token in the partner's history, the pointer or a log line.
    assert CANARY not in str(TokenEvent.objects.filter(partner=partner).values_list("message", "detail"))
    assert CANARY not in str(PartnerToken.objects.filter(partner=partner).values())
    assert CANARY not in caplog.text


def test_a_token_stored_before_vaults_were_recorded_is_in_the_first_vault(
    two_vaults: Any, django_capture_on_commit_callbacks: Any
) -> None:
    first, _ = two_vaults.vault_urls
    partner = active_partner(two_vaults, index=0)
    before = pointer_of(partner)
    PartnerToken.objects.filter(partner=partner).update(vault_url="")
    make_due(partner)

    with django_capture_on_commit_callbacks(execute=True):
        assert renew_one(partner_id=partner.pk).outcome == "renewed"

    after = pointer_of(partner)
    # Renewed in the first vault, and the vault is recorded now.
    assert after.vault_url == first
    in_first, in_second = secrets_of(two_vaults)
    assert enabled(in_first, after.secret_name) == {before.current_version: False, after.current_version: True}
    assert in_second == {}


@pytest.mark.django_db(transaction=True)  # a batch commits its own transaction, then disables the old versions
def test_a_batch_renews_partners_of_both_vaults_each_in_its_own(two_vaults: Any) -> None:
    first, second = two_vaults.vault_urls
    partners = [active_partner(two_vaults, index=i) for i in range(3)]
    before = {p.pk: pointer_of(p).current_version for p in partners}
    make_due(*partners)

    outcome = token_tasks.tokens_renew_batch.apply(kwargs={"partner_ids": [p.pk for p in partners]}).get()

    assert outcome == {"renewed": 3}
    in_first, in_second = secrets_of(two_vaults)
    for partner in partners:
        pointer = pointer_of(partner)
        kept = in_first if pointer.vault_url == first else in_second
        assert enabled(kept, pointer.secret_name) == {before[partner.pk]: False, pointer.current_version: True}
    assert [pointer_of(p).vault_url for p in partners] == [first, second, first]


def test_a_vault_added_later_takes_the_new_partners(two_vaults: Any, settings: Any) -> None:
    first, second = two_vaults.vault_urls
    settings.VAULT_URLS = [first]
    older = [active_partner(two_vaults, index=i) for i in range(2)]

    settings.VAULT_URLS = [first, second]
    newer = active_partner(two_vaults, index=2)

    assert [pointer_of(p).vault_url for p in older] == [first, first]
    assert pointer_of(newer).vault_url == second


def test_removing_a_vault_that_keeps_tokens_is_refused_naming_its_partners(
    two_vaults: Any, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    first, second = two_vaults.vault_urls
    active_partner(two_vaults, index=0)
    stranded = active_partner(two_vaults, index=1)
    versions = enabled(secrets_of(two_vaults)[1], pointer_of(stranded).secret_name)

    settings.VAULT_URLS = [first]

    problem = (
        f"Key Vault {second} keeps the tokens of 1 partner(s), but VAULT_URLS no longer names it: add it back (a "
        "token stays in the vault it was stored in)"
    )
    assert vaults_unnamed() == [problem]
    [error] = vaults_in_use_check(None, databases=["default"])
    assert error.id == "tokens.E001" and error.msg == problem
    assert vaults_in_use_check(None) == []  # a check without the database says nothing
    with pytest.raises(SystemCheckError, match="1 partner"):
        call_command("check", "--database", "default")
    with pytest.raises(VaultMisconfigured, match="VAULT_URLS no longer names"):
        get_vault(second)
    # Its partner is swept by no vault, and a forced renewal fails as an operator's problem: nothing is lost.
    make_due(stranded)
    assert stranded.pk not in [p for p, _ in renewal_sweep().queued]
    with django_capture_on_commit_callbacks(execute=True):
        result = renew_one(partner_id=stranded.pk, force=True)
    assert result.outcome == "failed" and "no longer names" in result.message
    assert Partner.objects.get(pk=stranded.pk).status == Partner.Status.ACTIVE
    assert enabled(secrets_of(two_vaults)[1], pointer_of(stranded).secret_name) == versions

    settings.VAULT_URLS = [first, second]
    assert vaults_unnamed() == []
    assert vaults_in_use_check(None, databases=["default"]) == []


def test_the_sweep_claims_and_spreads_each_vaults_partners_on_their_own(settings: Any) -> None:
    one, two, gone = "https://one.vault.test/", "https://two.vault.test/", "https://gone.vault.test/"
    settings.VAULT_BACKEND = "azure"
    settings.VAULT_URLS = [one, two]
    made = {}
    for name, vault_url, days in (
        ("a-unrecorded", "", 30),
        ("a-oldest", one, 40),
        ("a-newest", one, 10),
        ("b-oldest", two, 20),
        ("b-middle", two, 15),
        ("b-newest", two, 9),
        ("gone", gone, 50),
    ):
        partner = active_partner_with_data(name, customers=0, failed=0)
        PartnerToken.objects.filter(partner=partner).update(
            vault_url=vault_url, last_renewed_at=timezone.now() - timedelta(days=days)
        )
        made[name] = partner.pk

    queued = renewal_sweep(limit=2).queued

    window = round(min(float(SPREAD_SECONDS), max_countdown()) / 2, 3)
    # Each vault's two most overdue, spread over the window on their own (the first vault keeps the unrecorded).
    assert queued == [
        (made["a-oldest"], 0.0),
        (made["a-unrecorded"], window),
        (made["b-oldest"], 0.0),
        (made["b-middle"], window),
    ]
    assert [pk for pk, _ in renewal_sweep(limit=2).queued] == [made["a-newest"], made["b-newest"]]


def test_the_readiness_check_and_the_settings_page_probe_each_vault(two_vaults: Any, settings: Any) -> None:
    first, second = two_vaults.vault_urls
    active_partner(two_vaults, index=0)
    active_partner(two_vaults, index=1)
    two_vaults.control.clear_log()

    check_vault()

    assert {entry["host"] for entry in two_vaults.control.log(service="vault")} == {
        urlsplit(first).netloc,
        urlsplit(second).netloc,
    }
    rows = [(name, check()) for name, check in _vault_checks()]
    assert [name for name, _ in rows] == [f"Vault {first}", f"Vault {second}"]
    assert all(
        detail.endswith("partners: 1") and f"vault url: {url}" in detail
        for (_, detail), url in zip(rows, (first, second), strict=True)
    )

    settings.VAULT_URLS = [first]
    [(kept, check), (removed, failing)] = _vault_checks()
    assert (kept, removed) == (f"Vault {first}", f"Vault {second}")
    check()
    with pytest.raises(VaultMisconfigured, match=f"Key Vault {second} keeps the tokens of 1 partner"):
        failing()


def test_vault_check_proves_each_vault(two_vaults: Any) -> None:
    first, second = two_vaults.vault_urls
    out = io.StringIO()

    call_command("vault_check", stdout=out, no_color=True)

    lines = out.getvalue().splitlines()
    assert lines[0] == f"vault {first}" and f"vault {second}" in lines
    assert sum(line.startswith("purge") and "OK" in line for line in lines) == 2
    assert lines[-1] == "vault check passed"
    assert secrets_of(two_vaults) == ({}, {})  # each probe purged

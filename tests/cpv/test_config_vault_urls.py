"""VAULT_URLS: the Key Vaults partners' tokens are spread over, and VAULT_URL as a list of one."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpv.config import load_config
from tests.cpv.test_config import problems_of, production_env

ONE = "https://cpv-one.vault.azure.net/"
TWO = "https://cpv-two.vault.azure.net/"


def azure_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    return production_env(tmp_path, VAULT_BACKEND="azure", VAULT_KEY="", **overrides)


def test_vault_urls_names_several_vaults_in_order(tmp_path: Path) -> None:
    config = load_config(azure_env(tmp_path, VAULT_URLS=f" {ONE.rstrip('/')} , {TWO}"), base_dir=tmp_path)

    assert config.vault_urls == (ONE, TWO)
    assert config.vault_url == ONE


def test_vault_url_alone_is_a_list_of_one(tmp_path: Path) -> None:
    config = load_config(azure_env(tmp_path, VAULT_URL=ONE), base_dir=tmp_path)

    assert config.vault_urls == (ONE,)
    assert config.vault_url == ONE


def test_vault_url_beside_vault_urls_is_accepted_when_it_names_the_first(tmp_path: Path) -> None:
    config = load_config(azure_env(tmp_path, VAULT_URL=ONE, VAULT_URLS=f"{ONE},{TWO}"), base_dir=tmp_path)

    assert config.vault_urls == (ONE, TWO)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"VAULT_URL": TWO, "VAULT_URLS": f"{ONE},{TWO}"},
            "VAULT_URL (https://cpv-two.vault.azure.net/) and VAULT_URLS",
        ),
        ({"VAULT_URL": f"{ONE},{TWO}"}, "VAULT_URL names one vault: write several in VAULT_URLS"),
        ({"VAULT_URLS": f"{ONE},http://cpv-two.vault.azure.net"}, "VAULT_URLS must be an https:// URL with a host"),
        ({"VAULT_URLS": f"{ONE},{TWO}secrets"}, "VAULT_URLS must name each vault by its root URL with no path"),
        ({"VAULT_URLS": f"{ONE},{ONE.upper().replace('HTTPS', 'https')}"}, "VAULT_URLS names"),
        ({}, "VAULT_URL is required when VAULT_BACKEND=azure"),
    ],
)
def test_vault_urls_problems_are_named(overrides: dict[str, str], expected: str, tmp_path: Path) -> None:
    problems = problems_of(azure_env(tmp_path, **overrides), tmp_path)

    assert any(expected in problem for problem in problems), problems


def test_vault_urls_beside_the_embedded_vault_is_refused(tmp_path: Path) -> None:
    problems = problems_of(production_env(tmp_path, VAULT_URLS=f"{ONE},{TWO}"), tmp_path)

    assert any("VAULT_URLS names Key Vaults, which only VAULT_BACKEND=azure uses" in p for p in problems), problems


def test_the_settings_page_says_how_tokens_are_spread_over_the_vaults(tmp_path: Path) -> None:
    from dashboard.configuration import configuration_groups

    config = load_config(azure_env(tmp_path, VAULT_URLS=f"{ONE},{TWO}"), base_dir=tmp_path)

    shown = {s.label: s.value for g in configuration_groups(config) if g.title == "Vault" for s in g.settings}
    spread = shown["Key Vaults partners' tokens are spread over"]
    assert spread.startswith(f"{ONE}, {TWO}: each partner's token stays in the vault it was first stored in")
    assert shown["Key Vault address (the first vault)"] == ONE

"""The Microsoft clients' HTTP session reads the environment's proxy and CA settings once per host, with the
answers requests itself would give."""

from __future__ import annotations

from typing import Any

import pytest
import requests
import requests.sessions

from microsoft.http import EnvironmentOnceSession

URLS = [
    "https://login.example/tenant/oauth2/v2.0/token",
    "https://login.example/other/v2.0/.well-known/openid-configuration",
    "https://vault.example/secrets/name?api-version=7.5",
    "http://plain.example/",
]


@pytest.fixture
def environment(monkeypatch, tmp_path) -> str:  # type: ignore[no-untyped-def]
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "vault.example")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    return str(bundle)


@pytest.mark.parametrize("url", URLS)
def test_the_settings_are_the_ones_requests_would_use(environment, url) -> None:  # type: ignore[no-untyped-def]
    expected = requests.Session().merge_environment_settings(url, {}, None, None, None)

    once = EnvironmentOnceSession()
    first = once.merge_environment_settings(url, {}, None, None, None)
    again = once.merge_environment_settings(url, {}, None, None, None)

    assert first == again == expected
    assert first["verify"] == environment
    # NO_PROXY names the vault: it alone goes direct.
    assert bool(first["proxies"]) is ("vault.example" not in url)


def test_the_environment_is_read_once_per_host(environment, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    reads: list[str] = []
    real = requests.sessions.get_environ_proxies

    def counted(url: str, **kwargs: Any) -> dict[str, str]:
        reads.append(url)
        return real(url, **kwargs)

    monkeypatch.setattr(requests.sessions, "get_environ_proxies", counted)
    session = EnvironmentOnceSession()

    for _ in range(3):
        for url in URLS[:3]:
            session.merge_environment_settings(url, {}, None, None, None)

    assert [u.split("/")[2] for u in reads] == ["login.example", "vault.example"]


def test_a_caller_changing_its_proxies_does_not_change_the_next_answer(environment) -> None:  # type: ignore[no-untyped-def]
    session = EnvironmentOnceSession()
    first = session.merge_environment_settings(URLS[0], {}, None, None, None)
    first["proxies"]["https"] = "http://elsewhere.example:1"

    assert session.merge_environment_settings(URLS[0], {}, None, None, None)["proxies"]["https"] == (
        "http://proxy.example:3128"
    )


def test_a_session_told_not_to_trust_the_environment_ignores_it(environment) -> None:  # type: ignore[no-untyped-def]
    session = EnvironmentOnceSession()
    session.trust_env = False

    settings = session.merge_environment_settings(URLS[0], {}, None, None, None)

    assert settings["proxies"] == {} and settings["verify"] is True

"""The settings page: grouped and labelled in words, secrets and passwords in URLs never shown, and the live check
run after the page has loaded, from its own script, through a JSON endpoint."""

from __future__ import annotations

import dataclasses
import re
import uuid

import pytest

from cpv.config import CERTIFICATE, MANAGED_IDENTITY, AppCredential, Credential
from dashboard.app_check import callback_urls
from dashboard.configuration import configuration_groups, url_masked
from tests.factories import client_for

pytestmark = pytest.mark.django_db

CANARY = "CANARY-must-not-show"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@redis:6379/0", "redis://***@redis:6379/0"),
        ("postgres://cpv:pw@db.example:5432/cpv", "postgres://cpv:***@db.example:5432/cpv"),
        ("amqp://user:p%40ss@[::1]:5672/vhost", "amqp://user:***@[::1]:5672/vhost"),
        ("rediss://token-only@cache.example:6380", "rediss://***@cache.example:6380"),
        ("redis://redis:6379/0", "redis://redis:6379/0"),
        ("filesystem://", "filesystem://"),
    ],
)
def test_a_password_in_a_url_is_replaced_by_stars(url: str, shown: str) -> None:
    assert url_masked(url) == shown


@pytest.fixture
def secret_config(settings):  # type: ignore[no-untyped-def]
    config = dataclasses.replace(
        settings.CONFIG,
        secret_key=f"sk-{CANARY}",
        readyz_token=f"rz-{CANARY}",
        broker_url=f"redis://:{CANARY}@broker.example:6379/0",
        result_backend=f"redis://worker:{CANARY}@results.example:6379/1",
        database={"ENGINE": "django.db.backends.postgresql", "NAME": "cpv", "USER": "cpv", "PASSWORD": CANARY,
                  "HOST": "db.example", "PORT": 5432},
        email={"EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend", "EMAIL_HOST": "smtp.example",
               "EMAIL_PORT": 587, "EMAIL_HOST_USER": "mailer", "EMAIL_HOST_PASSWORD": CANARY},
        cache={"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": f"redis://:{CANARY}@c.example/2"},
        app=AppCredential(client_id=str(uuid.UUID(int=7)), client_secret=CANARY),
        vault_keys=[b"k" * 32],
    )  # fmt: skip
    settings.CONFIG = config
    return config


def test_the_page_shows_settings_grouped_and_in_words(admin_user, secret_config) -> None:  # type: ignore[no-untyped-def]
    page = client_for(admin_user).get("/settings/").content.decode()

    titles = re.findall(r'<section class="card configuration" id="group-[a-z-]+">\s*<h2>([^<]+)</h2>', page)
    assert titles[:6] == ["Site", "Microsoft", "Vault", "Workers and schedule", "Security", "Email"]
    assert "Tokens are renewed every" in page and '<td class="wrap">7 days</td>' in page
    assert "ApplicationConsent batches in flight at once" in page and "CPV_CONSENT_PULLERS" in page
    assert "Customers in an ApplicationConsent batch" in page and "CPV_CONSENT_BATCH" in page
    assert "PostgreSQL database cpv on db.example:5432 as cpv, password set" in page
    assert "SMTP through smtp.example:587 as mailer, password set" in page
    assert f"client id {uuid.UUID(int=7)}, signing in with a client secret (set)" in page
    # No field name, no raw dict, no Python value.
    assert "renewal_interval_days" not in page and "{'" not in page and "True" not in page and "None" not in page


def test_no_secret_is_shown_and_urls_show_no_password(admin_user, secret_config) -> None:  # type: ignore[no-untyped-def]
    page = client_for(admin_user).get("/settings/").content.decode()

    assert CANARY not in page
    assert "redis://***@broker.example:6379/0" in page
    assert "redis://worker:***@results.example:6379/1" in page
    assert "Redis at redis://***@c.example/2" in page
    security = {
        s.label: s.value for g in configuration_groups(secret_config) if g.title == "Security" for s in g.settings
    }
    assert security["Django secret key"] == "set" and security["Readiness probe token"] == "set"
    vault = {s.label: s.value for g in configuration_groups(secret_config) if g.title == "Vault" for s in g.settings}
    assert vault["Local vault keys"].startswith("set")
    assert vault["Keys that open tokens"].startswith("set (1: key id s")
    assert vault["Sealing public key"].startswith("set (key id s")


def test_a_setting_without_a_label_is_shown_under_other_and_only_as_set_when_secret(secret_config) -> None:  # type: ignore[no-untyped-def]
    @dataclasses.dataclass(frozen=True)
    class Newer:
        vendor_name: str = "Contoso CPV"
        vendor_api_key: str = dataclasses.field(default=CANARY, repr=False)

    [other] = configuration_groups(Newer())

    assert other.title == "Other"
    assert [(s.label, s.value) for s in other.settings] == [("Vendor name", "Contoso CPV"), ("Vendor api key", "set")]


def test_the_page_renders_without_running_the_live_check_and_loads_its_script(admin_user, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def refuse() -> None:
        raise AssertionError("the page must not wait for the live check")

    monkeypatch.setattr("dashboard.operations.live_checks", refuse)
    client = client_for(admin_user)

    response = client.get("/settings/")

    page = response.content.decode()
    assert response.status_code == 200 and "Checking…" in page
    assert 'data-check-url="/settings/check"' in page
    assert '<script src="/js/settings-check.js" defer></script>' in page
    script = client.get("/js/settings-check.js")
    assert script.status_code == 200 and script["Content-Type"].startswith("text/javascript")
    assert b'fetch(section.getAttribute("data-check-url")' in script.content
    assert client.get("/js/no-such-script.js").status_code == 404


def test_the_check_endpoint_answers_json_for_the_pages_script(sim_settings, admin_user) -> None:  # type: ignore[no-untyped-def]
    sim_settings.world.add_redirect_uris(callback_urls())
    response = client_for(admin_user).get("/settings/check")

    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    checks = response.json()["checks"]
    assert [c["name"] for c in checks] == [
        "Sign-in authority",
        "Partner Center",
        "Vault",
        "App registration (CPV_CLIENT_ID)",
    ]
    assert all(c["ok"] for c in checks), checks
    assert all(set(c) == {"name", "ok", "milliseconds", "detail"} for c in checks)


def test_a_failing_check_says_why_without_a_secret(admin_user, secret_config, settings) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_APP = AppCredential(client_id="", client_secret=CANARY)

    checks = client_for(admin_user).get("/settings/check").json()["checks"]

    authority = checks[0]
    assert authority["ok"] is False and "CPV_CLIENT_ID is not set" in authority["detail"]
    assert CANARY not in str(checks)


def test_every_setting_of_the_configuration_has_its_group_and_label() -> None:
    from django.conf import settings

    from dashboard.configuration import configuration_groups

    groups = configuration_groups(settings.CONFIG)
    shown = {s.label: s.value for group in groups for s in group.settings}

    assert [g.title for g in groups if g.title == "Other"] == [], [s.label for g in groups[-1:] for s in g.settings]
    assert "Who may sign in with a password" in shown and "Vendor shown to partners" in shown


@pytest.mark.django_db
def test_the_vault_check_says_its_keys_in_words_not_as_a_python_list(settings) -> None:  # type: ignore[no-untyped-def]
    import os

    from dashboard.operations import _check_vault
    from tokens.vault import reset_vault

    settings.VAULT_BACKEND = "local"
    settings.VAULT_KEYS = [os.urandom(32)]
    reset_vault()
    try:
        detail = _check_vault()
    finally:
        reset_vault()

    assert "key ids: " in detail and "[" not in detail, detail


def test_the_page_shows_each_national_clouds_app_and_hosts_without_a_secret(admin_user, settings) -> None:  # type: ignore[no-untyped-def]
    from cpv import clouds

    settings.CONFIG = dataclasses.replace(
        settings.CONFIG,
        national_apps={
            ("usgov", "production"): AppCredential(client_id=str(uuid.UUID(int=8)), client_secret=CANARY),
            ("china", "production"): AppCredential(client_id=str(uuid.UUID(int=9)), certificate_path="/run/cn.pem"),
            ("usgov", "sandbox"): AppCredential(
                client_id=str(uuid.UUID(int=10)),
                credentials=(
                    Credential(MANAGED_IDENTITY, managed_identity_client_id=str(uuid.UUID(int=11))),
                    Credential(CERTIFICATE, certificate_path="/run/gov-sandbox.pem"),
                ),
                certificate_path="/run/gov-sandbox.pem",
            ),
        },
        custom_clouds={
            "usgov": clouds.custom_cloud(
                authority_host="https://127.0.0.1:9441",
                partner_center_url="https://127.0.0.1:9442",
                graph_url="https://127.0.0.1:9443",
                national="usgov",
            )
        },
    )

    page = client_for(admin_user).get("/settings/").content.decode()

    assert f"usgov production: client id {uuid.UUID(int=8)}, signing in with a client secret (set)" in page
    assert f"china production: client id {uuid.UUID(int=9)}, signing in with a certificate (/run/cn.pem)" in page
    assert (
        f"usgov sandbox: client id {uuid.UUID(int=10)}, signing in with the managed identity {uuid.UUID(int=11)} "
        "(a federated identity credential), then a certificate (/run/gov-sandbox.pem)"
    ) in page
    assert "usgov: sign-in at https://127.0.0.1:9441, Partner Center at https://127.0.0.1:9442" in page
    assert CANARY not in page

"""The configuration contract: embedded defaults, production refusals, the custom cloud, malformed values."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cpv import clouds
from cpv.config import (
    CERTIFICATE,
    MANAGED_IDENTITY,
    SECRET,
    ConfigError,
    KeyVaultCertificate,
    key_vault_certificate,
    load_config,
)
from tests.conftest import ROOT, project_env

VAULT_KEY = base64.urlsafe_b64encode(b"k" * 32).decode()
SECRET_KEY = "p7Vq2xL9mZ4rT8wK1nB6yH3jF5sD0aG7cE2uR9iO4pW6tY8qX1zV3bN5mL7kJ9hQ"
STAFF_TENANT = "aaaaaaaa-2222-3333-4444-555555555555"


def production_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    cert = tmp_path / "cpv.pem"
    cert.write_text("placeholder")
    env = {
        "CPV_MODE": "production",
        "CPV_PROCESS_ROLE": "worker",
        "DJANGO_SECRET_KEY": SECRET_KEY,
        "CPV_BASE_URL": "https://cpv.example.com",
        "DATABASE_URL": "postgres://cpv:pw@db.example.com:5432/cpv",
        "CELERY_BROKER_URL": "redis://redis.example.com:6379/0",
        "CPV_CLIENT_ID": "11111111-2222-3333-4444-555555555555",
        "CPV_CLIENT_CERTIFICATE": str(cert),
        "VAULT_KEY": VAULT_KEY,
        "EMAIL_URL": "smtp+tls://mailer:pw@smtp.example.com:587",
        "CPV_VENDOR_NAME": "Contoso Cloud Services",
        "CPV_VAR_DIR": str(tmp_path / "var"),
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v != ""}


def problems_of(env: dict[str, str], tmp_path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(env, base_dir=tmp_path)
    return caught.value.problems


def test_it_runs_on_embedded_defaults_with_nothing_set(tmp_path: Path) -> None:
    config = load_config({}, base_dir=tmp_path)

    assert config.mode == "embedded"
    assert not config.debug
    assert config.database["ENGINE"] == "django.db.backends.sqlite3"
    assert config.database["NAME"] == str(tmp_path / "var" / "db.sqlite3")
    assert config.broker_url == "filesystem://"
    folder = Path(config.broker_transport_options["data_folder_in"])
    assert folder.is_dir() and folder == Path(config.broker_transport_options["data_folder_out"])
    assert Path(config.broker_transport_options["processed_folder"]).is_dir()
    assert Path(config.broker_transport_options["control_folder"]).is_dir()
    assert config.result_backend == f"file://{tmp_path / 'var' / 'celery' / 'results'}"
    assert config.vault_backend == "local"
    assert config.cloud is clouds.CLOUDS["global"]
    assert config.base_url == "http://127.0.0.1:8000"
    assert {"127.0.0.1", "localhost"} <= set(config.allowed_hosts)
    assert config.email["EMAIL_BACKEND"].endswith("console.EmailBackend")
    assert config.log_format == "text"
    assert config.self_onboarding is True
    assert config.missing_for_consent == [
        "CPV_CLIENT_ID",
        "CPV_CLIENT_MANAGED_IDENTITY, CPV_CLIENT_CERTIFICATE or CPV_CLIENT_SECRET",
    ]
    assert config.application_grants["applicationGrants"][0]["enterpriseApplicationId"] == clouds_graph_id()


def test_staff_sign_in_defaults_follow_the_mode_and_the_staff_tenant(tmp_path: Path) -> None:
    embedded = load_config({}, base_dir=tmp_path)
    with_tenant = load_config({"CPV_STAFF_TENANT_ID": "AAAAAAAA-2222-3333-4444-555555555555"}, base_dir=tmp_path)
    production = load_config(production_env(tmp_path), base_dir=tmp_path)

    assert (embedded.staff_tenant_id, embedded.staff_password_sign_in, embedded.staff_totp) == ("", "all", "enrolled")
    assert with_tenant.staff_tenant_id == "aaaaaaaa-2222-3333-4444-555555555555"
    assert with_tenant.staff_password_sign_in == "admins"
    assert (production.staff_password_sign_in, production.staff_totp) == ("admins", "required")


def clouds_graph_id() -> str:
    return "00000003-0000-0000-c000-000000000000"


def test_the_staff_sign_in_asks_for_no_authentication_context_by_default(tmp_path: Path) -> None:
    assert load_config({}, base_dir=tmp_path).staff_auth_context == ""
    assert load_config({"CPV_STAFF_TENANT_ID": STAFF_TENANT}, base_dir=tmp_path).staff_auth_context == ""
    assert load_config(production_env(tmp_path), base_dir=tmp_path).staff_auth_context == ""


@pytest.mark.parametrize("context", ["c1", "c25", "c99"])
def test_the_staff_sign_in_takes_an_authentication_context_id(context: str, tmp_path: Path) -> None:
    env = {"CPV_STAFF_TENANT_ID": STAFF_TENANT, "CPV_STAFF_AUTH_CONTEXT": context}

    assert load_config(env, base_dir=tmp_path).staff_auth_context == context
    assert load_config(production_env(tmp_path, **env), base_dir=tmp_path).staff_auth_context == context


@pytest.mark.parametrize("context", ["c0", "c100", "c01", "C1", "1", "urn:acr:mfa", "c1,c2"])
def test_an_authentication_context_that_is_not_an_id_is_refused(context: str, tmp_path: Path) -> None:
    (problem,) = problems_of({"CPV_STAFF_TENANT_ID": STAFF_TENANT, "CPV_STAFF_AUTH_CONTEXT": context}, tmp_path)

    assert problem.startswith("CPV_STAFF_AUTH_CONTEXT must be an authentication context id such as c1 (c1 to c99)"), (
        problem
    )


def test_an_authentication_context_needs_the_staff_tenant(tmp_path: Path) -> None:
    (problem,) = problems_of({"CPV_STAFF_AUTH_CONTEXT": "c1"}, tmp_path)

    assert problem.startswith("CPV_STAFF_AUTH_CONTEXT needs CPV_STAFF_TENANT_ID"), problem
    assert "sign in with Microsoft" in problem


def test_the_embedded_secret_key_is_generated_once_and_kept(tmp_path: Path) -> None:
    first = load_config({}, base_dir=tmp_path).secret_key
    second = load_config({}, base_dir=tmp_path).secret_key

    assert len(first) >= 50
    assert first == second
    assert (tmp_path / "var" / "secret.key").stat().st_mode & 0o777 == 0o600


def test_the_embedded_vault_key_comes_from_the_demo_file(tmp_path: Path) -> None:
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "vault.key").write_text(VAULT_KEY + "\n")

    assert load_config({}, base_dir=tmp_path).vault_keys == [b"k" * 32]


def test_a_complete_production_environment_is_accepted(tmp_path: Path) -> None:
    config = load_config(production_env(tmp_path), base_dir=tmp_path)

    assert config.production
    assert config.database["ENGINE"] == "django.db.backends.postgresql"
    assert config.database["OPTIONS"]["connect_timeout"] == 5
    # No JIT compile of the pages' plans (about 150 ms each time a plan is costed past jit_above_cost), and random
    # reads priced as on SSD.
    assert config.database["OPTIONS"]["options"] == "-c jit=off -c random_page_cost=1.1"
    assert config.broker_url.startswith("redis://")
    assert config.broker_transport_options["visibility_timeout"] == 3600
    assert config.result_backend == config.broker_url
    assert config.log_format == "json"
    assert config.ssl_redirect
    assert config.allowed_hosts == ["cpv.example.com"]


@pytest.mark.parametrize(
    ("variable", "expected"),
    [
        ("DJANGO_SECRET_KEY", "DJANGO_SECRET_KEY is required in production"),
        ("CPV_BASE_URL", "CPV_BASE_URL is required in production"),
        ("DATABASE_URL", "DATABASE_URL is required in production"),
        ("CELERY_BROKER_URL", "CELERY_BROKER_URL is required in production"),
        ("CPV_CLIENT_ID", "CPV_CLIENT_ID is required in production"),
        (
            "CPV_CLIENT_CERTIFICATE",
            "CPV_CLIENT_MANAGED_IDENTITY, CPV_CLIENT_CERTIFICATE or CPV_CLIENT_SECRET is required in production",
        ),
        ("VAULT_KEY", "VAULT_PRIVATE_KEY (or, before re-sealing, VAULT_KEY) is required in production"),
        ("EMAIL_URL", "EMAIL_URL is required in production"),
        ("CPV_VENDOR_NAME", "CPV_VENDOR_NAME is required in production"),
    ],
)
def test_production_refuses_to_start_without(variable: str, expected: str, tmp_path: Path) -> None:
    problems = problems_of(production_env(tmp_path, **{variable: ""}), tmp_path)

    assert any(expected in p for p in problems), problems


def test_production_names_every_missing_variable_at_once(tmp_path: Path) -> None:
    problems = problems_of({"CPV_MODE": "production", "CPV_VAR_DIR": str(tmp_path)}, tmp_path)
    text = "\n".join(problems)

    for name in ("DJANGO_SECRET_KEY", "CPV_BASE_URL", "DATABASE_URL", "CELERY_BROKER_URL", "CPV_CLIENT_ID"):
        assert name in text
    # Nothing was invented in its place.
    assert not (tmp_path / "secret.key").exists()


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"DJANGO_SECRET_KEY": "short"}, "DJANGO_SECRET_KEY must be at least 50 random characters"),
        ({"CPV_BASE_URL": "http://cpv.example.com"}, "CPV_BASE_URL must be https:// in production"),
        ({"DATABASE_URL": "sqlite:///db.sqlite3"}, "DATABASE_URL must point at PostgreSQL in production"),
        ({"CELERY_BROKER_URL": "memory://"}, "cannot be shared by separate workers"),
        ({"DJANGO_DEBUG": "true"}, "DJANGO_DEBUG must be off in production"),
        (
            {
                "CPV_CLOUD": "custom",
                "CPV_AUTHORITY_HOST": "https://login.example.test",
                "CPV_PARTNER_CENTER_URL": "https://pc.example.test",
                "CPV_GRAPH_URL": "https://graph.example.test",
            },
            "CPV_CLOUD=custom points the control panel at hosts other than Microsoft's",
        ),
        ({"VAULT_BACKEND": "azure", "VAULT_KEY": ""}, "VAULT_URL is required when VAULT_BACKEND=azure"),
        ({"CPV_STAFF_PASSWORD_SIGN_IN": "all"}, "CPV_STAFF_PASSWORD_SIGN_IN must be admins in production"),
        ({"CPV_STAFF_TOTP": "enrolled"}, "CPV_STAFF_TOTP must be required in production"),
    ],
)
def test_production_refuses_unsafe_values(overrides: dict[str, str], expected: str, tmp_path: Path) -> None:
    problems = problems_of(production_env(tmp_path, **overrides), tmp_path)

    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("CPV_MODE", "staging", "CPV_MODE must be one of embedded, production, got 'staging'"),
        ("DJANGO_DEBUG", "maybe", "DJANGO_DEBUG must be true or false, got 'maybe'"),
        ("DATABASE_URL", "nonsense", "DATABASE_URL must be a postgres:// or sqlite:/// URL"),
        ("DATABASE_URL", "mysql://u@h/db", "got scheme 'mysql'"),
        ("CELERY_BROKER_URL", "kafka://x", "CELERY_BROKER_URL must use one of"),
        ("CELERY_RESULT_BACKEND", "mongodb://x", "CELERY_RESULT_BACKEND must use one of"),
        ("CELERY_TASK_TIME_LIMIT", "ten", "CELERY_TASK_TIME_LIMIT must be a whole number, got 'ten'"),
        ("CELERY_TASK_SOFT_TIME_LIMIT", "400", "CELERY_TASK_SOFT_TIME_LIMIT < CELERY_TASK_TIME_LIMIT"),
        ("CELERY_VISIBILITY_TIMEOUT", "200", "< CELERY_VISIBILITY_TIMEOUT"),
        ("CPV_VERIFY_QUEUE", "celery", "CPV_VERIFY_QUEUE must be a queue name"),
        ("CPV_VERIFY_QUEUE", "graph reads", "got 'graph reads'"),
        ("CPV_BASE_URL", "cpv.example.com", "CPV_BASE_URL must be an http(s):// URL with a host"),
        ("CPV_BASE_URL", "https://cpv.example.com/panel", "CPV_BASE_URL must be the site's root URL"),
        ("CPV_CLOUD", "mars", "CPV_CLOUD must be one of global, usgov, china, custom, got 'mars'"),
        ("CPV_CLOUD", "germany", "retired by Microsoft in 2021"),
        ("CPV_CLIENT_ID", "my-app", "CPV_CLIENT_ID must be the app's client id (a GUID)"),
        ("CPV_CLIENT_CERTIFICATE", "/nonexistent/cert.pem", "is not a readable file"),
        (
            "CPV_CLIENT_CERTIFICATE",
            "https://contoso.vault.azure.net/secrets/cpv-app",
            "which is not a Key Vault certificate: write https://<vault>.vault.azure.net/certificates/<name>",
        ),
        ("VAULT_BACKEND", "vault9000", "VAULT_BACKEND must be one of local, azure"),
        ("VAULT_KEY", "not base64!", "VAULT_KEY is not usable: key 1 is not URL-safe base64"),
        ("VAULT_KEY", base64.urlsafe_b64encode(b"short").decode(), "decodes to 5 bytes"),
        ("EMAIL_URL", "carrier-pigeon://x", "EMAIL_URL must be smtp://"),
        ("CPV_APPLICATION_GRANTS", "{not json", "CPV_APPLICATION_GRANTS is not usable"),
        ("CPV_APPLICATION_GRANTS", '[{"enterpriseApplicationId": "graph", "scope": "x"}]', "is not a GUID"),
        (
            "CPV_APPLICATION_GRANTS",
            '[{"enterpriseApplicationId": "00000002-0000-0000-c000-000000000000", "scope": "Directory.Read"}]',
            "Azure AD Graph (00000002-0000-0000-c000-000000000000) was retired by Microsoft on 2025-08-31",
        ),
        (
            "CPV_APPLICATION_GRANTS",
            '[{"enterpriseApplicationId": "00000003-0000-0000-c000-000000000000", "scope": "User.Read.All"},'
            ' {"enterpriseApplicationId": "00000003-0000-0000-C000-000000000000", "scope": "Domain.Read.All"}]',
            "appears twice: give one grant per resource",
        ),
        ("CPV_AUTHORITY_HOST", "https://login.example.com", "only read when CPV_CLOUD=custom"),
        ("CPV_LOG_FORMAT", "xml", "CPV_LOG_FORMAT must be one of text, json"),
        ("CPV_PC_REQUESTS_PER_SECOND", "50", "must stay under Partner Center's 50 per second"),
        ("CPV_VAULT_CREATES_PER_SECOND", "30", "must stay under Key Vault's 30 per second"),
        ("CPV_CONSENT_PULLERS", "0", "CPV_CONSENT_PULLERS must be at least 1, got 0"),
        ("CPV_CONSENT_PULLERS", "eight", "CPV_CONSENT_PULLERS must be a whole number, got 'eight'"),
        ("CPV_CONSENT_BATCH", "-5", "CPV_CONSENT_BATCH must be at least 1, got -5"),
        ("CPV_CONSENT_BATCH", "2.5", "CPV_CONSENT_BATCH must be a whole number, got '2.5'"),
        ("CPV_CONSENT_BATCH", "1000", "must take at most half of CELERY_TASK_SOFT_TIME_LIMIT (300 s)"),
        ("CPV_STAFF_TENANT_ID", "contosocpv.onmicrosoft.com", "CPV_STAFF_TENANT_ID must be the vendor's tenant id"),
        ("CPV_STAFF_PASSWORD_SIGN_IN", "nobody", "CPV_STAFF_PASSWORD_SIGN_IN must be one of admins, all"),
        ("CPV_STAFF_TOTP", "sometimes", "CPV_STAFF_TOTP must be one of required, enrolled"),
    ],
)
def test_a_malformed_variable_is_rejected_with_its_name(
    variable: str, value: str, expected: str, tmp_path: Path
) -> None:
    problems = problems_of({variable: value}, tmp_path)

    assert any(expected in p for p in problems), problems
    assert all(value not in p for p in problems if variable == "VAULT_KEY"), "a key must never be echoed"


def test_the_fair_schedules_sizes_default_to_eight_pullers_of_ten_and_are_read(tmp_path: Path) -> None:
    defaults = load_config({}, base_dir=tmp_path)
    assert (defaults.consent_pullers, defaults.consent_batch) == (8, 10)
    config = load_config({"CPV_CONSENT_PULLERS": "16", "CPV_CONSENT_BATCH": "25"}, base_dir=tmp_path)
    assert (config.consent_pullers, config.consent_batch) == (16, 25)
    # A batch gets 1/16 of 48 a second: 25 customers take about 8 s, well inside a 20 s soft time limit...
    load_config({"CPV_CONSENT_PULLERS": "16", "CPV_CONSENT_BATCH": "25", "CELERY_TASK_SOFT_TIME_LIMIT": "20",
                 "CELERY_TASK_TIME_LIMIT": "30"}, base_dir=tmp_path)  # fmt: skip
    # ...but not inside half of a 10 s one: the batch would be cut off.
    problems = problems_of(
        {"CPV_CONSENT_PULLERS": "16", "CPV_CONSENT_BATCH": "25", "CELERY_TASK_SOFT_TIME_LIMIT": "10",
         "CELERY_TASK_TIME_LIMIT": "30"}, tmp_path
    )  # fmt: skip
    assert problems == [
        "CPV_CONSENT_BATCH x CPV_CONSENT_PULLERS (25 x 16) customers take 8 s at CPV_PC_REQUESTS_PER_SECOND=48: a "
        "batch, sharing the limit with the other pullers, must take at most half of CELERY_TASK_SOFT_TIME_LIMIT "
        "(10 s); lower one of them"
    ]


def test_the_custom_cloud_takes_its_hosts_from_the_environment(tmp_path: Path) -> None:
    config = load_config(
        {
            "CPV_CLOUD": "custom",
            "CPV_AUTHORITY_HOST": "https://127.0.0.1:8441/",
            "CPV_PARTNER_CENTER_URL": "https://127.0.0.1:8442",
            "CPV_GRAPH_URL": "https://localhost:8443",
        },
        base_dir=tmp_path,
    )

    assert config.cloud.name == "custom"
    assert config.cloud.authority_host == "https://127.0.0.1:8441"
    assert config.cloud.partner_center_url == "https://127.0.0.1:8442"
    assert config.cloud.graph_url == "https://localhost:8443"
    # Token audiences stay Microsoft's: they name the API, not the host serving it.
    assert config.cloud.partner_center_scope == "https://api.partnercenter.microsoft.com/user_impersonation"
    assert config.cloud.authority("contoso.onmicrosoft.com") == "https://127.0.0.1:8441/contoso.onmicrosoft.com"
    assert not config.cloud.is_microsoft


def test_the_custom_cloud_needs_all_three_hosts_over_https(tmp_path: Path) -> None:
    problems = problems_of(
        {"CPV_CLOUD": "custom", "CPV_AUTHORITY_HOST": "http://127.0.0.1:8441", "CPV_GRAPH_URL": "https://g"},
        tmp_path,
    )

    assert "CPV_AUTHORITY_HOST must be an https:// URL with a host, got 'http://127.0.0.1:8441'" in problems
    assert "CPV_PARTNER_CENTER_URL is required when CPV_CLOUD=custom" in problems


def test_application_grants_accept_a_list_or_an_object(tmp_path: Path) -> None:
    arm = {"enterpriseApplicationId": "797f4846-ba00-4fd7-ba43-dac1f8f63013", "scope": "user_impersonation"}
    as_list = load_config({"CPV_APPLICATION_GRANTS": json.dumps([arm])}, base_dir=tmp_path)
    as_object = load_config(
        {"CPV_APPLICATION_GRANTS": json.dumps({"displayName": "Acme CPV", "applicationGrants": [arm]})},
        base_dir=tmp_path,
    )

    assert as_list.application_grants["applicationGrants"] == [arm]
    assert as_object.application_grants["displayName"] == "Acme CPV"


def test_a_secret_never_appears_in_the_configs_repr(tmp_path: Path) -> None:
    config = load_config(production_env(tmp_path, CPV_CLIENT_SECRET="s3cr3t-value-for-the-app"), base_dir=tmp_path)

    assert "s3cr3t-value-for-the-app" not in repr(config)
    assert SECRET_KEY not in repr(config)
    assert "pw@" not in repr(config)


def _settings_probe(env: dict[str, str], expression: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            f"import django; django.setup(); from django.conf import settings; print({expression})",
        ],
        cwd=ROOT,
        env=project_env(DJANGO_SETTINGS_MODULE="cpv.settings", **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_process_stops_at_start_naming_the_missing_variable(tmp_path: Path) -> None:
    env = {k: "" for k in ("DJANGO_SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "CPV_BASE_URL")}
    result = _settings_probe({**env, "CPV_MODE": "production", "CPV_VAR_DIR": str(tmp_path)}, "settings.DEBUG")

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is required in production (CPV_MODE=production)" in result.stderr
    assert "CPV_BASE_URL is required in production" in result.stderr


def test_dotenv_is_read_only_when_asked(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("CPV_BASE_URL=https://from-dotenv.example.com\n")
    common = {"DJANGO_ENV_FILE": str(dotenv), "CPV_VAR_DIR": str(tmp_path), "CPV_BASE_URL": ""}

    not_asked = _settings_probe(common, "settings.CPV_BASE_URL")
    asked = _settings_probe({**common, "DJANGO_READ_DOT_ENV_FILE": "true"}, "settings.CPV_BASE_URL")

    assert not_asked.stdout.strip() == "http://127.0.0.1:8000", not_asked.stderr
    assert asked.stdout.strip() == "https://from-dotenv.example.com", asked.stderr


def _check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=project_env(DJANGO_SETTINGS_MODULE="cpv.settings", **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_deploy_reports_nothing_with_production_settings(tmp_path: Path) -> None:
    result = _check_deploy(production_env(tmp_path, CPV_STAFF_TENANT_ID="aaaaaaaa-2222-3333-4444-555555555555"))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_warns_that_without_microsofts_sign_in_only_admins_sign_in(tmp_path: Path) -> None:
    result = _check_deploy(production_env(tmp_path))

    assert result.returncode != 0
    assert "cpv.W001" in result.stderr + result.stdout and "only admins" in result.stderr + result.stdout


def test_a_test_deployment_may_allow_a_custom_cloud_in_production(tmp_path: Path) -> None:
    env = production_env(
        tmp_path,
        CPV_CLOUD="custom",
        CPV_AUTHORITY_HOST="https://login.example.test",
        CPV_PARTNER_CENTER_URL="https://pc.example.test",
        CPV_GRAPH_URL="https://graph.example.test",
        CPV_ALLOW_CUSTOM_CLOUD="true",
    )

    assert load_config(env, base_dir=tmp_path).cloud.partner_center_url == "https://pc.example.test"


def test_embedded_defaults_make_the_vault_key_pair_on_first_use_and_keep_it(tmp_path: Path) -> None:
    first = load_config({}, base_dir=tmp_path)
    again = load_config({}, base_dir=tmp_path)

    private_file = tmp_path / "var" / "vault-seal.key"
    assert first.vault_private_keys and first.vault_private_keys == again.vault_private_keys
    assert first.vault_public_key is not None and first.vault_public_key == again.vault_public_key
    assert private_file.stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "var" / "vault.key").exists(), "no symmetric key is made any more"
    assert first.vault_keys == []


def test_production_never_makes_a_vault_key(tmp_path: Path) -> None:
    problems = problems_of(production_env(tmp_path, VAULT_KEY="", VAULT_BACKEND="local"), tmp_path)

    assert any("VAULT_PRIVATE_KEY (or, before re-sealing, VAULT_KEY) is required in production" in p for p in problems)
    assert not (tmp_path / "var" / "vault.key").exists()
    assert not (tmp_path / "var" / "vault-seal.key").exists()


# --- the vendor's branding --------------------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"/>'


def test_embedded_mode_needs_no_branding_and_words_stand_in_for_the_name(tmp_path: Path) -> None:
    vendor = load_config({}, base_dir=tmp_path).vendor

    assert (vendor.name, vendor.support_email, vendor.logo_data_uri) == ("", "", "")
    assert vendor.label == "your Control Panel Vendor"
    assert vendor.subject("please renew your consent") == "Please renew your consent"


def test_the_vendors_name_support_address_and_logo_are_read(tmp_path: Path) -> None:
    logo = tmp_path / "logo.svg"
    logo.write_bytes(SVG)
    env = {
        "CPV_VENDOR_NAME": "  Contoso Cloud Services ",
        "CPV_VENDOR_SUPPORT_EMAIL": "help@contoso-cloud.example",
        "CPV_VENDOR_LOGO": str(logo),
    }

    vendor = load_config(env, base_dir=tmp_path).vendor

    assert vendor.name == vendor.label == "Contoso Cloud Services"
    assert vendor.support_email == "help@contoso-cloud.example"
    assert vendor.logo_path == str(logo)
    assert vendor.logo_data_uri == "data:image/svg+xml;base64," + base64.b64encode(SVG).decode()
    assert vendor.subject("please renew your consent") == "Contoso Cloud Services: please renew your consent"
    # The settings page lists the configuration: the logo's bytes are not in it.
    assert "base64" not in repr(vendor)


def test_production_takes_the_vendors_name(tmp_path: Path) -> None:
    config = load_config(production_env(tmp_path), base_dir=tmp_path)

    assert config.vendor.name == "Contoso Cloud Services"


def test_production_says_why_the_vendors_name_is_required(tmp_path: Path) -> None:
    (problem,) = problems_of(production_env(tmp_path, CPV_VENDOR_NAME=""), tmp_path)

    assert problem.startswith("CPV_VENDOR_NAME is required in production (CPV_MODE=production)")
    assert "app registration's display name" in problem


@pytest.mark.parametrize(
    ("logo_name", "content", "expected"),
    [
        ("logo.gif", b"GIF89a", "which must be a jpeg, jpg, png, svg, webp file"),
        ("logo.png", SVG, "which does not hold a image/png image"),
        ("logo.svg", PNG, "which does not hold a image/svg+xml image"),
        ("logo.png", b"", "which must hold 1 byte to 100 KB, and holds 0 bytes"),
        ("logo.png", PNG + b"\x00" * 100 * 1024, "which must hold 1 byte to 100 KB"),
        ("missing.png", None, "which is not a readable file"),
    ],
)
def test_a_logo_that_cannot_be_shown_is_refused_at_start(
    logo_name: str, content: bytes | None, expected: str, tmp_path: Path
) -> None:
    logo = tmp_path / logo_name
    if content is not None:
        logo.write_bytes(content)

    (problem,) = problems_of({"CPV_VENDOR_LOGO": str(logo)}, tmp_path)

    assert problem.startswith(f"CPV_VENDOR_LOGO names {str(logo)!r}, ")
    assert expected in problem


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CPV_VENDOR_SUPPORT_EMAIL": "support at contoso"}, "CPV_VENDOR_SUPPORT_EMAIL must be an email address"),
        ({"CPV_VENDOR_NAME": "C" * 121}, "CPV_VENDOR_NAME must be one line of at most 120 characters"),
        ({"CPV_VENDOR_NAME": "Contoso\nSupport"}, "CPV_VENDOR_NAME must be one line"),
    ],
)
def test_a_malformed_branding_value_is_refused_with_its_name(
    env: dict[str, str], expected: str, tmp_path: Path
) -> None:
    problems = problems_of(env, tmp_path)

    assert any(p.startswith(expected) for p in problems), problems


def test_each_national_cloud_reads_its_own_app_and_custom_hosts(tmp_path: Path) -> None:
    usgov_id, china_id, china_sandbox_id = (
        "33333333-3333-3333-3333-333333333333",
        "44444444-4444-4444-4444-444444444444",
        "55555555-5555-5555-5555-555555555555",
    )
    config = load_config(
        {
            "CPV_CLOUD": "custom",
            "CPV_AUTHORITY_HOST": "https://127.0.0.1:8441",
            "CPV_PARTNER_CENTER_URL": "https://127.0.0.1:8442",
            "CPV_GRAPH_URL": "https://127.0.0.1:8443",
            "CPV_USGOV_AUTHORITY_HOST": "https://127.0.0.1:9441",
            "CPV_USGOV_PARTNER_CENTER_URL": "https://127.0.0.1:9442",
            "CPV_USGOV_GRAPH_URL": "https://127.0.0.1:9443/",
            "CPV_USGOV_CLIENT_ID": usgov_id,
            "CPV_USGOV_CLIENT_SECRET": "usgov-secret",
            "CPV_CHINA_CLIENT_ID": china_id,
            "CPV_CHINA_CLIENT_SECRET": "china-secret",
            "CPV_CHINA_SANDBOX_CLIENT_ID": china_sandbox_id,
            "CPV_CHINA_SANDBOX_CLIENT_SECRET": "china-sandbox-secret",
        },
        base_dir=tmp_path,
    )

    assert {key: app.client_id for key, app in config.national_apps.items()} == {
        ("usgov", "production"): usgov_id,
        ("china", "production"): china_id,
        ("china", "sandbox"): china_sandbox_id,
    }
    usgov = config.custom_clouds["usgov"]
    assert (usgov.authority_host, usgov.partner_center_url, usgov.graph_url) == (
        "https://127.0.0.1:9441",
        "https://127.0.0.1:9442",
        "https://127.0.0.1:9443",
    )
    # Custom hosts standing for US Government ask for US Government's resources.
    assert usgov.national == "usgov" and usgov.graph_scope == "https://graph.microsoft.us/.default"
    assert "china" not in config.custom_clouds
    assert "usgov-secret" not in repr(config.national_apps)


def test_a_national_cloud_needs_all_three_custom_hosts_and_a_guid(tmp_path: Path) -> None:
    problems = problems_of(
        {
            "CPV_CLOUD": "custom",
            "CPV_AUTHORITY_HOST": "https://127.0.0.1:8441",
            "CPV_PARTNER_CENTER_URL": "https://127.0.0.1:8442",
            "CPV_GRAPH_URL": "https://127.0.0.1:8443",
            "CPV_CHINA_AUTHORITY_HOST": "https://127.0.0.1:9441",
            "CPV_USGOV_CLIENT_ID": "not-a-guid",
        },
        tmp_path,
    )

    assert any(p.startswith("CPV_CHINA_PARTNER_CENTER_URL is required when any of") for p in problems), problems
    assert "CPV_USGOV_CLIENT_ID must be the app's client id (a GUID), got 'not-a-guid'" in problems


def test_national_custom_hosts_are_refused_outside_the_custom_cloud(tmp_path: Path) -> None:
    problems = problems_of({"CPV_USGOV_GRAPH_URL": "https://127.0.0.1:9443"}, tmp_path)

    assert "CPV_USGOV_GRAPH_URL is only read when CPV_CLOUD=custom (CPV_CLOUD is global)" in problems


def test_a_certificate_in_key_vault_is_named_by_its_url_and_needs_no_file(tmp_path: Path) -> None:
    url = "https://contoso.vault.azure.net/certificates/cpv-app"
    versioned = "https://contoso.vault.azure.net/certificates/cpv-app/0123456789ABCDEF0123456789abcdef"
    config = load_config(production_env(tmp_path, CPV_CLIENT_CERTIFICATE=f"{url}, {versioned}"), base_dir=tmp_path)

    assert [c.certificate_path for c in config.app.credentials] == [url, versioned]
    vault = "https://contoso.vault.azure.net/"
    assert key_vault_certificate(url) == KeyVaultCertificate(vault_url=vault, name="cpv-app")
    assert key_vault_certificate(versioned) == KeyVaultCertificate(
        vault_url=vault, name="cpv-app", version="0123456789abcdef0123456789abcdef"
    )
    assert key_vault_certificate("/etc/cpv/app.pem") is None


MANAGED_IDENTITY_ID = "0F1E2D3C-4B5A-4968-8776-A5B4C3D2E1F0"


def test_a_managed_identity_is_the_first_credential_tried_before_certificates_and_secrets(tmp_path: Path) -> None:
    config = load_config(
        production_env(tmp_path, CPV_CLIENT_MANAGED_IDENTITY=MANAGED_IDENTITY_ID, CPV_CLIENT_SECRET="s3cret-value"),
        base_dir=tmp_path,
    )

    kinds = [c.kind for c in config.app.credentials]
    assert kinds == [MANAGED_IDENTITY, CERTIFICATE, SECRET]
    assert config.app.credentials[0].managed_identity_client_id == MANAGED_IDENTITY_ID.lower()
    assert config.app.credentials[0].label == (
        f"the managed identity {MANAGED_IDENTITY_ID.lower()} (CPV_CLIENT_MANAGED_IDENTITY)"
    )


def test_production_starts_with_a_managed_identity_as_the_only_credential(tmp_path: Path) -> None:
    env = production_env(tmp_path, CPV_CLIENT_CERTIFICATE="", CPV_CLIENT_MANAGED_IDENTITY=MANAGED_IDENTITY_ID)

    config = load_config(env, base_dir=tmp_path)

    assert [c.kind for c in config.app.credentials] == [MANAGED_IDENTITY]
    assert config.missing_for_consent == []


@pytest.mark.parametrize("prefix", ["CPV_SANDBOX", "CPV_USGOV", "CPV_CHINA_SANDBOX"])
def test_every_app_prefix_reads_its_managed_identity(prefix: str, tmp_path: Path) -> None:
    env = {
        f"{prefix}_CLIENT_ID": "22222222-3333-4444-5555-666666666666",
        f"{prefix}_CLIENT_MANAGED_IDENTITY": MANAGED_IDENTITY_ID,
    }

    config = load_config(env, base_dir=tmp_path)

    app = config.sandbox_app if prefix == "CPV_SANDBOX" else config.national_apps[_national_key(prefix)]
    assert app is not None
    (credential,) = app.credentials
    assert credential.kind == MANAGED_IDENTITY and credential.source == f"{prefix}_CLIENT_MANAGED_IDENTITY"


def _national_key(prefix: str) -> tuple[str, str]:
    cloud = prefix.split("_")[1].lower()
    return cloud, "sandbox" if prefix.endswith("_SANDBOX") else "production"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("system", "Microsoft lets only user-assigned identities be an app's federated identity credential"),
        ("SystemAssigned", "Microsoft lets only user-assigned identities be an app's federated identity credential"),
        ("my-identity", "must be the client id (a GUID) of the user-assigned managed identity"),
    ],
)
def test_a_managed_identity_that_is_not_a_user_assigned_client_id_is_refused(
    value: str, expected: str, tmp_path: Path
) -> None:
    problems = problems_of(production_env(tmp_path, CPV_CLIENT_MANAGED_IDENTITY=value), tmp_path)

    assert any(p.startswith("CPV_CLIENT_MANAGED_IDENTITY must be") and expected in p for p in problems), problems


def test_a_managed_identity_without_the_client_id_is_refused(tmp_path: Path) -> None:
    (problem,) = problems_of({"CPV_SANDBOX_CLIENT_MANAGED_IDENTITY": MANAGED_IDENTITY_ID}, tmp_path)

    assert problem == "CPV_SANDBOX_CLIENT_ID is required when its managed identity, certificate or secret is set"

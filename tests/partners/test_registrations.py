"""The partner's cloud and environment decide the authority, Partner Center host, scopes and app registration."""

from __future__ import annotations

import pytest

from cpv import clouds
from cpv.config import AppCredential
from partners import registrations
from partners.models import Partner

pytestmark = pytest.mark.django_db

PRODUCTION_APP = AppCredential(client_id="11111111-1111-1111-1111-111111111111", client_secret="p")
SANDBOX_APP = AppCredential(client_id="22222222-2222-2222-2222-222222222222", client_secret="s")


def partner(**kwargs: str) -> Partner:
    return Partner.objects.create(name="P", contact_email="p@example.com", **kwargs)


def test_a_sandbox_partner_uses_the_sandbox_app_when_one_is_configured(settings) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_APP, settings.CPV_SANDBOX_APP = PRODUCTION_APP, SANDBOX_APP

    assert registrations.app_for(partner(environment="sandbox")) is SANDBOX_APP
    assert registrations.app_for(partner(environment="production")) is PRODUCTION_APP


def test_a_sandbox_partner_falls_back_to_the_production_app(settings) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_APP, settings.CPV_SANDBOX_APP = PRODUCTION_APP, None

    assert registrations.app_for(partner(environment="sandbox")) is PRODUCTION_APP


@pytest.mark.parametrize("cloud", ["global", "usgov", "china"])
def test_each_partner_cloud_has_its_own_endpoints_on_microsofts_clouds(settings, cloud: str) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_CLOUD_CONFIG = clouds.CLOUDS["global"]

    resolved = registrations.cloud_for(partner(cloud=cloud))

    assert resolved is clouds.CLOUDS[cloud]
    assert resolved.partner_center_scope.endswith("/user_impersonation")


USGOV_APP = AppCredential(client_id="33333333-3333-3333-3333-333333333333", certificate_path="/run/usgov.pem")
CHINA_APP = AppCredential(client_id="44444444-4444-4444-4444-444444444444", client_secret="c")
CHINA_SANDBOX_APP = AppCredential(client_id="55555555-5555-5555-5555-555555555555", client_secret="cs")


def on_microsofts_clouds(settings, **national: AppCredential) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_CLOUD_CONFIG = clouds.CLOUDS["global"]
    settings.CPV_APP, settings.CPV_SANDBOX_APP = PRODUCTION_APP, SANDBOX_APP
    settings.CPV_NATIONAL_APPS = {tuple(key.split("_")): app for key, app in national.items()}


def test_each_cloud_and_environment_uses_the_app_registered_there(settings) -> None:  # type: ignore[no-untyped-def]
    on_microsofts_clouds(
        settings, usgov_production=USGOV_APP, china_production=CHINA_APP, china_sandbox=CHINA_SANDBOX_APP
    )

    assert registrations.app_for(partner(cloud="global")) is PRODUCTION_APP
    assert registrations.app_for(partner(cloud="global", environment="sandbox")) is SANDBOX_APP
    assert registrations.app_for(partner(cloud="usgov")) is USGOV_APP
    # A national cloud's sandbox partner without a sandbox app there uses that cloud's production app.
    assert registrations.app_for(partner(cloud="usgov", environment="sandbox")) is USGOV_APP
    assert registrations.app_for(partner(cloud="china")) is CHINA_APP
    assert registrations.app_for(partner(cloud="china", environment="sandbox")) is CHINA_SANDBOX_APP
    assert registrations.app_refusal("usgov") is None and registrations.app_refusal("china", "sandbox") is None


def test_a_national_cloud_without_its_own_app_never_gets_the_global_one(settings) -> None:  # type: ignore[no-untyped-def]
    on_microsofts_clouds(settings, china_production=CHINA_APP)

    assert registrations.app_for(partner(cloud="usgov")).client_id == ""
    refusal = registrations.app_refusal("usgov")
    assert refusal is not None
    assert "no app registered in US Government (GCC High, DoD)" in refusal
    assert (
        "Set CPV_USGOV_CLIENT_ID with CPV_USGOV_CLIENT_MANAGED_IDENTITY, CPV_USGOV_CLIENT_CERTIFICATE or "
        "CPV_USGOV_CLIENT_SECRET"
    ) in refusal
    assert registrations.app_refusal("global") is None
    assert registrations.app_refusal("germany") == clouds.CLOUDS["germany"].retired_reason


def test_custom_hosts_standing_for_a_national_cloud_use_that_clouds_app(settings) -> None:  # type: ignore[no-untyped-def]
    shared = clouds.custom_cloud(
        authority_host="https://127.0.0.1:1", partner_center_url="https://127.0.0.1:2", graph_url="https://127.0.0.1:3"
    )
    usgov = clouds.custom_cloud(
        authority_host="https://127.0.0.1:4",
        partner_center_url="https://127.0.0.1:5",
        graph_url="https://127.0.0.1:6",
        national="usgov",
    )
    settings.CPV_CLOUD_CONFIG, settings.CPV_CUSTOM_CLOUDS = shared, {"usgov": usgov}
    settings.CPV_APP, settings.CPV_SANDBOX_APP = PRODUCTION_APP, None
    settings.CPV_NATIONAL_APPS = {("usgov", "production"): USGOV_APP}

    assert registrations.cloud_for(partner(cloud="usgov")) is usgov
    assert registrations.app_for(partner(cloud="usgov")) is USGOV_APP
    # China has no hosts of its own here: its partners go to the shared hosts, which stand for the global cloud.
    assert registrations.cloud_for(partner(cloud="china")) is shared
    assert registrations.app_for(partner(cloud="china")) is PRODUCTION_APP

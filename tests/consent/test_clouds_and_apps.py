"""The partner's cloud and environment decide the authority, Partner Center host, scopes and app registration."""

from __future__ import annotations

import pytest

from consent import services
from cpv import clouds
from cpv.config import AppCredential
from partners.models import Partner

pytestmark = pytest.mark.django_db

PRODUCTION_APP = AppCredential(client_id="11111111-1111-1111-1111-111111111111", client_secret="p")
SANDBOX_APP = AppCredential(client_id="22222222-2222-2222-2222-222222222222", client_secret="s")


def partner(**kwargs: str) -> Partner:
    return Partner.objects.create(name="P", contact_email="p@example.com", **kwargs)


def test_a_sandbox_partner_uses_the_sandbox_app_when_one_is_configured(settings) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_APP, settings.CPV_SANDBOX_APP = PRODUCTION_APP, SANDBOX_APP

    assert services.app_for(partner(environment="sandbox")) is SANDBOX_APP
    assert services.app_for(partner(environment="production")) is PRODUCTION_APP


def test_a_sandbox_partner_falls_back_to_the_production_app(settings) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_APP, settings.CPV_SANDBOX_APP = PRODUCTION_APP, None

    assert services.app_for(partner(environment="sandbox")) is PRODUCTION_APP


@pytest.mark.parametrize("cloud", ["global", "usgov", "china"])
def test_each_partner_cloud_has_its_own_endpoints_on_microsofts_clouds(settings, cloud: str) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_CLOUD_CONFIG = clouds.CLOUDS["global"]

    resolved = services.cloud_for(partner(cloud=cloud))

    assert resolved is clouds.CLOUDS[cloud]
    assert resolved.partner_center_scope.endswith("/user_impersonation")


def test_a_partner_left_in_a_retired_cloud_cannot_start_a_consent(settings) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_CLOUD_CONFIG = clouds.CLOUDS["global"]
    settings.CPV_APP = PRODUCTION_APP

    with pytest.raises(services.ConsentUnavailable, match="retired by Microsoft") as caught:
        services.consent_flow_start(partner=partner(cloud="germany"), origin="invitation", browser_key="k")

    assert caught.value.reason == "retired_cloud"


def test_consent_cannot_start_without_the_apps_credential(settings) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_CLOUD_CONFIG = clouds.CLOUDS["global"]
    settings.CPV_APP = AppCredential(client_id="")

    with pytest.raises(services.ConsentUnavailable, match="not finished configuring"):
        services.consent_flow_start(partner=partner(), origin="invitation", browser_key="k")


def test_the_redirect_uri_comes_from_the_base_url_never_the_request(settings, client) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_BASE_URL = "https://cpv.example.com"

    assert services.redirect_uri() == "https://cpv.example.com/consent/callback"


def test_the_callback_is_rate_limited_per_address(client) -> None:  # type: ignore[no-untyped-def]
    statuses = [client.post("/consent/callback", {"state": "x"}).status_code for _ in range(31)]

    assert statuses[:30] == [400] * 30
    assert statuses[30] == 429

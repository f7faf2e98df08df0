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

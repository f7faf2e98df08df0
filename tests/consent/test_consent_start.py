"""Starting a consent: the cloud and the app must allow it, the redirect URI is ours, the callback is rate limited."""

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


def test_a_partner_of_a_cloud_without_an_app_is_refused_at_invitation_and_consent(settings, operator) -> None:  # type: ignore[no-untyped-def]
    from consent.services import partner_invite
    from partners.services import PartnerError

    settings.CPV_CLOUD_CONFIG = clouds.CLOUDS["global"]
    settings.CPV_APP = PRODUCTION_APP
    settings.CPV_NATIONAL_APPS = {}

    with pytest.raises(PartnerError, match="no app registered in Microsoft Azure operated by 21Vianet"):
        partner_invite(actor=operator, name="Fabrikam", contact_email="a@fabrikam.example", cloud="china")
    assert not Partner.objects.exists()

    partner = Partner.objects.create(name="Fabrikam", contact_email="a@fabrikam.example", cloud="usgov")
    with pytest.raises(services.ConsentUnavailable, match="Set CPV_USGOV_CLIENT_ID"):
        services.consent_flow_start(partner=partner, origin="invitation", browser_key="k")


def test_the_portal_signs_in_with_the_chosen_clouds_app_and_staff_with_cpv_client_id(settings, rf) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    from consent import microsoft_sign_in, portal

    usgov = AppCredential(client_id="33333333-3333-3333-3333-333333333333", client_secret="u")
    settings.CPV_CLOUD_CONFIG = clouds.CLOUDS["global"]
    settings.CPV_APP = PRODUCTION_APP
    settings.CPV_NATIONAL_APPS = {("usgov", "production"): usgov}
    staff = dataclasses.replace(portal.SIGN_IN, per_cloud_app=False)

    assert microsoft_sign_in._app(portal.SIGN_IN, clouds.CLOUDS["usgov"]) is usgov
    assert microsoft_sign_in._app(portal.SIGN_IN, clouds.CLOUDS["global"]) is PRODUCTION_APP
    assert microsoft_sign_in._app(staff, clouds.CLOUDS["usgov"]) is PRODUCTION_APP
    with pytest.raises(microsoft_sign_in.SignInFailed) as caught:
        microsoft_sign_in.sign_in_start(
            rf.post("/portal/start"), portal.SIGN_IN, cloud_name="china", tenant="organizations"
        )
    assert caught.value.status == 503
    assert "no app registered in Microsoft Azure operated by 21Vianet" in caught.value.message

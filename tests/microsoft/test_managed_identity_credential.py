"""A user-assigned managed identity as the vendor app's credential: azure-identity's ManagedIdentityCredential asks
the host's endpoint (App Service's form, served by the simulator) for a token for the exchange audience, and msal
presents it as the client assertion; Entra accepts it when one of the app's federated identity credentials matches."""

from __future__ import annotations

import logging

import pytest
from django.conf import settings

from consent.services import partner_invite
from cpv.clouds import CHINA, CLOUDS, GLOBAL, USGOV
from cpv.config import CERTIFICATE, AppCredential, Credential
from microsoft import app_credentials, identity
from partners.models import Partner
from tests import managed_identities
from tests.conftest import free_port
from tests.factories import active_partner
from tests.managed_identities import managed
from tests.simulated import partner_user, sim_clouds
from tokens.alerts import alerts_open
from tokens.models import OperatorAlert, TokenEvent
from tokens.outcomes import RenewalOutcome, RenewalRetry
from tokens.renewal import renew_one


def _app(sim, *credentials: Credential) -> AppCredential:  # type: ignore[no-untyped-def]
    return AppCredential(
        client_id=sim.env["CPV_CLIENT_ID"], credentials=credentials, tenant_id=sim.env["CPV_VENDOR_TENANT_ID"]
    )


@pytest.fixture
def host_identity(cpv_sim, monkeypatch):  # type: ignore[no-untyped-def]
    return lambda **overrides: managed_identities.host_identity(cpv_sim, monkeypatch, **overrides)


def cpv_sim_cloud(sim):  # type: ignore[no-untyped-def]
    """The cloud the product is pointed at (the simulator's hosts, standing for the global cloud)."""
    return settings.CPV_CLOUD_CONFIG


def _probe(sim, client_id: str) -> str:  # type: ignore[no-untyped-def]
    """The app-only Graph token the app check's probe asks for, signed in with the managed identity alone."""
    app = _app(sim, managed(client_id))
    cloud = cpv_sim_cloud(sim)
    return identity.client_credentials_token(
        cloud=cloud, app=app, credential=app.credentials[0], resource=cloud.graph_resource
    )


def _endpoint_requests(sim):  # type: ignore[no-untyped-def]
    return [e for e in sim.control.log(service="entra") if e["path"] == "/msi/token"]


def _token_requests(sim):  # type: ignore[no-untyped-def]
    return [e for e in sim.control.log(service="entra") if e["path"].endswith("/oauth2/v2.0/token")]


def test_the_app_signs_in_with_only_its_managed_identity(cpv_sim, host_identity, caplog) -> None:  # type: ignore[no-untyped-def]
    created = host_identity()
    caplog.set_level(logging.DEBUG)

    token = _probe(cpv_sim, created["client_id"])

    assert token
    (request,) = _token_requests(cpv_sim)
    assert request["detail"]["credential"] == "federated"
    assert len(_endpoint_requests(cpv_sim)) == 1
    assert cpv_sim.control.find_leaks(caplog.text) == []


@pytest.mark.django_db
def test_a_renewal_with_only_the_managed_identity_moves_the_token(  # type: ignore[no-untyped-def]
    cpv_sim, host_identity, settings, django_capture_on_commit_callbacks, caplog
) -> None:
    created = host_identity()
    partner = active_partner(cpv_sim)
    settings.CPV_APP = _app(cpv_sim, managed(created["client_id"]))
    caplog.set_level(logging.DEBUG)

    with django_capture_on_commit_callbacks(execute=True):
        renew_one(partner_id=partner.pk, force=True)
    # a second renewal reuses the identity's token: azure-identity keeps it
    with django_capture_on_commit_callbacks(execute=True):
        renew_one(partner_id=partner.pk, force=True)

    assert TokenEvent.objects.filter(partner=partner, kind__in=TokenEvent.MOVED).count() == 2
    assert {r["detail"]["credential"] for r in _token_requests(cpv_sim)} == {"federated"}
    assert len(_endpoint_requests(cpv_sim)) == 1
    assert cpv_sim.control.find_leaks(caplog.text) == []


@pytest.mark.parametrize(
    "overrides",
    [
        {"subject": "00000000-0000-0000-0000-000000000001"},
        {"audiences": ["api://AzureADTokenExchangeUSGov"]},
        {"issuer": "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000002/v2.0"},
        # the subject is compared case-sensitively
        {"principal_id": "a1b2c3d4-0000-4000-8000-00000000abcd", "subject": "A1B2C3D4-0000-4000-8000-00000000ABCD"},
    ],
    ids=["wrong-subject", "wrong-audience", "wrong-issuer", "subject-in-another-case"],
)
def test_a_federated_credential_that_does_not_match_is_refused_with_70021(  # type: ignore[no-untyped-def]
    overrides, cpv_sim, host_identity
) -> None:
    created = host_identity(**overrides)

    with pytest.raises(identity.InvalidClient) as caught:
        _probe(cpv_sim, created["client_id"])

    assert 70021 in caught.value.codes
    assert "AADSTS70021" in str(caught.value)
    # the refused identity's token is in no word of the error
    assert cpv_sim.control.find_leaks(str(caught.value)) == []


def _endpoint_down(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{free_port()}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", "not-a-secret-header")


def test_a_managed_identity_endpoint_that_is_down_is_transient_and_names_the_fix(cpv_sim, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _endpoint_down(monkeypatch)
    client_id = "11111111-2222-4333-8444-555555555555"

    with pytest.raises(identity.Transient) as caught:
        _probe(cpv_sim, client_id)

    message = str(caught.value)
    assert f"The managed identity {client_id} gave no token for api://AzureADTokenExchange" in message
    assert "could not be reached" in message and "IDENTITY_ENDPOINT" in message
    assert _token_requests(cpv_sim) == []


def test_an_identity_the_host_does_not_hold_names_the_fix(cpv_sim, host_identity) -> None:  # type: ignore[no-untyped-def]
    host_identity()

    with pytest.raises(identity.IdentityMisconfigured) as caught:
        _probe(cpv_sim, "99999999-2222-4333-8444-555555555555")

    assert "assign the user-assigned identity to this" in str(caught.value)


@pytest.mark.django_db
def test_a_renewal_while_the_endpoint_is_down_is_retried_without_an_operator_alert(  # type: ignore[no-untyped-def]
    cpv_sim, settings, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    partner = active_partner(cpv_sim)
    _endpoint_down(monkeypatch)
    settings.CPV_APP = _app(cpv_sim, managed("11111111-2222-4333-8444-555555555555"))

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RenewalRetry) as raised:
        renew_one(partner_id=partner.pk, force=True)

    assert "could not be reached" in str(raised.value)
    assert alerts_open() == []
    assert TokenEvent.objects.filter(partner=partner, kind=TokenEvent.Kind.RETRYING).exists()


@pytest.mark.django_db
def test_a_refused_managed_identity_falls_back_to_the_certificate(  # type: ignore[no-untyped-def]
    cpv_sim, host_identity, settings, django_capture_on_commit_callbacks, admin_with_email
) -> None:
    created = host_identity(subject="00000000-0000-0000-0000-000000000001")
    partner = active_partner(cpv_sim)
    settings.CPV_APP = _app(
        cpv_sim,
        managed(created["client_id"]),
        Credential(
            CERTIFICATE, certificate_path=cpv_sim.env["CPV_CLIENT_CERTIFICATE"], source="CPV_CLIENT_CERTIFICATE"
        ),
    )

    with django_capture_on_commit_callbacks(execute=True):
        renew_one(partner_id=partner.pk, force=True)

    assert TokenEvent.objects.filter(partner=partner, kind__in=TokenEvent.MOVED).exists()
    assert [r["detail"].get("credential") for r in _token_requests(cpv_sim)][-1] == "certificate"
    (alert,) = alerts_open()
    assert alert.condition == OperatorAlert.Condition.CREDENTIAL_FALLBACK
    assert "the managed identity" in alert.message and "AADSTS70021" in alert.message


@pytest.mark.parametrize(
    ("cloud", "audience"),
    [
        (GLOBAL, "api://AzureADTokenExchange"),
        (USGOV, "api://AzureADTokenExchangeUSGov"),
        (CHINA, "api://AzureADTokenExchangeChina"),
    ],
)
def test_the_assertion_asks_for_the_exchange_audience_of_the_apps_cloud(cloud: str, audience: str) -> None:
    credential = app_credentials.msal_credential(managed("11111111-2222-4333-8444-555555555555"), cloud=CLOUDS[cloud])

    assert isinstance(credential, dict)
    assertion = credential["client_assertion"]
    assert assertion.audience == audience
    assert "client_assertion" not in repr(assertion)


@pytest.mark.django_db
def test_a_partner_consents_with_the_managed_identity_as_the_only_credential(  # type: ignore[no-untyped-def]
    cpv_sim, host_identity, settings, consent_run, caplog
) -> None:
    created = host_identity()
    settings.CPV_APP = _app(cpv_sim, managed(created["client_id"]))
    admin = partner_user(cpv_sim, global_admin=True, admin_agent=True, mfa_registered=True)
    invitation = partner_invite(actor=None, name="Contoso", contact_email="admin@contoso.example", send_email=False)
    caplog.set_level(logging.DEBUG)

    run = consent_run(invitation.url, user=admin)

    assert run.callback.status_code == 303
    assert Partner.objects.get(pk=invitation.partner.pk).status == Partner.Status.ACTIVE
    (redemption,) = [r for r in _token_requests(cpv_sim) if r["detail"]["grant_type"] == "authorization_code"]
    assert redemption["detail"]["credential"] == "federated"
    assert cpv_sim.control.find_leaks(caplog.text) == []


@pytest.mark.django_db
def test_a_us_government_partner_consents_and_renews_with_that_clouds_managed_identity(  # type: ignore[no-untyped-def]
    cpv_sim, settings, consent_run, monkeypatch
) -> None:
    usgov_app = cpv_sim.env["CPV_USGOV_CLIENT_ID"]
    created = cpv_sim.control.create_managed_identity(trust=[usgov_app], cloud="usgov")
    monkeypatch.setenv("IDENTITY_ENDPOINT", created["identity_endpoint"])
    monkeypatch.setenv("IDENTITY_HEADER", created["identity_header"])
    settings.CPV_CUSTOM_CLOUDS = sim_clouds(cpv_sim)
    settings.CPV_NATIONAL_APPS = {
        ("usgov", "production"): AppCredential(client_id=usgov_app, credentials=(managed(created["client_id"]),))
    }
    world_partner = cpv_sim.world.partners[1]
    world_partner.cloud = "usgov"
    cpv_sim.world.invalidate()
    invitation = partner_invite(
        actor=None,
        name=world_partner.name,
        contact_email="ops@partner.example",
        cloud="usgov",
        environment="production",
        tenant_id=world_partner.tenant_id,
        send_email=False,
    )
    user = partner_user(cpv_sim, partner=1, global_admin=True, admin_agent=True, mfa_registered=True)

    consent_run(invitation.url, user=user)
    renewed = renew_one(partner_id=invitation.partner.pk, force=True)

    assert renewed.outcome == RenewalOutcome.RENEWED
    (exchange,) = [e for e in cpv_sim.control.log(service="entra") if e["path"] == "/msi/token"]
    assert exchange["cloud"] == "usgov" and exchange["query"]["resource"] == "api://AzureADTokenExchangeUSGov"
    tokens = _token_requests(cpv_sim)
    assert {(t["cloud"], t["detail"]["credential"], t["status"]) for t in tokens} == {("usgov", "federated", 200)}
    assert {t["detail"]["grant_type"] for t in tokens} == {"authorization_code", "refresh_token"}

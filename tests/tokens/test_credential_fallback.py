"""Several credentials of the vendor's app, newest first: a renewal uses the newest Entra accepts, falls back on
AADSTS700027, 7000215 and 7000222 to the next, and tells the operators once."""

from __future__ import annotations

import time

import pytest
from django.core import mail

from cpv.config import CERTIFICATE, SECRET, AppCredential, Credential
from microsoft import identity
from simulator.world import ClientSecret
from tests.app_certificates import app_certificate, register
from tests.factories import active_partner
from tokens.alerts import alerts_open
from tokens.models import OperatorAlert, TokenEvent
from tokens.renewal import renew_one

pytestmark = pytest.mark.django_db
Condition = OperatorAlert.Condition


def _app(sim, *credentials: Credential) -> AppCredential:  # type: ignore[no-untyped-def]
    return AppCredential(client_id=sim.env["CPV_CLIENT_ID"], credentials=credentials)


def _secret(value: str, source: str) -> Credential:
    return Credential(SECRET, secret=value, source=source)


def _renew_with(settings, sim, app: AppCredential, capture):  # type: ignore[no-untyped-def]
    settings.CPV_APP = app
    partner = active_partner(sim)
    with capture(execute=True):
        renew_one(partner_id=partner.pk, force=True)
    return partner


def test_an_unregistered_newest_certificate_falls_back_to_the_secret(  # type: ignore[no-untyped-def]
    cpv_sim, settings, tmp_path, admin_with_email, django_capture_on_commit_callbacks
) -> None:
    path, _ = app_certificate(tmp_path, "never-uploaded")
    app = _app(
        cpv_sim,
        Credential(CERTIFICATE, certificate_path=path, source="CPV_CLIENT_CERTIFICATE"),
        _secret(cpv_sim.env["CPV_CLIENT_SECRET"], "CPV_CLIENT_SECRET"),
    )

    partner = _renew_with(settings, cpv_sim, app, django_capture_on_commit_callbacks)

    assert TokenEvent.objects.filter(partner=partner, kind__in=TokenEvent.MOVED).exists()
    (alert,) = alerts_open()
    assert alert.condition == Condition.CREDENTIAL_FALLBACK
    assert "the certificate" in alert.message and "AADSTS700027" in alert.message
    assert len(mail.outbox) == 1


@pytest.mark.parametrize(
    ("code", "first"),
    [(7000215, "wrong"), (7000222, "expired")],
)
def test_a_refused_newest_secret_falls_back_to_the_next(  # type: ignore[no-untyped-def]
    code, first, cpv_sim, settings, admin_with_email, django_capture_on_commit_callbacks
) -> None:
    if first == "expired":
        expired = cpv_sim.world.cpv_app.secrets[0]
        cpv_sim.world.cpv_app.secrets.append(
            ClientSecret(value="Old8Q~expired-secret-value-0123456789", key_id="k-old", expires_at=time.time() - 60)
        )
        newest, valid = "Old8Q~expired-secret-value-0123456789", expired.value
    else:
        newest, valid = "Not8Q~a-secret-of-this-app-0123456789", cpv_sim.env["CPV_CLIENT_SECRET"]
    app = _app(cpv_sim, _secret(newest, "CPV_CLIENT_SECRET #1"), _secret(valid, "CPV_CLIENT_SECRET #2"))

    partner = _renew_with(settings, cpv_sim, app, django_capture_on_commit_callbacks)

    assert TokenEvent.objects.filter(partner=partner, kind__in=TokenEvent.MOVED).exists()
    (alert,) = alerts_open()
    assert alert.condition == Condition.CREDENTIAL_FALLBACK
    assert f"the client secret (CPV_CLIENT_SECRET #1) (AADSTS{code})" in alert.message
    assert newest not in alert.message and valid not in alert.message


def test_an_expired_certificate_falls_back_to_the_next_certificate(  # type: ignore[no-untyped-def]
    cpv_sim, settings, tmp_path, admin_with_email, django_capture_on_commit_callbacks
) -> None:
    old_path, old = app_certificate(tmp_path, "old", not_after_days=-1, not_before_days=-30)
    new_path, new = app_certificate(tmp_path, "new")
    register(cpv_sim.world.cpv_app, old)
    register(cpv_sim.world.cpv_app, new)
    app = _app(
        cpv_sim,
        Credential(CERTIFICATE, certificate_path=old_path, source="CPV_CLIENT_CERTIFICATE #1"),
        Credential(CERTIFICATE, certificate_path=new_path, source="CPV_CLIENT_CERTIFICATE #2"),
    )

    partner = _renew_with(settings, cpv_sim, app, django_capture_on_commit_callbacks)

    assert TokenEvent.objects.filter(partner=partner, kind__in=TokenEvent.MOVED).exists()
    (alert,) = alerts_open()
    assert "CPV_CLIENT_CERTIFICATE #1" in alert.message and "AADSTS700027" in alert.message


def test_the_accepted_credential_is_tried_first_afterwards_and_the_alert_is_sent_once(  # type: ignore[no-untyped-def]
    cpv_sim, settings, tmp_path, admin_with_email, django_capture_on_commit_callbacks
) -> None:
    path, _ = app_certificate(tmp_path, "never-uploaded")
    app = _app(
        cpv_sim,
        Credential(CERTIFICATE, certificate_path=path),
        _secret(cpv_sim.env["CPV_CLIENT_SECRET"], "CPV_CLIENT_SECRET"),
    )
    partner = _renew_with(settings, cpv_sim, app, django_capture_on_commit_callbacks)
    cpv_sim.control.clear_log()

    with django_capture_on_commit_callbacks(execute=True):
        renew_one(partner_id=partner.pk, force=True)

    token_posts = [e for e in cpv_sim.control.log() if e["path"].endswith("/oauth2/v2.0/token")]
    assert len(token_posts) == 1 and token_posts[0]["status"] == 200
    assert len(mail.outbox) == 1


def test_when_every_credential_is_refused_the_renewal_raises_the_credential_alert(  # type: ignore[no-untyped-def]
    cpv_sim, settings, tmp_path, admin_with_email, django_capture_on_commit_callbacks
) -> None:
    path, _ = app_certificate(tmp_path, "never-uploaded")
    app = _app(cpv_sim, Credential(CERTIFICATE, certificate_path=path), _secret("Not8Q~wrong-0123456789", "S"))

    _renew_with(settings, cpv_sim, app, django_capture_on_commit_callbacks)

    assert Condition.CREDENTIAL_REFUSED in {a.condition for a in alerts_open()}


def test_a_refusal_that_condemns_no_credential_is_not_retried(cpv_sim, tmp_path) -> None:  # type: ignore[no-untyped-def]
    calls = []

    def attempt(credential: Credential) -> str:
        calls.append(credential)
        raise identity.InvalidClient("refused", codes=(700016,))

    app = _app(cpv_sim, _secret("a", "A"), _secret("b", "B"))
    with pytest.raises(identity.InvalidClient):
        identity.with_credentials(app, attempt)
    assert len(calls) == 1


def test_a_certificate_file_is_loaded_once_for_many_renewals_and_again_once_replaced(  # type: ignore[no-untyped-def]
    cpv_sim, settings, tmp_path, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    from cryptography.hazmat.primitives import serialization

    from microsoft import app_credentials

    path, certificate = app_certificate(tmp_path, "loaded-once")
    register(cpv_sim.world.cpv_app, certificate)
    loads: list[bytes] = []
    real_load = serialization.load_pem_private_key

    def counted(data: bytes, *args, **kwargs):  # type: ignore[no-untyped-def]
        loads.append(data)
        return real_load(data, *args, **kwargs)

    monkeypatch.setattr(app_credentials.serialization, "load_pem_private_key", counted)
    app = _app(cpv_sim, Credential(CERTIFICATE, certificate_path=path, source="CPV_CLIENT_CERTIFICATE"))

    partner = _renew_with(settings, cpv_sim, app, django_capture_on_commit_callbacks)
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            renew_one(partner_id=partner.pk, force=True)
    assert TokenEvent.objects.filter(partner=partner, kind__in=TokenEvent.MOVED).count() == 3
    assert len(loads) == 1
    # msal signs with the key object the product hands it, never a PEM string it would parse again.
    assert not isinstance(app_credentials.msal_credential(app.credentials[0])["private_key"], str)  # type: ignore[index]

    # A new certificate written over the file (a rotation) is loaded at the next use.
    _, replacement = app_certificate(tmp_path, "loaded-once")
    register(cpv_sim.world.cpv_app, replacement)
    with django_capture_on_commit_callbacks(execute=True):
        renew_one(partner_id=partner.pk, force=True)
    assert len(loads) == 2 and TokenEvent.objects.filter(partner=partner, kind__in=TokenEvent.MOVED).count() == 4

"""Consent links: one live link per partner. A newer link replaces the earlier ones, a consent uses its link up,
and a failed attempt is tried again with the link it came from (no new link, so the expiry stands)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from consent.models import ConsentFlow
from consent.services import partner_invite
from partners.invitations import partner_reconsent_link
from partners.models import Partner
from tests.simulated import partner_user

pytestmark = pytest.mark.django_db


def path_of(url: str) -> str:
    return url.removeprefix("http://127.0.0.1:8000")


@pytest.fixture
def invitation(cpv_sim):  # type: ignore[no-untyped-def]
    return partner_invite(actor=None, name="Contoso Partners", contact_email="admin@contoso.example", send_email=False)


@pytest.fixture
def admin(cpv_sim) -> Any:  # type: ignore[no-untyped-def]
    return partner_user(cpv_sim, global_admin=True, admin_agent=True, mfa_registered=True)


def test_a_newer_link_replaces_every_earlier_one(client, invitation) -> None:  # type: ignore[no-untyped-def]
    first = partner_reconsent_link(actor=None, partner=invitation.partner)
    second = partner_reconsent_link(actor=None, partner=invitation.partner)

    assert client.get(path_of(invitation.url)).status_code == 410
    assert client.get(path_of(first)).status_code == 410
    assert client.post(path_of(first) + "start").status_code == 410
    assert client.get(path_of(second)).status_code == 200


def test_an_unpinned_link_is_used_up_by_the_consent_that_binds_a_tenant(invitation, consent_run, admin, client) -> None:  # type: ignore[no-untyped-def]
    assert Partner.objects.get(pk=invitation.partner.pk).tenant_id is None

    run = consent_run(invitation.url, user=admin)

    assert run.client.get(run.callback["Location"]).status_code == 200
    assert Partner.objects.get(pk=invitation.partner.pk).status == Partner.Status.ACTIVE
    # Whoever holds the link now (a forwarded email, a browser history) cannot consent with it.
    assert client.get(path_of(invitation.url)).status_code == 410
    assert client.post(path_of(invitation.url) + "start").status_code == 410


def test_a_failed_attempt_is_tried_again_with_the_same_link(cpv_sim, invitation, consent_run) -> None:  # type: ignore[no-untyped-def]
    run = consent_run(invitation.url, user=partner_user(cpv_sim, global_admin=True, admin_agent=False))
    failed = ConsentFlow.objects.get(partner=invitation.partner)
    generation = Partner.objects.get(pk=invitation.partner.pk).link_generation
    result = run.client.get(run.callback["Location"])
    retry_path = f"/consent/result/{failed.code}/retry"
    assert retry_path.encode() in result.content
    assert failed.link_expires_at is not None and failed.link_expires_at > timezone.now() + timedelta(days=13)

    again = run.client.post(retry_path)

    assert again.status_code == 303 and again["Location"].startswith(cpv_sim.authority_host)
    second = ConsentFlow.objects.filter(partner=invitation.partner).latest("created_at")
    assert second.pk != failed.pk and second.link_expires_at == failed.link_expires_at
    assert Partner.objects.get(pk=invitation.partner.pk).link_generation == generation
    # Another browser cannot use the attempt's retry.
    from django.test import Client

    assert Client().post(retry_path).status_code == 404


def test_a_retry_is_refused_once_the_link_was_replaced_or_expired(cpv_sim, invitation, consent_run) -> None:  # type: ignore[no-untyped-def]
    run = consent_run(invitation.url, user=partner_user(cpv_sim, global_admin=True, admin_agent=False))
    failed = ConsentFlow.objects.get(partner=invitation.partner)
    retry_path = f"/consent/result/{failed.code}/retry"

    ConsentFlow.objects.filter(pk=failed.pk).update(link_expires_at=timezone.now() - timedelta(seconds=1))
    expired = run.client.post(retry_path)
    ConsentFlow.objects.filter(pk=failed.pk).update(link_expires_at=timezone.now() + timedelta(days=1))
    partner_reconsent_link(actor=None, partner=invitation.partner)
    replaced = run.client.post(retry_path)

    assert expired.status_code == replaced.status_code == 410
    assert b"/retry" not in run.client.get(run.callback["Location"]).content
    assert ConsentFlow.objects.filter(partner=invitation.partner).count() == 1


def test_a_consent_started_from_a_link_that_staff_replaced_meanwhile_is_refused_at_the_callback(  # type: ignore[no-untyped-def]
    cpv_sim, invitation, consent_run, admin
) -> None:
    run = consent_run(invitation.url, user=admin, post=False)
    newer = partner_reconsent_link(actor=None, partner=invitation.partner)  # staff send another link meanwhile

    run.post_callback()
    page = run.client.get(run.callback["Location"])

    flow = ConsentFlow.objects.get(partner=invitation.partner)
    partner = Partner.objects.get(pk=invitation.partner.pk)
    assert flow.status == ConsentFlow.Status.FAILED and flow.failure_reason == "expired_link"
    assert partner.status == Partner.Status.INVITED and partner.tenant_id is None
    # The code was never redeemed: no token exists for the replaced link.
    assert not cpv_sim.control.log(service="entra", path="/token$")
    # The page says what works next: the newest link, or the portal.
    assert b"Open the newest link" in page.content and b'id="portal-link"' in page.content
    assert b'id="retry"' not in page.content
    # and the newer link does work
    assert consent_run(newer, user=admin).callback.status_code == 303
    assert Partner.objects.get(pk=invitation.partner.pk).status == Partner.Status.ACTIVE
    assert cpv_sim.control.log(service="entra", path="/token$")


def test_a_link_replaced_while_the_token_is_being_stored_is_refused_under_the_partners_lock(  # type: ignore[no-untyped-def]
    cpv_sim, invitation, consent_run, admin, monkeypatch
) -> None:
    from consent import services

    real_check = services._partner_center_check

    def then_staff_replace_the_link(**kwargs: Any) -> Any:
        answer = real_check(**kwargs)
        partner_reconsent_link(actor=None, partner=invitation.partner)
        return answer

    monkeypatch.setattr(services, "_partner_center_check", then_staff_replace_the_link)

    run = consent_run(invitation.url, user=admin)

    flow = ConsentFlow.objects.get(partner=invitation.partner)
    assert run.callback.status_code == 303
    assert flow.status == ConsentFlow.Status.FAILED and flow.failure_reason == "expired_link"
    assert Partner.objects.get(pk=invitation.partner.pk).status == Partner.Status.INVITED

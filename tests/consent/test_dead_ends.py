"""Every dead end of the consent pages offers the one next step that works: an already-used link says the consent
is done and links to the portal; an expired or replaced link emails a fresh one to the partner's contact (never
to the browser); a sign-in that took too long can be tried again; a switched-off partner names the vendor."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from consent.models import ConsentFlow
from consent.services import partner_invite
from cpv.branding import Vendor
from partners.invitations import invitation_token, partner_reconsent_link
from partners.models import AuditEvent, Partner
from tests.simulated import partner_user

pytestmark = pytest.mark.django_db

BASE = "http://127.0.0.1:8000"


@pytest.fixture
def invitation(cpv_sim, settings):  # type: ignore[no-untyped-def]
    settings.CPV_VENDOR = Vendor(name="Fabrikam Tools", support_email="help@fabrikam.example")
    return partner_invite(actor=None, name="Contoso Partners", contact_email="admin@contoso.example", send_email=False)


@pytest.fixture
def admin(cpv_sim) -> Any:  # type: ignore[no-untyped-def]
    return partner_user(cpv_sim, global_admin=True, admin_agent=True, mfa_registered=True)


def path(url: str) -> str:
    return url.removeprefix(BASE)


def test_a_link_used_for_a_consent_says_already_done_and_links_to_the_portal(invitation, consent_run, admin) -> None:  # type: ignore[no-untyped-def]
    run = consent_run(invitation.url, user=admin)
    done = run.client.get(run.callback["Location"]).content.decode()

    again = Client().get(path(invitation.url))

    assert 'id="to-portal"' in done and 'href="/portal/"' in done  # the result page leads back to the portal
    page = again.content.decode()
    assert again.status_code == 410 and "This consent is already done" in page
    assert 'href="/portal/"' in page and 'id="to-portal"' in page
    assert "has expired" not in page and 'id="fresh-link"' not in page


def test_a_replaced_link_emails_a_fresh_one_to_the_contact_and_never_shows_it(  # type: ignore[no-untyped-def]
    invitation, mailoutbox, django_capture_on_commit_callbacks
) -> None:
    partner_reconsent_link(actor=None, partner=invitation.partner)  # replaces the invitation's link
    browser = Client()

    page = browser.get(path(invitation.url))
    form = page.content.decode()
    token = re.search(r'name="token" value="([^"]+)"', form)
    assert page.status_code == 410 and "replaced by a newer one" in form and 'id="fresh-link"' in form and token
    with django_capture_on_commit_callbacks(execute=True):
        sent = browser.post("/consent/fresh-link", {"token": token.group(1)})

    assert sent.status_code == 200 and "A new link is on its way" in sent.content.decode()
    assert "a•••@contoso.example" in sent.content.decode() and "/consent/i/" not in sent.content.decode()
    assert [m.to for m in mail.outbox] == [["admin@contoso.example"]]
    fresh = re.search(r"http://\S+/consent/i/\S+", mail.outbox[0].body)
    assert fresh and browser.get(path(fresh.group(0))).status_code == 200
    assert AuditEvent.objects.filter(action="partner.fresh_link_sent", partner=invitation.partner).count() == 1
    # Asking again at once sends nothing more (every new link would replace the one just sent).
    browser.post("/consent/fresh-link", {"token": token.group(1)})
    assert len(mail.outbox) == 1


def test_an_expired_link_offers_a_fresh_one(  # type: ignore[no-untyped-def]
    invitation, settings, monkeypatch, mailoutbox, django_capture_on_commit_callbacks
) -> None:
    settings.CPV_INVITATION_MAX_AGE_DAYS = 1
    two_days_ago = time.time() - 2 * 86400
    with monkeypatch.context() as patched:
        patched.setattr("django.core.signing.time.time", lambda: two_days_ago)
        stale = invitation_token(partner=invitation.partner, purpose="invite")
    browser = Client()

    page = browser.get(f"/consent/i/{stale}/").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        sent = browser.post("/consent/fresh-link", {"token": stale})

    assert "This link has expired" in page and 'id="fresh-link"' in page
    assert sent.status_code == 200 and len(mail.outbox) == 1


def test_a_tampered_link_gets_no_fresh_link_but_the_vendors_address(invitation, mailoutbox) -> None:  # type: ignore[no-untyped-def]
    token = invitation.url.rstrip("/").rsplit("/", 1)[1]

    page = Client().get(f"/consent/i/{token[:-2]}xx/").content.decode()
    asked = Client().post("/consent/fresh-link", {"token": token[:-2] + "xx"})

    assert "This link does not work" in page and 'id="fresh-link"' not in page
    assert 'id="support-next"' in page and "help@fabrikam.example" in page
    assert asked.status_code == 404 and not mail.outbox


def test_a_switched_off_partners_link_names_the_vendor(invitation, mailoutbox) -> None:  # type: ignore[no-untyped-def]
    Partner.objects.filter(pk=invitation.partner.pk).update(status=Partner.Status.DEACTIVATED)
    token = invitation.url.rstrip("/").rsplit("/", 1)[1]

    page = Client().get(path(invitation.url)).content.decode()
    asked = Client().post("/consent/fresh-link", {"token": token})

    assert "not taking consent" in page and "help@fabrikam.example" in page and 'id="fresh-link"' not in page
    assert asked.status_code == 404 and not mail.outbox


def test_a_sign_in_that_took_too_long_can_be_tried_again(invitation, consent_run, admin) -> None:  # type: ignore[no-untyped-def]
    run = consent_run(invitation.url, user=admin, post=False)
    ConsentFlow.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    late = run.post_callback()
    page = run.client.get(late["Location"])

    assert late.status_code == 303 and late["Location"].startswith("/consent/result/")
    assert "The sign-in took too long" in page.content.decode() and 'id="retry"' in page.content.decode()
    retried = run.client.post(re.search(r'action="([^"]+/retry)"', page.content.decode()).group(1))  # type: ignore[union-attr]
    assert retried.status_code == 303 and "/authorize" in retried["Location"]


def test_a_failed_attempt_whose_link_was_replaced_offers_a_fresh_link(  # type: ignore[no-untyped-def]
    invitation, consent_run, admin, mailoutbox, django_capture_on_commit_callbacks
) -> None:
    run = consent_run(invitation.url, user=admin, action="cancel")
    partner_reconsent_link(actor=None, partner=invitation.partner)

    page = run.client.get(run.callback["Location"]).content.decode()
    flow = re.search(r'name="flow" value="([^"]+)"', page)
    stranger = Client().post("/consent/fresh-link", {"flow": flow.group(1) if flow else ""})
    with django_capture_on_commit_callbacks(execute=True):
        sent = run.client.post("/consent/fresh-link", {"flow": flow.group(1) if flow else ""})

    assert 'id="retry"' not in page and 'id="fresh-link"' in page and flow
    assert stranger.status_code == 404  # another browser cannot ask for this attempt's partner
    assert sent.status_code == 200 and [m.to for m in mail.outbox] == [["admin@contoso.example"]]


def test_a_repeated_answer_from_microsoft_is_refused_with_a_way_to_the_attempts_result(  # type: ignore[no-untyped-def]
    invitation, consent_run, admin
) -> None:
    run = consent_run(invitation.url, user=admin)
    result = run.callback["Location"]

    again = run.post_callback()

    assert again.status_code == 400 and f'href="{result}"' in again.content.decode()
    assert "Consent recorded" in run.client.get(result).content.decode()


def test_an_invitation_deleted_during_the_sign_in_keeps_no_consent(invitation, consent_run, admin) -> None:  # type: ignore[no-untyped-def]
    from partners.services import partner_delete
    from tokens.models import PartnerToken

    run = consent_run(invitation.url, user=admin, post=False)
    partner_delete(actor=None, partner=invitation.partner, reason="duplicate")

    run.post_callback()
    page = run.client.get(run.callback["Location"]).content.decode()

    partner = Partner.objects.get(pk=invitation.partner.pk)
    assert partner.status == Partner.Status.INVITED and partner.deleted_at is not None
    pointer = PartnerToken.objects.filter(partner=partner).first()
    assert pointer is None or not pointer.current_version
    assert "not taking consent" in page and 'id="fresh-link"' not in page

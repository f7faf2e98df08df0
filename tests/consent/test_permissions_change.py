"""When the product's required permissions change, active partners stay active (their token works for what they
granted), each is asked once, by one email and on the portal, to consent again, the re-consent asks Microsoft for
the consent page again (`prompt=consent`), and until then a feature that needs the new permission says so."""

from __future__ import annotations

import re
import uuid

import pytest
from django.core import mail
from django.test import Client

from consent.services import partner_invite
from microsoft import permissions
from microsoft.permissions import RequiredPermission
from partners.models import AuditEvent, Partner
from partners.permissions import partner_permission_granted, partner_permissions_missing, permissions_reconsent_ask
from simulator.world import GRAPH_RESOURCE
from tests.factories import active_partner_with_data
from tests.simulated import partner_user

pytestmark = pytest.mark.django_db
NEW = RequiredPermission(permissions.GRAPH, "Application.Read.All", admin_only=True, used_for="reading the app")


@pytest.fixture
def consented(cpv_sim, consent_run):  # type: ignore[no-untyped-def]
    invitation = partner_invite(actor=None, name="Contoso Partners", contact_email="admin@contoso.example",
                                send_email=False)  # fmt: skip
    admin = partner_user(cpv_sim, global_admin=True, admin_agent=True, mfa_registered=True)
    run = consent_run(invitation.url, user=admin)
    assert b"Consent recorded" in run.client.get(run.callback["Location"]).content
    partner = Partner.objects.get(pk=invitation.partner.pk)
    assert partner_permissions_missing(partner) == []
    return partner, admin


@pytest.fixture
def list_grows(monkeypatch):  # type: ignore[no-untyped-def]
    """A new release requires one more permission."""
    monkeypatch.setattr(permissions, "REQUIRED_PERMISSIONS", (*permissions.REQUIRED_PERMISSIONS, NEW))


def test_a_grown_list_asks_each_active_partner_once_and_keeps_it_active(consented, list_grows) -> None:  # type: ignore[no-untyped-def]
    partner, _ = consented
    mail.outbox.clear()

    asked = permissions_reconsent_ask(), permissions_reconsent_ask()

    assert asked == (1, 0)
    partner.refresh_from_db()
    assert partner.status == Partner.Status.ACTIVE
    assert partner.permissions_asked_fingerprint == permissions.fingerprint()
    assert [p.name for p in partner_permissions_missing(partner)] == ["Application.Read.All"]
    assert not partner_permission_granted(partner, NEW)
    assert AuditEvent.objects.filter(action="partner.permissions_reconsent_asked", partner=partner).count() == 1


def test_the_email_link_consents_again_with_the_consent_page_and_grants_the_new_permission(  # type: ignore[no-untyped-def]
    cpv_sim, consented, list_grows, consent_run, django_capture_on_commit_callbacks
) -> None:
    partner, admin = consented
    registered = cpv_sim.control.world()["cpv_app"]["delegated_permissions"]
    cpv_sim.control.update_app(
        cpv_sim.env["CPV_CLIENT_ID"],
        delegated_permissions={**registered, GRAPH_RESOURCE: [*registered[GRAPH_RESOURCE], NEW.name]},
    )
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        permissions_reconsent_ask()
    (email,) = mail.outbox
    assert "Application.Read.All" in email.body and "keeps working" in email.body
    link = re.search(r"http://127\.0\.0\.1:8000\S+", email.body)
    assert link

    run = consent_run(link.group(0), user=admin)

    # Without prompt=consent, Microsoft would show nothing new: `.default` with a grant in place consents nothing.
    assert "prompt=consent" in run.auth_uri
    assert b"Consent recorded" in run.client.get(run.callback["Location"]).content
    partner.refresh_from_db()
    assert partner.permissions_fingerprint == permissions.fingerprint()
    assert NEW.name in partner.permissions_granted["graph"]
    assert partner_permissions_missing(partner) == []
    assert permissions_reconsent_ask() == 0


def test_a_later_consent_to_the_same_list_does_not_ask_for_the_consent_page_again(  # type: ignore[no-untyped-def]
    cpv_sim, consented, consent_run
) -> None:
    from partners.invitations import partner_reconsent_link

    partner, admin = consented

    run = consent_run(partner_reconsent_link(actor=None, partner=partner), user=admin)

    assert "prompt=consent" not in run.auth_uri
    assert b"Consent recorded" in run.client.get(run.callback["Location"]).content


def test_the_partner_page_and_partners_json_say_what_is_missing(consented, list_grows, staff_client, capsys) -> None:  # type: ignore[no-untyped-def]
    import json

    from django.core.management import call_command

    partner, _ = consented
    permissions_reconsent_ask()

    page = staff_client.get(f"/partners/{partner.code}/").content.decode()
    call_command("partners", "--json")

    assert 'id="permissions-missing"' in page and "Application.Read.All" in page and "Asked to consent again" in page
    (row,) = json.loads(capsys.readouterr().out)
    assert row["permissions_missing"] == ["Microsoft Graph Application.Read.All"]


@pytest.fixture
def portal_sim(sim_settings):  # type: ignore[no-untyped-def]
    sim_settings.world.add_redirect_uris(["http://127.0.0.1:8000/portal/callback"])
    return sim_settings


def test_the_portal_asks_the_partner_to_consent_again(portal_sim) -> None:  # type: ignore[no-untyped-def]
    from tests.simulated import sign_in

    world = portal_sim.world.partners[0]
    partner = active_partner_with_data("Contoso Partners", tenant=uuid.UUID(str(world.tenant_id)))
    Partner.objects.filter(pk=partner.pk).update(
        permissions_fingerprint="0" * 16, permissions_granted={"partner_center": ["user_impersonation"]}
    )
    admin = partner_user(portal_sim, global_admin=True)
    client = Client()
    started = client.post("/portal/sign-in", {"cloud": "global"})
    _, fields = sign_in(started["Location"], user_oid=admin.oid)
    welcome = client.post("/portal/callback", fields)
    client.get(welcome["Location"])

    page = client.get("/portal/").content.decode()

    assert 'id="permissions-needed"' in page
    assert "RoleManagement.Read.Directory" in page and "keeps working" in page


def test_a_consent_that_lacked_a_permission_asks_for_the_consent_page_again(  # type: ignore[no-untyped-def]
    cpv_sim, consented, consent_run
) -> None:
    """The fingerprint matches, but the registration lacked a permission when the partner consented: only the consent
    page grants it once the vendor added it (`.default` with a grant in place consents nothing new)."""
    from partners.invitations import partner_reconsent_link

    partner, admin = consented
    Partner.objects.filter(pk=partner.pk).update(
        permissions_granted={"partner_center": ["user_impersonation"], "graph": ["User.Read"]}
    )
    partner.refresh_from_db()

    run = consent_run(partner_reconsent_link(actor=None, partner=partner), user=admin)

    assert "prompt=consent" in run.auth_uri
    partner.refresh_from_db()
    assert partner_permissions_missing(partner) == []


def test_a_partner_that_never_consented_lacks_nothing_yet(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    invited = partner_invite(actor=None, name="Not yet", contact_email="a@n.example", send_email=False).partner

    assert partner_permissions_missing(invited) == []


def test_a_partner_needing_re_consent_after_the_list_grew_gets_the_consent_page(  # type: ignore[no-untyped-def]
    cpv_sim, consented, list_grows, consent_run
) -> None:
    """Not active (its token died), and its consent is to the older list: the re-consent must show the new one."""
    from partners.invitations import partner_reconsent_link

    partner, admin = consented
    Partner.objects.filter(pk=partner.pk).update(status=Partner.Status.RECONSENT_NEEDED)
    partner.refresh_from_db()

    run = consent_run(partner_reconsent_link(actor=None, partner=partner), user=admin)

    assert "prompt=consent" in run.auth_uri

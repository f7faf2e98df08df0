"""The partner portal's sign-in against the simulator with the real msal client: OpenID Connect with `openid
profile` only, the same id_token checks as the consent, a single-use state bound to the browser."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from consent.portal import SESSION_KEY
from partners.models import AuditEvent, Partner
from tests.factories import active_partner_with_data
from tests.simulated import partner_user, sign_in

pytestmark = pytest.mark.django_db
BASE_URL = "http://127.0.0.1:8000"


@pytest.fixture
def portal_sim(sim_settings):  # type: ignore[no-untyped-def]
    sim_settings.world.add_redirect_uris([f"{BASE_URL}/portal/callback"])
    return sim_settings


def start(client: Client) -> str:
    response = client.post("/portal/sign-in", {"cloud": "global"})
    assert response.status_code == 303, response.content
    return str(response["Location"])


def finish(client: Client, auth_uri: str, user_oid: str, action: str = "accept") -> Client:
    target, fields = sign_in(auth_uri, user_oid=user_oid, action=action)
    assert target == f"{BASE_URL}/portal/callback"
    callback = client.post("/portal/callback", fields)
    return callback


def test_a_partner_admin_signs_in_with_microsoft_and_sees_their_organisation(portal_sim) -> None:  # type: ignore[no-untyped-def]
    world = portal_sim.world.partners[0]
    partner = active_partner_with_data("Contoso Partners", tenant=uuid.UUID(str(world.tenant_id)))
    other = active_partner_with_data("Other Partner")
    admin = partner_user(portal_sim, global_admin=True)
    client = Client()

    auth_uri = start(client)
    query = parse_qs(urlsplit(auth_uri).query)
    assert query["scope"] == ["openid profile"]
    assert query["code_challenge_method"] == ["S256"] and query["response_mode"] == ["form_post"]
    callback = finish(client, auth_uri, admin.oid)
    assert callback.status_code == 303 and callback["Location"].startswith("/portal/welcome/")
    welcome = client.get(callback["Location"])
    assert welcome.status_code == 303 and welcome["Location"] == "/portal/"
    page = client.get("/portal/").content.decode()

    assert "Contoso Partners" in page and "Other Partner" not in page
    assert "Your consent works" in page and "Renew our consent" in page
    assert client.session[SESSION_KEY]["tenant_id"] == str(partner.tenant_id)
    assert client.session[SESSION_KEY]["user_oid"] == admin.oid.lower()
    # The one-time hand-over cannot be replayed, not even by the same browser.
    assert client.get(callback["Location"]).status_code == 400
    assert other.pk != partner.pk


def test_the_same_answer_cannot_be_used_twice_or_from_another_browser(portal_sim) -> None:  # type: ignore[no-untyped-def]
    world = portal_sim.world.partners[0]
    active_partner_with_data("Contoso Partners", tenant=uuid.UUID(str(world.tenant_id)))
    admin = partner_user(portal_sim, global_admin=True)
    client = Client()
    auth_uri = start(client)
    _target, fields = sign_in(auth_uri, user_oid=admin.oid)

    stranger = Client().post("/portal/callback", fields)
    first = client.post("/portal/callback", fields)
    second = client.post("/portal/callback", fields)

    assert stranger.status_code == 400 and b"not started in this browser" in stranger.content
    assert first.status_code == 303
    assert second.status_code == 400


def test_a_user_of_a_tenant_that_is_no_partner_sees_a_clear_page(portal_sim) -> None:  # type: ignore[no-untyped-def]
    active_partner_with_data("Somebody Else")
    user = partner_user(portal_sim, partner=1, global_admin=True)
    client = Client()

    callback = finish(client, start(client), user.oid)
    client.get(callback["Location"])
    page = client.get("/portal/")

    assert page.status_code == 200
    assert b"not one of our partners yet" in page.content and b"Somebody Else" not in page.content


def test_cancelling_the_sign_in_stores_nothing(portal_sim) -> None:  # type: ignore[no-untyped-def]
    admin = partner_user(portal_sim, global_admin=True)
    client = Client()

    callback = finish(client, start(client), admin.oid, action="cancel")

    assert callback.status_code == 400 and b"cancelled" in callback.content
    assert SESSION_KEY not in client.session


def test_renewing_from_the_portal_leads_to_the_consent_page_and_is_audited(portal_sim) -> None:  # type: ignore[no-untyped-def]
    world = portal_sim.world.partners[0]
    partner = active_partner_with_data("Contoso Partners", tenant=uuid.UUID(str(world.tenant_id)))
    admin = partner_user(portal_sim, global_admin=True)
    client = Client()
    client.get(finish(client, start(client), admin.oid)["Location"])

    renew = client.post("/portal/renew")
    landing = client.get(renew["Location"])

    assert renew.status_code == 303 and renew["Location"].startswith("/consent/i/")
    assert landing.status_code == 200 and b"Contoso Partners" in landing.content
    event = AuditEvent.objects.get(action="portal.reconsent_started")
    assert event.partner == partner and event.detail["user_oid"] == admin.oid.lower()
    assert Partner.objects.get(pk=partner.pk).status == Partner.Status.ACTIVE


def test_signing_out_ends_the_portal_session(portal_sim) -> None:  # type: ignore[no-untyped-def]
    world = portal_sim.world.partners[0]
    active_partner_with_data("Contoso Partners", tenant=uuid.UUID(str(world.tenant_id)))
    admin = partner_user(portal_sim, global_admin=True)
    client = Client()
    client.get(finish(client, start(client), admin.oid)["Location"])

    client.post("/portal/sign-out")

    assert b"Sign in with Microsoft" in client.get("/portal/").content


def test_a_hand_over_written_into_the_cache_by_someone_else_signs_nobody_in(portal_sim) -> None:  # type: ignore[no-untyped-def]
    # Write access to the cache (Redis) is not a portal session: only entries sealed under the site's key count.
    from django.core.cache import cache

    from consent import oauth_state

    partner = active_partner_with_data("Contoso Partners")
    client = Client()
    client.cookies["__Host-cpv-portal"] = "attacker-browser"
    forged = {
        "browser": oauth_state.digest("attacker-browser"),
        "identity": {"tenant_id": str(partner.tenant_id), "user_oid": str(uuid.uuid4()), "global_admin": True},
    }
    cache.set(f"portal-handoff:{oauth_state.digest('forged-handoff')}", forged, timeout=60)

    response = client.get("/portal/welcome/forged-handoff")

    assert response.status_code == 400
    assert SESSION_KEY not in client.session
    assert client.get("/portal/").status_code != 200 or partner.name not in client.get("/portal/").content.decode()


# --- current evidence: the Global Administrator role and MFA, on every sign-in ---------------------------------------


def portal_sign_in(client: Client, user_oid: str) -> None:
    welcome = client.get(finish(client, start(client), user_oid)["Location"])
    assert welcome.status_code == 303, welcome.content


def test_having_consented_once_is_not_enough_without_the_role_today(portal_sim) -> None:  # type: ignore[no-untyped-def]
    """The person who consented a year ago and has since lost the Global Administrator role is refused."""
    from tests.factories import portal_client

    partner = active_partner_with_data("Contoso Partners")
    consenter = str(partner.token.consented_by_oid or uuid.uuid4())
    type(partner.token).objects.filter(pk=partner.token.pk).update(consented_by_oid=consenter)

    page = portal_client(partner, user_oid=consenter, global_admin=False).get("/portal/")
    renew = portal_client(partner, user_oid=consenter, global_admin=False).post("/portal/renew")

    assert page.status_code == 403 and b"Global Administrator role" in page.content
    assert b"not enough" in page.content and b"customer 0000" not in page.content
    assert renew.status_code == 403 and not AuditEvent.objects.filter(action="portal.reconsent_started").exists()


def test_a_global_administrators_sign_in_without_mfa_is_refused(portal_sim) -> None:  # type: ignore[no-untyped-def]
    world = portal_sim.world.partners[0]
    active_partner_with_data("Contoso Partners", tenant=uuid.UUID(str(world.tenant_id)))
    no_mfa = partner_user(portal_sim, global_admin=True, mfa_registered=False)
    with_mfa = partner_user(portal_sim, global_admin=True, mfa_registered=True)
    refused_client, admitted_client = Client(), Client()

    portal_sign_in(refused_client, no_mfa.oid)
    portal_sign_in(admitted_client, with_mfa.oid)
    refused = refused_client.get("/portal/")

    assert refused.status_code == 403 and b"Multi-factor authentication is required" in refused.content
    assert refused_client.session[SESSION_KEY]["mfa"] is False
    assert admitted_client.get("/portal/").status_code == 200


def test_a_portal_session_from_before_mfa_was_asked_must_sign_in_again(portal_sim) -> None:  # type: ignore[no-untyped-def]
    from tests.factories import portal_client

    partner = active_partner_with_data("Contoso Partners")
    client = portal_client(partner)
    session = client.session
    session[SESSION_KEY] = {k: v for k, v in session[SESSION_KEY].items() if k != "mfa"}
    session.save()

    assert client.get("/portal/").status_code == 403


def test_without_wids_graph_is_asked_and_a_role_it_cannot_name_is_not_taken_for_one(portal_sim, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The consent's second reading: the user's directory roles in Graph. The sign-in's own token (openid profile)
    may not name them: unknown is refused, never admitted."""
    from consent import microsoft_sign_in

    monkeypatch.setattr(microsoft_sign_in.identity, "claims_global_admin", lambda claims: None)
    world = portal_sim.world.partners[0]
    active_partner_with_data("Contoso Partners", tenant=uuid.UUID(str(world.tenant_id)))
    admin = partner_user(portal_sim, global_admin=True, mfa_registered=True)
    member = partner_user(portal_sim, global_admin=False, mfa_registered=True)
    admin_client, member_client = Client(), Client()

    portal_sign_in(admin_client, admin.oid)
    portal_sign_in(member_client, member.oid)

    assert portal_sim.control.log(service="graph", path="transitiveMemberOf")
    assert admin_client.session[SESSION_KEY]["global_admin"] is None
    assert member_client.session[SESSION_KEY]["global_admin"] is False
    assert admin_client.get("/portal/").status_code == 403
    assert member_client.get("/portal/").status_code == 403

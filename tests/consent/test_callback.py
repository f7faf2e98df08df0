"""Every branch of the consent callback, with the real msal client against the simulator."""

from __future__ import annotations

import dataclasses
import hashlib
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from consent import services
from consent.models import ConsentFlow, ConsentFlowEvent
from consent.sealing import unseal
from consent.services import SEAL_PURPOSE, consent_flows_expire, partner_invite
from customers import tasks as customer_tasks
from partners.invitations import partner_reconsent_link
from partners.models import AuditEvent, Partner
from tests.simulated import partner_user
from tokens.models import PartnerToken, VaultSecretVersion
from tokens.vault import get_vault, secret_name_for

pytestmark = pytest.mark.django_db

# A consent's timeline, step by step.
CONSENTED_TIMELINE = ["created", "redirected", "code_received", "token_acquired", "verified", "vaulted"]


@pytest.fixture
def admin(cpv_sim) -> Any:  # type: ignore[no-untyped-def]
    return partner_user(cpv_sim, global_admin=True, admin_agent=True, mfa_registered=True)


@pytest.fixture
def invitation(cpv_sim):  # type: ignore[no-untyped-def]
    return partner_invite(actor=None, name="Contoso Partners", contact_email="admin@contoso.example", send_email=False)


def flow_of(partner: Partner) -> ConsentFlow:
    return ConsentFlow.objects.filter(partner=partner).latest("created_at")


def assert_no_token_kept(partner: Partner) -> None:
    assert not PartnerToken.objects.filter(partner=partner).exclude(current_version="").exists()
    assert not VaultSecretVersion.objects.exists()


def test_an_invited_admin_consents_and_the_partner_becomes_active(cpv_sim, invitation, consent_run, admin) -> None:  # type: ignore[no-untyped-def]
    run = consent_run(invitation.url, user=admin)

    assert run.callback.status_code == 303
    assert run.callback["Referrer-Policy"] == "no-referrer"
    result = run.client.get(run.callback["Location"])
    assert result.status_code == 200
    assert b"Consent recorded" in result.content
    assert result["Referrer-Policy"] == "no-referrer"

    partner = Partner.objects.get(pk=invitation.partner.pk)
    world_partner = cpv_sim.world.partners[0]
    assert partner.status == Partner.Status.ACTIVE
    assert str(partner.tenant_id) == str(world_partner.tenant_id)
    flow = flow_of(partner)
    assert flow.status == ConsentFlow.Status.VAULTED
    assert flow.sealed_flow is None
    assert [e.status for e in flow.events.all()] == CONSENTED_TIMELINE
    # The token is in the vault, and the database only knows where.
    pointer = PartnerToken.objects.get(partner=partner)
    assert pointer.secret_name == secret_name_for(partner.code)
    secret = get_vault().read(name=pointer.secret_name)
    assert secret.version == pointer.current_version
    assert cpv_sim.control.refresh_token_info(secret.value.reveal()) is not None
    assert pointer.fingerprint and secret.value.reveal() not in pointer.fingerprint
    # Partner Center proved the Admin Agent role with the new token.
    profile_calls = [e for e in cpv_sim.control.log(service="partner_center") if "profiles/organization" in e["path"]]
    assert [e["status"] for e in profile_calls] == [200]
    assert AuditEvent.objects.filter(partner=partner, action="partner.consented").count() == 1


def test_the_sign_in_request_is_what_rfc_9700_asks(cpv_sim, invitation, consent_run, admin) -> None:  # type: ignore[no-untyped-def]
    run = consent_run(invitation.url, user=admin, post=False)

    query = run.auth_uri.split("?", 1)[1]
    assert "response_mode=form_post" in query
    assert "code_challenge_method=S256" in query
    assert "prompt=consent" in query
    assert "offline_access" in query and "%2F.default" in query and "user_impersonation" not in query
    assert "redirect_uri=http%3A%2F%2F127.0.0.1%3A8000%2Fconsent%2Fcallback" in query
    cookie = run.start_response.cookies["__Host-cpv-consent"]
    assert cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "None" and cookie["path"] == "/"
    flow = flow_of(invitation.partner)
    sealed = bytes(flow.sealed_flow)
    assert b"code_verifier" not in sealed
    assert unseal(sealed, purpose=SEAL_PURPOSE, bound_to=str(flow.code))["flow"]["code_verifier"]


def test_cancel_on_the_sign_in_page_gives_the_declined_page(invitation, consent_run, admin) -> None:  # type: ignore[no-untyped-def]
    run = consent_run(invitation.url, user=admin, action="cancel")

    page = run.client.get(run.callback["Location"])
    assert b"You declined the consent" in page.content
    assert b'id="retry"' in page.content
    assert flow_of(invitation.partner).status == ConsentFlow.Status.DECLINED
    assert Partner.objects.get(pk=invitation.partner.pk).status == Partner.Status.INVITED
    assert_no_token_kept(invitation.partner)


@pytest.mark.parametrize(
    ("flags", "reason", "title"),
    [
        (
            {"global_admin": True, "admin_agent": False, "mfa_registered": True},
            "not_admin_agent",
            b"not an Admin Agent",
        ),
        (
            {"global_admin": True, "admin_agent": True, "mfa_registered": False},
            "no_mfa",
            b"Multi-factor authentication is required",
        ),
    ],
)
def test_a_user_who_cannot_consent_gets_their_own_page_and_no_token_is_kept(  # type: ignore[no-untyped-def]
    cpv_sim, invitation, consent_run, flags, reason, title
) -> None:
    run = consent_run(invitation.url, user=partner_user(cpv_sim, **flags))

    page = run.client.get(run.callback["Location"])
    assert title in page.content
    flow = flow_of(invitation.partner)
    assert (flow.status, flow.failure_reason) == (ConsentFlow.Status.FAILED, reason)
    assert Partner.objects.get(pk=invitation.partner.pk).tenant_id is None
    assert_no_token_kept(invitation.partner)


def test_a_replayed_answer_is_refused_and_writes_nothing(invitation, consent_run, admin) -> None:  # type: ignore[no-untyped-def]
    run = consent_run(invitation.url, user=admin)
    events = ConsentFlowEvent.objects.count()

    replay = run.post_callback()

    assert replay.status_code == 400
    assert b"already been used" in replay.content
    assert ConsentFlowEvent.objects.count() == events


def test_an_unknown_state_is_refused_and_writes_nothing(invitation, consent_run, admin) -> None:  # type: ignore[no-untyped-def]
    run = consent_run(invitation.url, user=admin, post=False)
    events = ConsentFlowEvent.objects.count()

    response = run.post_callback({**run.fields, "state": "not-a-state-we-issued"})

    assert response.status_code == 400
    assert b"not one we started" in response.content
    assert ConsentFlowEvent.objects.count() == events
    assert flow_of(invitation.partner).status == ConsentFlow.Status.REDIRECTED


def test_a_missing_state_is_refused(cpv_sim, client) -> None:  # type: ignore[no-untyped-def]
    assert client.post("/consent/callback", {"code": "x"}).status_code == 400
    assert client.get("/consent/callback?code=x&state=y").status_code == 400


def test_an_expired_flow_is_refused_and_marked_and_its_result_page_says_so(invitation, consent_run, admin) -> None:  # type: ignore[no-untyped-def]
    run = consent_run(invitation.url, user=admin, post=False)
    ConsentFlow.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    events = ConsentFlowEvent.objects.count()

    response = run.post_callback()

    assert response.status_code == 303 and response["Location"].startswith("/consent/result/")
    assert b"took too long" in run.client.get(response["Location"]).content
    assert ConsentFlowEvent.objects.count() == events + 1  # only the expiry, nothing from the late answer
    assert consent_flows_expire() == 0
    flow = flow_of(invitation.partner)
    assert flow.status == ConsentFlow.Status.EXPIRED and flow.sealed_flow is None


def test_an_answer_without_the_browser_cookie_is_refused(invitation, consent_run, admin) -> None:  # type: ignore[no-untyped-def]
    run = consent_run(invitation.url, user=admin, post=False)

    response = run.post_callback(client=Client())

    assert response.status_code == 400
    assert b"another browser" in response.content
    assert flow_of(invitation.partner).status == ConsentFlow.Status.REDIRECTED


def test_the_result_page_is_only_shown_to_the_browser_that_consented(invitation, consent_run, admin) -> None:  # type: ignore[no-untyped-def]
    run = consent_run(invitation.url, user=admin)

    assert Client().get(run.callback["Location"]).status_code == 404


def test_a_tenant_that_belongs_to_another_partner_is_refused(cpv_sim, invitation, consent_run, admin) -> None:  # type: ignore[no-untyped-def]
    Partner.objects.create(
        name="Earlier record", contact_email="a@b.example", tenant_id=cpv_sim.world.partners[0].tenant_id
    )

    run = consent_run(invitation.url, user=admin)

    assert b"already registered" in run.client.get(run.callback["Location"]).content
    assert flow_of(invitation.partner).failure_reason == "tenant_taken"
    assert_no_token_kept(invitation.partner)


def test_an_invitation_pinned_to_another_tenant_is_refused(cpv_sim, consent_run) -> None:  # type: ignore[no-untyped-def]
    other = cpv_sim.world.partners[1]
    pinned = partner_invite(
        actor=None,
        name="Pinned",
        contact_email="p@pinned.example",
        tenant_id=other.tenant_id,
        send_email=False,
    )
    other_admin = partner_user(cpv_sim, partner=1, global_admin=True, admin_agent=True, mfa_registered=True)
    run = consent_run(pinned.url, user=other_admin, post=False)
    # The pinned tenant is the authority, so only its accounts are offered...
    assert f"/{other.tenant_id}/oauth2/v2.0/authorize" in run.auth_uri
    # ...and an answer that still names another tenant (a guest account, say) is refused.
    _answer_with_id_token(cpv_sim, run)

    run.post_callback()

    assert b"belongs to another organisation" in run.client.get(run.callback["Location"]).content
    assert flow_of(pinned.partner).failure_reason == "wrong_tenant"
    assert_no_token_kept(pinned.partner)


@pytest.mark.parametrize("status", [400, 500])
def test_the_token_endpoint_failing_fails_the_flow(cpv_sim, invitation, consent_run, admin, status) -> None:  # type: ignore[no-untyped-def]
    run = consent_run(invitation.url, user=admin, post=False)
    cpv_sim.control.inject_fault(
        "entra",
        status=status,
        path=r".*/oauth2/v2.0/token",
        body={"error": "invalid_request", "error_description": "AADSTS90014: test", "error_codes": [90014]},
    )

    run.post_callback()

    assert b"Microsoft could not complete the sign-in" in run.client.get(run.callback["Location"]).content
    assert flow_of(invitation.partner).failure_reason == "microsoft_error"
    assert_no_token_kept(invitation.partner)


def test_microsoft_sending_an_error_instead_of_a_code_fails_the_flow(invitation, consent_run, admin) -> None:  # type: ignore[no-untyped-def]
    run = consent_run(invitation.url, user=admin, post=False)

    run.post_callback({"state": run.fields["state"], "error": "server_error", "error_description": "<b>AADSTS50000: x"})

    flow = flow_of(invitation.partner)
    assert (flow.failure_reason, flow.failure_detail) == ("microsoft_error", "server_error (AADSTS50000)")
    assert b"<b>" not in run.client.get(run.callback["Location"]).content


def test_partner_center_failing_fails_the_flow(cpv_sim, invitation, consent_run, admin) -> None:  # type: ignore[no-untyped-def]
    run = consent_run(invitation.url, user=admin, post=False)
    cpv_sim.control.inject_fault("partner_center", status=503, path=r".*/profiles/organization")

    run.post_callback()

    assert flow_of(invitation.partner).failure_reason == "microsoft_error"
    assert_no_token_kept(invitation.partner)


def test_the_vault_failing_fails_the_flow_and_a_retry_succeeds(  # type: ignore[no-untyped-def]
    cpv_sim, invitation, consent_run, admin, monkeypatch
) -> None:
    from tokens.vault import VaultTransient
    from tokens.vault.local import LocalVault

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise VaultTransient("the vault is down")

    with monkeypatch.context() as patch:
        patch.setattr(LocalVault, "write", broken)
        run = consent_run(invitation.url, user=admin)
    assert flow_of(invitation.partner).failure_reason == "our_error"
    assert_no_token_kept(invitation.partner)
    assert Partner.objects.get(pk=invitation.partner.pk).status == Partner.Status.INVITED

    retry = run.client.get(run.callback["Location"])
    assert b'id="retry"' in retry.content
    again = consent_run(invitation.url, user=admin)

    assert b"Consent recorded" in again.client.get(again.callback["Location"]).content
    assert Partner.objects.get(pk=invitation.partner.pk).status == Partner.Status.ACTIVE


# --- id_tokens that fail a check, signed with the simulator's own key -----------------------------------


def _answer_with_id_token(cpv_sim, run, **overrides: Any) -> None:  # type: ignore[no-untyped-def]
    """Make the token endpoint answer this flow's code with an id_token altered by `overrides`."""
    flow = flow_of(Partner.objects.get(consent_flows__isnull=False))
    sealed = unseal(bytes(flow.sealed_flow), purpose=SEAL_PURPOSE, bound_to=str(flow.code))
    world = cpv_sim.world.partners[0]
    admin = partner_user(cpv_sim, global_admin=True, admin_agent=True, mfa_registered=True)
    now = int(time.time())
    claims = {
        "iss": f"{cpv_sim.authority_host}/{world.tenant_id}/v2.0",
        "aud": cpv_sim.env["CPV_CLIENT_ID"],
        "tid": str(world.tenant_id),
        "oid": admin.oid,
        "sub": admin.oid,
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "nonce": hashlib.sha256(sealed["flow"]["nonce"].encode()).hexdigest(),
        "preferred_username": admin.upn,
        "ver": "2.0",
    }
    claims.update(overrides)
    id_token = cpv_sim._server.sim.signer.sign({k: v for k, v in claims.items() if v is not None})
    if overrides.get("_bad_signature"):
        head, payload, signature = id_token.split(".")
        id_token = f"{head}.{payload}.{signature[:-8]}AAAAAAAA"
    cpv_sim.control.inject_fault(
        "entra",
        status=200,
        path=r".*/oauth2/v2.0/token",
        body={
            "token_type": "Bearer",
            "scope": "https://api.partnercenter.microsoft.com/user_impersonation",
            "expires_in": 3600,
            "access_token": "SIMCANARY-not-a-real-access-token",
            "refresh_token": "SIMCANARY-not-a-real-refresh-token",
            "id_token": id_token,
        },
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {"_bad_signature": True},
        {"aud": "00000000-0000-0000-0000-00000000beef"},
        {"iss": "https://login.example.com/common/v2.0"},
        {"nonce": "0" * 64},
        {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200, "nbf": int(time.time()) - 7200},
    ],
    ids=["bad-signature", "wrong-aud", "wrong-iss", "wrong-nonce", "expired"],
)
def test_an_id_token_failing_a_check_fails_the_flow(cpv_sim, invitation, consent_run, admin, overrides) -> None:  # type: ignore[no-untyped-def]
    run = consent_run(invitation.url, user=admin, post=False)
    _answer_with_id_token(cpv_sim, run, **overrides)

    run.post_callback()

    flow = flow_of(invitation.partner)
    assert flow.status == ConsentFlow.Status.FAILED
    assert flow.failure_reason == "our_error"
    assert_no_token_kept(invitation.partner)
    assert Partner.objects.get(pk=invitation.partner.pk).tenant_id is None


def test_a_reconsent_replaces_the_token_only_when_it_succeeds(cpv_sim, invitation, consent_run, admin) -> None:  # type: ignore[no-untyped-def]
    consent_run(invitation.url, user=admin)
    pointer = PartnerToken.objects.get(partner=invitation.partner)
    first_version = pointer.current_version

    link = partner_reconsent_link(actor=None, partner=invitation.partner)
    failed = consent_run(link, user=partner_user(cpv_sim, global_admin=True, admin_agent=False, mfa_registered=True))
    assert flow_of(invitation.partner).failure_reason == "not_admin_agent"
    pointer.refresh_from_db()
    assert pointer.current_version == first_version
    assert get_vault().read(name=pointer.secret_name).version == first_version

    consent_run(link, user=admin)

    pointer.refresh_from_db()
    assert pointer.current_version != first_version
    assert pointer.previous_version == first_version and pointer.previous_disabled
    versions = {v.version: v.enabled for v in get_vault().versions(name=pointer.secret_name)}
    assert versions == {first_version: False, pointer.current_version: True}
    assert flow_of(invitation.partner).kind == ConsentFlow.Kind.RECONSENT
    assert failed.callback.status_code == 303


def test_two_flows_at_once_the_later_success_wins_and_nothing_is_orphaned(
    cpv_sim, invitation, consent_run, admin
) -> None:  # type: ignore[no-untyped-def]
    first = consent_run(invitation.url, user=admin, post=False)
    second = consent_run(invitation.url, user=admin, post=False)

    first.post_callback()
    second.post_callback()

    pointer = PartnerToken.objects.get(partner=invitation.partner)
    flows = list(ConsentFlow.objects.filter(partner=invitation.partner).order_by("created_at"))
    assert [f.status for f in flows] == [ConsentFlow.Status.VAULTED, ConsentFlow.Status.VAULTED]
    assert pointer.consent_flow == flows[1]
    versions = get_vault().versions(name=pointer.secret_name)
    assert [v.version for v in versions if v.enabled] == [pointer.current_version]
    assert len(versions) == 2


def test_nothing_secret_reaches_the_database(cpv_sim, invitation, consent_run, admin, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level("DEBUG")
    run = consent_run(invitation.url, user=admin)
    pages = run.client.get(run.callback["Location"]).content.decode()

    dump = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            if table == VaultSecretVersion._meta.db_table:
                continue
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - table names from introspection
            dump.extend(repr(row) for row in cursor.fetchall())
    text = "\n".join(dump) + pages + caplog.text
    assert cpv_sim.control.find_leaks(text) == []


@pytest.mark.django_db(transaction=True)
def test_a_failing_follow_up_after_the_commit_keeps_the_new_token(cpv_sim, consent_run, admin, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from consent import services

    def broken_follow_up(*, partner_id: int) -> None:
        raise RuntimeError("the follow-up work broke")

    monkeypatch.setattr(services, "customers_sync_after_consent", broken_follow_up)
    invitation = partner_invite(actor=None, name="Robust", contact_email="r@example.com", send_email=False)

    consent_run(invitation.url, user=admin)

    flow = flow_of(invitation.partner)
    assert flow.status == ConsentFlow.Status.VAULTED
    pointer = PartnerToken.objects.get(partner=invitation.partner)
    versions = {v.version: v.enabled for v in get_vault().versions(name=pointer.secret_name)}
    assert versions == {pointer.current_version: True}


def test_a_partner_deactivated_during_the_sign_in_is_not_reactivated(invitation, consent_run, admin) -> None:  # type: ignore[no-untyped-def]
    run = consent_run(invitation.url, user=admin, post=False)
    Partner.objects.filter(pk=invitation.partner.pk).update(status=Partner.Status.DEACTIVATED)

    run.post_callback()

    flow = flow_of(invitation.partner)
    assert flow.failure_reason == "expired_link"
    assert Partner.objects.get(pk=invitation.partner.pk).status == Partner.Status.DEACTIVATED
    pointer = PartnerToken.objects.filter(partner=invitation.partner).first()
    assert pointer is None or not pointer.current_version
    name = secret_name_for(invitation.partner.code)
    assert all(not v.enabled for v in get_vault().versions(name=name))


def test_a_mail_server_failure_does_not_undo_an_invitation(
    cpv_sim, settings, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    settings.EMAIL_BACKEND = "tests.consent.test_callback.BrokenMailBackend"

    with django_capture_on_commit_callbacks(execute=True):
        invited = partner_invite(actor=None, name="Mailless", contact_email="m@example.com", send_email=True)

    assert Partner.objects.filter(pk=invited.partner.pk).exists()


class BrokenMailBackend:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def send_messages(self, messages: Any) -> int:
        import smtplib

        raise smtplib.SMTPServerDisconnected("the mail server went away")


def test_a_consent_keeps_the_primary_domain_from_partner_center(cpv_sim, invitation, consent_run, admin) -> None:  # type: ignore[no-untyped-def]
    consent_run(invitation.url, user=admin)

    partner = Partner.objects.get(pk=invitation.partner.pk)
    assert partner.default_domain == cpv_sim.world.partners[0].domain.lower()


# --- what a callback costs beyond Microsoft's own answers --------------------------------------------------


def entra_paths(cpv_sim, since: int) -> list[str]:  # type: ignore[no-untyped-def]
    return [f"{e['method']} {e['path']}" for e in cpv_sim.control.log(service="entra", since=since)]


def log_seq(cpv_sim) -> int:  # type: ignore[no-untyped-def]
    entries = cpv_sim.control.log(limit=1)
    return int(entries[-1]["seq"]) if entries else 0


def test_a_first_consent_redeems_both_tokens_at_the_authority_it_signed_in_at(
    cpv_sim, invitation, consent_run, admin
) -> None:  # type: ignore[no-untyped-def]
    run = consent_run(invitation.url, user=admin, post=False)
    since = log_seq(cpv_sim)

    run.post_callback()

    partner = Partner.objects.get(pk=invitation.partner.pk)
    assert partner.status == Partner.Status.ACTIVE
    # The code and then the refresh token (for Graph), both at `organizations`; no document of the partner's
    # tenant is read on the way (the signing keys are the multi-tenant ones, read once a process).
    paths = entra_paths(cpv_sim, since)
    assert [p for p in paths if p.startswith("POST ")] == ["POST /organizations/oauth2/v2.0/token"] * 2
    assert not [p for p in paths if str(partner.tenant_id) in p]
    assert flow_of(partner).role_evidence == ConsentFlow.RoleEvidence.GRAPH


def test_a_graph_token_issued_for_another_tenant_is_no_evidence(
    cpv_sim, invitation, consent_run, admin, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    # Microsoft's pages say `organizations` issues for the user's home tenant; should an answer name another, its
    # memberships prove nothing of this sign-in, and nothing is kept.
    redeem = services.identity.refresh_token_redeem

    def elsewhere(**kwargs: Any) -> Any:
        result = redeem(**kwargs)
        return dataclasses.replace(result, id_token_claims={**result.id_token_claims, "tid": str(uuid.uuid4())})

    monkeypatch.setattr(services.identity, "refresh_token_redeem", elsewhere)

    consent_run(invitation.url, user=admin)

    flow = flow_of(invitation.partner)
    assert (flow.status, flow.failure_reason) == (ConsentFlow.Status.FAILED, "microsoft_error")
    assert "another tenant" in flow.failure_detail
    assert_no_token_kept(invitation.partner)


def test_a_reconsent_redeems_both_tokens_at_the_partners_tenant(cpv_sim, invitation, consent_run, admin) -> None:  # type: ignore[no-untyped-def]
    consent_run(invitation.url, user=admin)
    tenant = str(Partner.objects.get(pk=invitation.partner.pk).tenant_id)
    run = consent_run(partner_reconsent_link(actor=None, partner=invitation.partner), user=admin, post=False)
    since = log_seq(cpv_sim)

    run.post_callback()

    assert flow_of(invitation.partner).status == ConsentFlow.Status.VAULTED
    token_posts = [p for p in entra_paths(cpv_sim, since) if p.startswith("POST ")]
    assert token_posts == [f"POST /{tenant}/oauth2/v2.0/token"] * 2


def test_the_steps_are_written_with_the_outcome_each_at_its_own_time(
    cpv_sim, invitation, consent_run, admin, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    run = consent_run(invitation.url, user=admin, post=False)
    seen: dict[str, Any] = {}
    original = services._organization_profile

    def profile_watched(*args: Any, **kwargs: Any) -> Any:
        flow = flow_of(invitation.partner)
        seen.update(status=flow.status, timeline=[e.status for e in flow.events.all()], tenant=flow.tenant_id)
        return original(*args, **kwargs)

    monkeypatch.setattr(services, "_organization_profile", profile_watched)

    run.post_callback()

    # While Microsoft was asked, the row held the claim and nothing learnt yet.
    assert seen == {"status": "code_received", "timeline": ["created", "redirected"], "tenant": None}
    flow = flow_of(invitation.partner)
    events = list(flow.events.all())
    assert [e.status for e in events] == CONSENTED_TIMELINE
    times = [e.created_at for e in events]
    assert times == sorted(times)
    assert times[2] < times[3] < times[5]  # Microsoft's answers came in between
    assert flow.finished_at == times[5]
    assert flow.tenant_id and flow.user_name and flow.vault_version and flow.sealed_flow is None


def test_a_refusal_after_the_token_writes_what_was_learnt_on_the_way(cpv_sim, invitation, consent_run) -> None:  # type: ignore[no-untyped-def]
    not_an_agent = partner_user(cpv_sim, global_admin=True, admin_agent=False, mfa_registered=True)

    consent_run(invitation.url, user=not_an_agent)

    flow = flow_of(invitation.partner)
    assert (flow.status, flow.failure_reason) == (ConsentFlow.Status.FAILED, "not_admin_agent")
    assert [e.status for e in flow.events.all()] == [
        "created",
        "redirected",
        "code_received",
        "token_acquired",
        "failed",
    ]
    assert str(flow.tenant_id) == str(cpv_sim.world.partners[0].tenant_id)
    assert flow.user_oid is not None and flow.user_name
    assert flow.role_evidence == ConsentFlow.RoleEvidence.GRAPH
    assert flow.sealed_flow is None and flow.finished_at is not None


def test_a_first_consents_callback_runs_a_fixed_number_of_statements(cpv_sim, invitation, consent_run, admin) -> None:  # type: ignore[no-untyped-def]
    run = consent_run(invitation.url, user=admin, post=False)

    with CaptureQueriesContext(connection) as queries:
        run.post_callback()

    assert Partner.objects.get(pk=invitation.partner.pk).status == Partner.Status.ACTIVE
    statements = [
        q["sql"]
        for q in queries.captured_queries
        # The embedded vault's own rows stand for the Key Vault write; a test runs in a transaction of its own.
        if not q["sql"].startswith(("SAVEPOINT", "RELEASE")) and '"consent_vaultsecretversion"' not in q["sql"]
    ]
    # Find the flow (with its partner and the partner's pointer) and claim it, check the tenant; then one transaction:
    # the pointer's row made and locked with the partner's, both moved, the flow's outcome and timeline, the audit row
    # and the outbox's event.
    assert len(statements) == 12, "\n".join(s[:120] for s in statements)


def test_the_sync_queued_after_a_consent_asks_for_no_result(monkeypatch) -> None:
    queued: list[dict[str, Any]] = []
    monkeypatch.setattr(customer_tasks.customers_sync, "apply_async", lambda **options: queued.append(options))

    customer_tasks.customers_sync_after_consent(partner_id=7)

    assert queued == [{"kwargs": {"partner_id": 7}, "ignore_result": True}]

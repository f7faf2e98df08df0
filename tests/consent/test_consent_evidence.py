"""The evidence a consent decides on, as Microsoft really gives it: MFA in the Partner Center token and Partner
Center's own verdict, the Global Administrator role from `wids` where a token carries it and from Microsoft Graph
where none does, the Admin Agent role from Partner Center. Real msal against the simulator."""

from __future__ import annotations

from typing import Any

import pytest

from consent.models import ConsentFlow
from consent.services import partner_invite
from partners.models import Partner
from simulator.world import GRAPH_RESOURCE
from tests.simulated import partner_user
from tokens.models import PartnerToken, VaultSecretVersion

pytestmark = pytest.mark.django_db

GRAPH_ROLES = r"/v1\.0/me/transitiveMemberOf"
PROFILE = r".*/profiles/organization"


@pytest.fixture
def invitation(cpv_sim):  # type: ignore[no-untyped-def]
    return partner_invite(actor=None, name="Contoso Partners", contact_email="admin@contoso.example", send_email=False)


@pytest.fixture
def no_wids_anywhere(cpv_sim):  # type: ignore[no-untyped-def]
    """Neither the id_token (the default app registration) nor the access tokens list the user's roles."""
    cpv_sim.control.set_settings(access_token_wids=False)
    return cpv_sim


def flow_of(partner: Partner) -> ConsentFlow:
    return ConsentFlow.objects.filter(partner=partner).latest("created_at")


def assert_refused(run: Any, partner: Partner, reason: str, title: bytes) -> ConsentFlow:
    page = run.client.get(run.callback["Location"])
    assert page.status_code == 200
    assert title in page.content
    flow = flow_of(partner)
    assert (flow.status, flow.failure_reason) == (ConsentFlow.Status.FAILED, reason)
    partner.refresh_from_db()
    assert partner.status == Partner.Status.INVITED and partner.tenant_id is None
    assert not PartnerToken.objects.filter(partner=partner).exclude(current_version="").exists()
    assert not VaultSecretVersion.objects.exists()
    return flow


def graph_calls(sim) -> list[dict]:  # type: ignore[no-untyped-def]
    return sim.control.log(service="graph", path=GRAPH_ROLES)


@pytest.mark.parametrize(
    ("id_token_wids", "access_token_wids", "evidence"),
    [
        (True, True, ConsentFlow.RoleEvidence.ID_TOKEN),
        (True, False, ConsentFlow.RoleEvidence.ID_TOKEN),
        (False, True, ConsentFlow.RoleEvidence.ACCESS_TOKEN),
        (False, False, ConsentFlow.RoleEvidence.GRAPH),
    ],
    ids=["wids-everywhere", "wids-in-the-id-token", "wids-in-the-access-token", "no-wids"],
)
def test_a_global_admin_admin_agent_with_mfa_activates_whatever_the_tokens_carry(  # type: ignore[no-untyped-def]
    cpv_sim, invitation, consent_run, id_token_wids, access_token_wids, evidence
) -> None:
    if id_token_wids:
        cpv_sim.control.update_app(cpv_sim.env["CPV_CLIENT_ID"], group_membership_claims="DirectoryRole")
    cpv_sim.control.set_settings(access_token_wids=access_token_wids)
    admin = partner_user(cpv_sim, global_admin=True, admin_agent=True, mfa_registered=True)

    run = consent_run(invitation.url, user=admin)

    assert b"Consent recorded" in run.client.get(run.callback["Location"]).content
    partner = Partner.objects.get(pk=invitation.partner.pk)
    assert partner.status == Partner.Status.ACTIVE
    flow = flow_of(partner)
    assert (flow.status, flow.role_evidence) == (ConsentFlow.Status.VAULTED, evidence)
    # Graph is asked only when no token lists the user's roles.
    assert len(graph_calls(cpv_sim)) == (1 if evidence == ConsentFlow.RoleEvidence.GRAPH else 0)
    # Partner Center judged the sign-in's MFA on the verification call, and the answer is kept.
    profile = cpv_sim.control.log(service="partner_center", path="profiles/organization")
    assert [e["status"] for e in profile] == [200]
    assert partner.mfa_compliant is True and partner.mfa_checked_at is not None
    # The vaulted token works: Microsoft still knows it.
    from tokens.vault import get_vault

    pointer = PartnerToken.objects.get(partner=partner)
    stored = get_vault().read(name=pointer.secret_name).value.reveal()
    assert cpv_sim.control.refresh_token_info(stored) is not None


def test_an_admin_without_mfa_gets_the_mfa_page_and_no_token_is_kept(cpv_sim, invitation, consent_run) -> None:  # type: ignore[no-untyped-def]
    user = partner_user(cpv_sim, global_admin=True, admin_agent=True, mfa_registered=False)

    run = consent_run(invitation.url, user=user)

    flow = assert_refused(run, invitation.partner, "no_mfa", b"Multi-factor authentication is required")
    assert "amr" in flow.failure_detail and "Partner Center token" in flow.failure_detail
    # Decided on the token itself: Partner Center was not called with a token it would refuse.
    assert not cpv_sim.control.log(service="partner_center")


def test_partner_center_refusing_the_token_for_mfa_gets_the_mfa_page(cpv_sim, invitation, consent_run) -> None:  # type: ignore[no-untyped-def]
    admin = partner_user(cpv_sim, global_admin=True, admin_agent=True, mfa_registered=True)
    run = consent_run(invitation.url, user=admin, post=False)
    cpv_sim.control.inject_fault(
        "partner_center",
        status=401,
        path=PROFILE,
        body={"code": 900421, "description": "MFA required", "data": [], "source": "PartnerFD"},
    )

    run.post_callback()

    flow = assert_refused(run, invitation.partner, "no_mfa", b"Multi-factor authentication is required")
    assert "900421" in flow.failure_detail


def test_partner_center_saying_the_sign_in_is_not_mfa_compliant_gets_the_mfa_page(  # type: ignore[no-untyped-def]
    cpv_sim, invitation, consent_run
) -> None:
    admin = partner_user(cpv_sim, global_admin=True, admin_agent=True, mfa_registered=True)
    run = consent_run(invitation.url, user=admin, post=False)
    cpv_sim.control.inject_fault(
        "partner_center", status=200, path=PROFILE, body={"id": "x"}, headers={"isMfaCompliant": "false"}
    )

    run.post_callback()

    flow = assert_refused(run, invitation.partner, "no_mfa", b"Multi-factor authentication is required")
    assert "isMfaCompliant" in flow.failure_detail


def test_an_agent_whose_token_lists_roles_without_global_admin_is_refused(cpv_sim, invitation, consent_run) -> None:  # type: ignore[no-untyped-def]
    user = partner_user(cpv_sim, global_admin=False, admin_agent=True, mfa_registered=True)

    run = consent_run(invitation.url, user=user)

    flow = assert_refused(run, invitation.partner, "not_global_admin", b"not a Global Administrator")
    assert "wids" in flow.failure_detail
    assert not graph_calls(cpv_sim)


def test_an_agent_whose_roles_only_graph_lists_is_refused(no_wids_anywhere, invitation, consent_run) -> None:  # type: ignore[no-untyped-def]
    sim = no_wids_anywhere
    user = partner_user(sim, global_admin=False, admin_agent=True, mfa_registered=True)

    run = consent_run(invitation.url, user=user)

    flow = assert_refused(run, invitation.partner, "not_global_admin", b"not a Global Administrator")
    assert "Microsoft Graph" in flow.failure_detail
    assert [e["status"] for e in graph_calls(sim)] == [200]
    assert not sim.control.log(service="partner_center")


def graph_refuses(sim) -> None:  # type: ignore[no-untyped-def]
    sim.control.inject_fault(
        "graph",
        status=403,
        path=GRAPH_ROLES,
        body={"error": {"code": "Authorization_RequestDenied", "message": "Insufficient privileges."}},
    )


def _permissions_without_graph(sim) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    permissions = sim.control.world()["cpv_app"]["delegated_permissions"]
    return {resource: names for resource, names in permissions.items() if resource != GRAPH_RESOURCE}


def app_has_no_graph_permission(sim) -> None:  # type: ignore[no-untyped-def]
    sim.control.update_app(sim.env["CPV_CLIENT_ID"], delegated_permissions=_permissions_without_graph(sim))


def app_cannot_read_roles(sim) -> None:  # type: ignore[no-untyped-def]
    # User.Read lists the user's memberships, but not what a directory role is (Graph's "limited information").
    permissions = {**_permissions_without_graph(sim), GRAPH_RESOURCE: ["User.Read"]}
    sim.control.update_app(sim.env["CPV_CLIENT_ID"], delegated_permissions=permissions)


@pytest.mark.parametrize(
    "no_evidence",
    [graph_refuses, app_has_no_graph_permission, app_cannot_read_roles],
    ids=["graph-refuses", "no-graph-permission", "roles-unreadable"],
)
def test_no_evidence_of_the_role_is_refused_with_a_page_that_says_what_to_configure(  # type: ignore[no-untyped-def]
    no_wids_anywhere, invitation, consent_run, staff_client, no_evidence
) -> None:
    sim = no_wids_anywhere
    no_evidence(sim)
    admin = partner_user(sim, global_admin=True, admin_agent=True, mfa_registered=True)

    run = consent_run(invitation.url, user=admin)

    flow = assert_refused(
        run, invitation.partner, "role_unproven", b"could not confirm that the account is a Global Administrator"
    )
    assert b"setup of its Microsoft app" in run.client.get(run.callback["Location"]).content
    # The vendor's staff are told what to configure, on the partner's page.
    page = staff_client.get(f"/partners/{invitation.partner.code}/")
    assert b"RoleManagement.Read.Directory" in page.content
    assert b"CPV_GLOBAL_ADMIN_EVIDENCE" in page.content
    assert flow.role_evidence == ""
    assert not sim.control.log(service="partner_center")


def test_the_warn_setting_accepts_an_unproven_role_and_the_staff_page_says_so(  # type: ignore[no-untyped-def]
    no_wids_anywhere, invitation, consent_run, staff_client, settings
) -> None:
    settings.CPV_GLOBAL_ADMIN_EVIDENCE = "warn"
    sim = no_wids_anywhere
    graph_refuses(sim)
    admin = partner_user(sim, global_admin=True, admin_agent=True, mfa_registered=True)

    run = consent_run(invitation.url, user=admin)

    assert b"Consent recorded" in run.client.get(run.callback["Location"]).content
    partner = Partner.objects.get(pk=invitation.partner.pk)
    assert partner.status == Partner.Status.ACTIVE
    flow = flow_of(partner)
    assert flow.role_evidence == ConsentFlow.RoleEvidence.UNPROVEN
    assert any("not proven" in e.message for e in flow.events.all())
    page = staff_client.get(f"/partners/{partner.code}/").content.decode()
    assert 'id="role-evidence"' in page and "not proven" in page


def test_a_global_admin_not_an_admin_agent_is_refused_by_partner_center(cpv_sim, invitation, consent_run) -> None:  # type: ignore[no-untyped-def]
    user = partner_user(cpv_sim, global_admin=True, admin_agent=False, mfa_registered=True)

    run = consent_run(invitation.url, user=user)

    assert_refused(run, invitation.partner, "not_admin_agent", b"not an Admin Agent")
    profile = cpv_sim.control.log(service="partner_center", path="profiles/organization")
    assert [e["status"] for e in profile] == [403]


def test_graph_failing_for_a_moment_asks_the_partner_to_try_again(no_wids_anywhere, invitation, consent_run) -> None:  # type: ignore[no-untyped-def]
    sim = no_wids_anywhere
    sim.control.inject_fault("graph", status=503, path=GRAPH_ROLES)
    admin = partner_user(sim, global_admin=True, admin_agent=True, mfa_registered=True)

    run = consent_run(invitation.url, user=admin)

    assert_refused(run, invitation.partner, "microsoft_error", b"Microsoft could not complete the sign-in")
    again = consent_run(invitation.url, user=admin)
    assert b"Consent recorded" in again.client.get(again.callback["Location"]).content


def test_no_graph_or_partner_center_secret_reaches_a_page_or_the_database(  # type: ignore[no-untyped-def]
    no_wids_anywhere, invitation, consent_run, staff_client, caplog
) -> None:
    sim = no_wids_anywhere
    admin = partner_user(sim, global_admin=True, admin_agent=True, mfa_registered=True)

    run = consent_run(invitation.url, user=admin)

    texts = [
        run.client.get(run.callback["Location"]).content.decode(),
        staff_client.get(f"/partners/{invitation.partner.code}/").content.decode(),
        caplog.text,
    ]
    from django.db import connection

    with connection.cursor() as cursor:
        for table in ("consent_consentflow", "consent_consentflowevent", "partners_auditevent", "partners_partner"):
            cursor.execute(f"SELECT * FROM {table}")  # noqa: S608 - fixed table names
            texts.append(repr(cursor.fetchall()))
    for text in texts:
        assert sim.control.find_leaks(text) == []

"""The evidence a consent decides on, as Microsoft really gives it, with the simulator in its default (Microsoft's)
mode: the consent asks Partner Center's `.default` (static consent: the registration's whole list); MFA from the
Partner Center token's `amr` where it can be read, Partner Center's own verdict where it cannot; the Global
Administrator role from the id_token's `wids` where the registration asks for roles, from Microsoft Graph's
`/me/transitiveMemberOf` otherwise; the Admin Agent role from Partner Center. Real msal against the simulator."""

from __future__ import annotations

from typing import Any

import pytest

from consent.models import ConsentFlow
from consent.services import partner_invite
from microsoft import permissions
from partners.models import Partner
from partners.permissions import partner_permissions_missing
from simulator.world import GRAPH_RESOURCE
from tests.simulated import partner_user
from tokens.models import PartnerToken, VaultSecretVersion

pytestmark = pytest.mark.django_db

GRAPH_ROLES = r"/v1\.0/me/transitiveMemberOf"
PROFILE = r".*/profiles/organization"
REQUIRED_GRAPH = sorted(p.name for p in permissions.REQUIRED_PERMISSIONS if p.api == permissions.GRAPH)


@pytest.fixture
def invitation(cpv_sim):  # type: ignore[no-untyped-def]
    return partner_invite(actor=None, name="Contoso Partners", contact_email="admin@contoso.example", send_email=False)


@pytest.fixture
def admin(cpv_sim):  # type: ignore[no-untyped-def]
    return partner_user(cpv_sim, global_admin=True, admin_agent=True, mfa_registered=True)


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


def assert_consented(run: Any, partner: Partner) -> Partner:
    assert b"Consent recorded" in run.client.get(run.callback["Location"]).content
    partner.refresh_from_db()
    assert partner.status == Partner.Status.ACTIVE
    return partner


def graph_calls(sim) -> list[dict]:  # type: ignore[no-untyped-def]
    return sim.control.log(service="graph", path=GRAPH_ROLES)


def test_a_first_consent_grants_the_registrations_list_and_proves_the_role_through_graph(  # type: ignore[no-untyped-def]
    cpv_sim, invitation, consent_run, admin
) -> None:
    run = consent_run(invitation.url, user=admin)

    # Static consent: Partner Center's .default (the registration's whole list), asked with the consent page.
    assert "api.partnercenter.microsoft.com%2F.default" in run.auth_uri and "prompt=consent" in run.auth_uri
    assert "user_impersonation" not in run.auth_uri
    partner = assert_consented(run, invitation.partner)
    flow = flow_of(partner)
    assert (flow.status, flow.role_evidence) == (ConsentFlow.Status.VAULTED, ConsentFlow.RoleEvidence.GRAPH)
    # Microsoft granted the registration's list, for every API in it: Graph's role-reading permission too.
    granted = cpv_sim.control.grants(str(partner.tenant_id))[cpv_sim.env["CPV_CLIENT_ID"]][GRAPH_RESOURCE]
    assert set(REQUIRED_GRAPH) <= set(granted)
    assert partner.permissions_granted == {"partner_center": ["user_impersonation"], "graph": REQUIRED_GRAPH}
    assert partner.permissions_fingerprint == permissions.fingerprint()
    assert partner_permissions_missing(partner) == []
    # The roles come from the membership list without an OData cast (an advanced query Graph refuses otherwise).
    assert [(e["path"], e["status"]) for e in graph_calls(cpv_sim)] == [("/v1.0/me/transitiveMemberOf", 200)]
    profile = cpv_sim.control.log(service="partner_center", path="profiles/organization")
    assert [e["status"] for e in profile] == [200]
    assert partner.mfa_compliant is True and partner.mfa_checked_at is not None
    # The vaulted token works: Microsoft still knows it.
    from tokens.vault import get_vault

    pointer = PartnerToken.objects.get(partner=partner)
    stored = get_vault().read(name=pointer.secret_name).value.reveal()
    assert cpv_sim.control.refresh_token_info(stored) is not None


def test_the_role_is_found_across_pages_of_memberships(cpv_sim, invitation, consent_run, admin) -> None:  # type: ignore[no-untyped-def]
    # An administrator in many groups: Graph lists the memberships a page at a time (@odata.nextLink).
    cpv_sim.control.set_user_groups(admin.oid, [f"Group {i:03d}" for i in range(250)])

    partner = assert_consented(consent_run(invitation.url, user=admin), invitation.partner)

    assert flow_of(partner).role_evidence == ConsentFlow.RoleEvidence.GRAPH
    pages = graph_calls(cpv_sim)
    assert len(pages) >= 3 and all(e["status"] == 200 for e in pages)


def test_wids_in_the_id_token_proves_the_role_without_a_graph_membership_call(  # type: ignore[no-untyped-def]
    cpv_sim, invitation, consent_run, admin
) -> None:
    cpv_sim.control.update_app(cpv_sim.env["CPV_CLIENT_ID"], group_membership_claims="DirectoryRole")

    partner = assert_consented(consent_run(invitation.url, user=admin), invitation.partner)

    assert flow_of(partner).role_evidence == ConsentFlow.RoleEvidence.ID_TOKEN
    assert not graph_calls(cpv_sim)


def test_wids_in_a_partner_center_token_is_not_taken_for_evidence(cpv_sim, invitation, consent_run, admin) -> None:  # type: ignore[no-untyped-def]
    # Documented nowhere: even where a Partner Center token carries `wids`, the role is proven as documented.
    cpv_sim.control.set_settings(access_token_wids=True)

    partner = assert_consented(consent_run(invitation.url, user=admin), invitation.partner)

    assert flow_of(partner).role_evidence == ConsentFlow.RoleEvidence.GRAPH
    assert len(graph_calls(cpv_sim)) == 1


def test_a_dynamic_request_for_user_impersonation_alone_cannot_prove_the_role(  # type: ignore[no-untyped-def]
    cpv_sim, invitation, consent_run, admin, monkeypatch
) -> None:
    """The regression: asking for Partner Center's user_impersonation alone is dynamic consent, which grants what
    it names (and the initial User.Read), not the registration's list: Graph then lists roles without naming
    them, and no real partner's first consent could succeed."""
    from cpv.clouds import Cloud

    monkeypatch.setattr(Cloud, "partner_center_default_scope", property(lambda c: c.partner_center_scope))

    run = consent_run(invitation.url, user=admin)

    assert "user_impersonation" in run.auth_uri
    flow = assert_refused(run, invitation.partner, "role_permission_missing", b"RoleManagement.Read.Directory")
    assert "did not include Microsoft Graph RoleManagement.Read.Directory" in flow.failure_detail
    granted = cpv_sim.control.grants(str(flow.tenant_id))[cpv_sim.env["CPV_CLIENT_ID"]][GRAPH_RESOURCE]
    assert "RoleManagement.Read.Directory" not in granted


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


@pytest.mark.parametrize("answer_in", ["body", "header"])
def test_partner_center_saying_the_sign_in_is_not_mfa_compliant_gets_the_mfa_page(  # type: ignore[no-untyped-def]
    cpv_sim, invitation, consent_run, admin, answer_in
) -> None:
    run = consent_run(invitation.url, user=admin, post=False)
    if answer_in == "body":
        cpv_sim.control.inject_fault(
            "partner_center", status=200, path=PROFILE, body={"id": "x", "isMfaCompliant": False}
        )
    else:
        cpv_sim.control.inject_fault(
            "partner_center", status=200, path=PROFILE, body={"id": "x"}, headers={"isMfaCompliant": "false"}
        )

    run.post_callback()

    flow = assert_refused(run, invitation.partner, "no_mfa", b"Multi-factor authentication is required")
    assert "isMfaCompliant" in flow.failure_detail


@pytest.mark.parametrize("answer_in", ["body", "header"])
def test_partner_centers_mfa_verdict_is_kept_wherever_it_answers_it(  # type: ignore[no-untyped-def]
    cpv_sim, invitation, consent_run, admin, answer_in
) -> None:
    cpv_sim.control.set_settings(pc_mfa_compliant_in=answer_in)

    partner = assert_consented(consent_run(invitation.url, user=admin), invitation.partner)

    # Read from the header or from the body, as Partner Center gave it: without it the verdict would be unknown.
    assert partner.mfa_compliant is True


def test_an_opaque_partner_center_token_consents_when_partner_center_says_compliant(  # type: ignore[no-untyped-def]
    cpv_sim, invitation, consent_run, admin
) -> None:
    # Microsoft's own APIs' tokens may be opaque to clients: no `amr` to read, so Partner Center's verdict decides.
    cpv_sim.control.set_settings(opaque_access_tokens=True)

    partner = assert_consented(consent_run(invitation.url, user=admin), invitation.partner)

    assert partner.mfa_compliant is True
    verified = flow_of(partner).events.get(status=ConsentFlow.Status.VERIFIED)
    assert verified.detail["mfa_evidence"] == "partner_center"


def test_an_opaque_partner_center_token_partner_center_refuses_for_mfa_gets_the_mfa_page(  # type: ignore[no-untyped-def]
    cpv_sim, invitation, consent_run
) -> None:
    cpv_sim.control.set_settings(opaque_access_tokens=True)
    user = partner_user(cpv_sim, global_admin=True, admin_agent=True, mfa_registered=False)

    run = consent_run(invitation.url, user=user)

    flow = assert_refused(run, invitation.partner, "no_mfa", b"Multi-factor authentication is required")
    assert "900421" in flow.failure_detail


def test_a_401_that_is_not_the_mfa_refusal_is_tried_once_more_with_a_fresh_token(  # type: ignore[no-untyped-def]
    cpv_sim, invitation, consent_run, admin
) -> None:
    run = consent_run(invitation.url, user=admin, post=False)
    cpv_sim.control.inject_fault("partner_center", status=401, path=PROFILE, body={"code": "401", "description": "x"})

    run.post_callback()

    assert_consented(run, invitation.partner)
    profile = cpv_sim.control.log(service="partner_center", path="profiles/organization")
    assert [e["status"] for e in profile] == [401, 200]
    # Between the two calls, a fresh Partner Center token (after the Graph token of the role check).
    redemptions = cpv_sim.control.log(service="entra", grant_type="refresh_token")
    assert len(redemptions) == 2


def test_partner_center_refusing_the_token_twice_is_not_taken_for_a_missing_admin_agent_role(  # type: ignore[no-untyped-def]
    cpv_sim, invitation, consent_run, admin
) -> None:
    run = consent_run(invitation.url, user=admin, post=False)
    cpv_sim.control.inject_fault(
        "partner_center", status=401, path=PROFILE, body={"code": "401", "description": "x"}, times=2
    )

    run.post_callback()

    flow = assert_refused(run, invitation.partner, "partner_center_refused", b"Partner Center did not accept")
    assert "twice" in flow.failure_detail
    assert "enrolled as a Control Panel Vendor app" in flow.staff_note


@pytest.fixture
def consented_partner(cpv_sim):  # type: ignore[no-untyped-def]
    """A partner whose Global Administrator consented (for the organisation) to the current list: a later sign-in
    without `prompt=consent` needs no consent page, so an account that is not an administrator can finish it."""
    from tests.factories import active_partner

    partner = active_partner(cpv_sim)
    Partner.objects.filter(pk=partner.pk).update(
        permissions_fingerprint=permissions.fingerprint(),
        permissions_granted={"partner_center": ["user_impersonation"], "graph": REQUIRED_GRAPH},
    )
    return partner


def reconsent_as(consent_run, partner: Partner, user: Any) -> tuple[Any, ConsentFlow]:  # type: ignore[no-untyped-def]
    from partners.invitations import partner_reconsent_link

    run = consent_run(partner_reconsent_link(actor=None, partner=partner), user=user)
    assert "prompt=consent" not in run.auth_uri
    page = run.client.get(run.callback["Location"])
    assert b"not a Global Administrator" in page.content
    flow = flow_of(partner)
    assert (flow.status, flow.failure_reason) == (ConsentFlow.Status.FAILED, "not_global_admin")
    partner.refresh_from_db()
    assert partner.status == Partner.Status.ACTIVE  # the working consent stays
    return run, flow


def test_a_non_admin_needs_an_administrators_consent_first(cpv_sim, invitation, consent_run) -> None:  # type: ignore[no-untyped-def]
    """Two of the permissions are admin-only: on a first consent, Microsoft stops an account that is not an
    administrator at its own page (AADSTS90094), and nothing comes back to the control panel."""
    user = partner_user(cpv_sim, global_admin=False, admin_agent=True, mfa_registered=True)

    with pytest.raises(Exception, match="400"):
        consent_run(invitation.url, user=user)

    assert cpv_sim.control.log(service="entra", path="authorize", status=400)
    assert not PartnerToken.objects.filter(partner=invitation.partner).exists()


def test_an_agent_whose_id_token_lists_roles_without_global_admin_is_refused(  # type: ignore[no-untyped-def]
    cpv_sim, consented_partner, consent_run
) -> None:
    cpv_sim.control.update_app(cpv_sim.env["CPV_CLIENT_ID"], group_membership_claims="DirectoryRole")
    user = partner_user(cpv_sim, global_admin=False, admin_agent=True, mfa_registered=True)

    _, flow = reconsent_as(consent_run, consented_partner, user)

    assert "wids" in flow.failure_detail
    assert not graph_calls(cpv_sim)


def test_an_agent_whose_roles_graph_lists_without_global_admin_is_refused(  # type: ignore[no-untyped-def]
    cpv_sim, consented_partner, consent_run
) -> None:
    user = partner_user(cpv_sim, global_admin=False, admin_agent=True, mfa_registered=True)

    _, flow = reconsent_as(consent_run, consented_partner, user)

    assert "Microsoft Graph" in flow.failure_detail
    assert [e["status"] for e in graph_calls(cpv_sim)] == [200]
    assert not cpv_sim.control.log(service="partner_center", path="profiles/organization")


def graph_refuses(sim) -> None:  # type: ignore[no-untyped-def]
    sim.control.inject_fault(
        "graph",
        status=403,
        path=GRAPH_ROLES,
        body={"error": {"code": "Authorization_RequestDenied", "message": "Insufficient privileges."}},
    )


def _registration_without(sim, *names: str) -> None:  # type: ignore[no-untyped-def]
    registered = sim.control.world()["cpv_app"]["delegated_permissions"]
    changed = {resource: [n for n in perms if n not in names] for resource, perms in registered.items()}
    sim.control.update_app(sim.env["CPV_CLIENT_ID"], delegated_permissions=changed)


def registration_lacks_the_role_permission(sim) -> None:  # type: ignore[no-untyped-def]
    _registration_without(sim, "RoleManagement.Read.Directory")


def registration_lists_no_graph_permission(sim) -> None:  # type: ignore[no-untyped-def]
    _registration_without(sim, *REQUIRED_GRAPH)


@pytest.mark.parametrize(
    ("no_evidence", "names"),
    [
        (graph_refuses, "User.Read"),
        (registration_lacks_the_role_permission, "RoleManagement.Read.Directory"),
        (registration_lists_no_graph_permission, "RoleManagement.Read.Directory"),
    ],
    ids=["graph-refuses", "no-role-permission", "no-graph-permission"],
)
def test_a_consent_without_the_role_permission_is_refused_with_words_naming_it(  # type: ignore[no-untyped-def]
    cpv_sim, invitation, consent_run, staff_client, admin, no_evidence, names
) -> None:
    no_evidence(cpv_sim)

    run = consent_run(invitation.url, user=admin)

    flow = assert_refused(
        run, invitation.partner, "role_permission_missing", b"could not confirm that the account is a Global"
    )
    # The partner reads which permission the vendor's app must list; the failure detail names what was missing.
    assert b"RoleManagement.Read.Directory" in run.client.get(run.callback["Location"]).content
    assert names in flow.failure_detail
    # The vendor's staff are told what to configure, on the partner's page.
    page = staff_client.get(f"/partners/{invitation.partner.code}/")
    assert b"RoleManagement.Read.Directory" in page.content and b".default" in page.content
    assert flow.role_evidence == ""
    assert not cpv_sim.control.log(service="partner_center")


def test_the_warn_setting_accepts_an_unproven_role_and_the_staff_page_says_so(  # type: ignore[no-untyped-def]
    cpv_sim, invitation, consent_run, staff_client, settings, admin
) -> None:
    settings.CPV_GLOBAL_ADMIN_EVIDENCE = "warn"
    graph_refuses(cpv_sim)

    run = consent_run(invitation.url, user=admin)

    partner = assert_consented(run, invitation.partner)
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


def test_graph_failing_for_a_moment_asks_the_partner_to_try_again(cpv_sim, invitation, consent_run, admin) -> None:  # type: ignore[no-untyped-def]
    cpv_sim.control.inject_fault("graph", status=503, path=GRAPH_ROLES)

    run = consent_run(invitation.url, user=admin)

    assert_refused(run, invitation.partner, "microsoft_error", b"Microsoft could not complete the sign-in")
    again = consent_run(invitation.url, user=admin)
    assert b"Consent recorded" in again.client.get(again.callback["Location"]).content


def test_no_graph_or_partner_center_secret_reaches_a_page_or_the_database(  # type: ignore[no-untyped-def]
    cpv_sim, invitation, consent_run, staff_client, caplog, admin
) -> None:
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
        assert cpv_sim.control.find_leaks(text) == []

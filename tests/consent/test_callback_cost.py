"""What a consent callback costs beyond Microsoft's own answers: the requests it makes, the statements it runs, and the
steps it keeps in memory until its outcome is written."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from consent import services
from consent.models import ConsentFlow
from consent.services import partner_invite
from customers import tasks as customer_tasks
from partners.invitations import partner_reconsent_link
from partners.models import Partner
from tests.simulated import partner_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(cpv_sim) -> Any:  # type: ignore[no-untyped-def]
    return partner_user(cpv_sim, global_admin=True, admin_agent=True, mfa_registered=True)


@pytest.fixture
def invitation(cpv_sim):  # type: ignore[no-untyped-def]
    return partner_invite(actor=None, name="Contoso Partners", contact_email="admin@contoso.example", send_email=False)


def flow_of(partner: Partner) -> ConsentFlow:
    return ConsentFlow.objects.filter(partner=partner).latest("created_at")


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
    assert [e.status for e in events] == [
        "created",
        "redirected",
        "code_received",
        "token_acquired",
        "verified",
        "vaulted",
    ]
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
    # Find and claim the flow, check the tenant, read the pointer; then one transaction: the pointer's row made and
    # locked with the partner's, both moved, the flow's outcome and timeline, the audit row and the outbox's event.
    assert len(statements) == 13, "\n".join(s[:120] for s in statements)


def test_the_sync_queued_after_a_consent_asks_for_no_result(monkeypatch) -> None:
    queued: list[dict[str, Any]] = []
    monkeypatch.setattr(customer_tasks.customers_sync, "apply_async", lambda **options: queued.append(options))

    customer_tasks.customers_sync_after_consent(partner_id=7)

    assert queued == [{"kwargs": {"partner_id": 7}, "ignore_result": True}]

"""The GDAP pre-flight against the simulator's GDAP, with the real msal and Graph over HTTPS: each missing piece in its
own words and without an ApplicationConsent request, the paging and batching Graph asks for, expiry noticed once,
and a customer consented with no staff action once its access appears."""

from __future__ import annotations

import json

import pytest
from django.core import mail
from django.core.management import call_command

from customers.models import CustomerConsent, GdapNotice
from customers.services import access_check, application_consent_batch, customers_needing_consent, customers_sync
from customers.words import access_words
from partners.models import AuditEvent, Customer, Partner
from tests.customers.scheduled import Broker
from tests.factories import active_partner
from tests.simulated import partner_user
from tokens.models import OperatorAlert

pytestmark = pytest.mark.django_db
Access = CustomerConsent.Access

# The simulator's presets and the verdict each must give (the first missing piece).
BLOCKED = {
    "none": Access.NO_RELATIONSHIP,
    "approval_pending": Access.PENDING_APPROVAL,
    "expired": Access.ENDED,
    "terminated": Access.ENDED,
    "no_consent_role": Access.NO_CONSENT_ROLE,
    "role_unassigned": Access.ROLE_UNASSIGNED,
    "assignment_pending": Access.ASSIGNMENT_INACTIVE,
    "user_not_in_group": Access.NOT_IN_GROUP,
}


def _synced(sim, count: int = 0) -> tuple[Partner, list[Customer]]:  # type: ignore[no-untyped-def]
    partner = active_partner(sim)
    if count:
        sim.control.add_customers(str(partner.tenant_id), count)
    customers_sync(partner_id=partner.pk)
    return partner, list(Customer.objects.filter(partner=partner).order_by("pk"))


def _posts(sim, customer: Customer | None = None) -> list[dict]:  # type: ignore[no-untyped-def]
    posts = sim.control.log(service="partner_center", method="POST", path="applicationconsents")
    if customer is None:
        return posts
    return [p for p in posts if str(customer.tenant_id) in p["path"].lower()]


def _apply(partner: Partner) -> None:
    """What `apply_consents` and the workers do: the pre-flight, then the batches."""
    access_check(partner_id=partner.pk)
    ids = customers_needing_consent(partner_id=partner.pk)
    if ids:
        application_consent_batch(partner_id=partner.pk, customer_ids=ids, correlation_id="test")


def _state(customer: Customer) -> CustomerConsent:
    return CustomerConsent.objects.get(customer=customer)


def test_every_missing_piece_has_its_own_words_and_costs_no_application_consent(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner, customers = _synced(cpv_sim, count=len(BLOCKED))
    tenant = str(partner.tenant_id)
    blocked = dict(zip(customers[1 : len(BLOCKED) + 1], BLOCKED.items(), strict=True))
    for customer, (preset, _) in blocked.items():
        cpv_sim.control.gdap_state(tenant, str(customer.tenant_id), preset)
    cpv_sim.control.clear_log()

    _apply(partner)

    free = [c for c in customers if c not in blocked]
    assert {(_state(c).access, _state(c).status) for c in free} == {(Access.OK, CustomerConsent.Status.APPLIED)}
    seen_words = set()
    for customer, (preset, verdict) in blocked.items():
        state = _state(customer)
        assert (preset, state.access) == (preset, verdict)
        assert state.status == CustomerConsent.Status.PENDING and state.access_checked_at is not None
        assert not _posts(cpv_sim, customer), preset
        seen_words.add(access_words(state))
    # Each piece in words of its own (the two ended presets share theirs but for expired/terminated).
    assert len(seen_words) == len(BLOCKED)
    assert [p["status"] for p in _posts(cpv_sim)] == [201] * len(free)


def test_the_consenting_account_outside_admin_agents(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner, customers = _synced(cpv_sim)
    admin = partner_user(cpv_sim, global_admin=True, admin_agent=True, mfa_registered=True)
    cpv_sim.control.update_user(admin.oid, admin_agent=False)
    cpv_sim.control.clear_log()

    _apply(partner)

    assert {_state(c).access for c in customers} == {Access.NOT_ADMIN_AGENT}
    assert "AdminAgents" in access_words(_state(customers[0]))
    assert not _posts(cpv_sim)


def test_check_member_groups_is_asked_twenty_groups_at_a_time(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner, customers = _synced(cpv_sim, count=40)
    tenant = str(partner.tenant_id)
    for customer in customers:
        cpv_sim.control.gdap_state(tenant, str(customer.tenant_id), "active", group="own")
    cpv_sim.control.clear_log()

    result = access_check(partner_id=partner.pk)

    checks = cpv_sim.control.log(service="graph", method="POST", path="checkMemberGroups")
    sizes = sorted(len(c["request_json"]["groupIds"]) for c in checks) if checks and "request_json" in checks[0] else []
    assert len(checks) == 3, checks
    if sizes:
        assert sizes == [5, 20, 20]
    assert result is not None and result.counts == {Access.OK: 45} and result.without_access == 0


def test_more_than_300_relationships_are_read_across_pages(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner, customers = _synced(cpv_sim, count=305)
    cpv_sim.control.gdap_state(str(partner.tenant_id), str(customers[-1].tenant_id), "none")
    cpv_sim.control.clear_log()

    result = access_check(partner_id=partner.pk)

    pages = cpv_sim.control.log(service="graph", method="GET", path="delegatedAdminRelationships$")
    assert len(pages) == 2 and all(p["status"] == 200 for p in pages)
    assert result is not None and result.checked == 310
    assert result.counts == {Access.OK: 309, Access.NO_RELATIONSHIP: 1} and result.without_access == 1
    # Graph requests a run spends: 2 pages of relationships, one assignments listing per customer to consent, the
    # membership checks (one group for all, so one), and the AdminAgents read (one page).
    assert result.graph_requests == 2 + 309 + 1 + 1


def test_apply_consents_twice_spends_nothing_on_customers_still_without_access_and_consents_them_once_fixed(
    cpv_sim, capsys
) -> None:  # type: ignore[no-untyped-def]
    partner, customers = _synced(cpv_sim)
    tenant = str(partner.tenant_id)
    blocked = customers[:2]
    for customer in blocked:
        cpv_sim.control.gdap_state(tenant, str(customer.tenant_id), "user_not_in_group")
    cpv_sim.control.clear_log()

    call_command("apply_consents", "--partner", str(partner.code))
    call_command("apply_consents", "--partner", str(partner.code))

    out = capsys.readouterr().out
    assert "3 consented" in out and "2 without_access" in out
    assert len(_posts(cpv_sim)) == 3
    assert not any(_posts(cpv_sim, c) for c in blocked)
    call_command("partners", "--json")
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["customers_without_access"] == 2

    # The partner's admin fixes the group: the next run consents both, no staff action.
    for customer in blocked:
        cpv_sim.control.gdap_state(tenant, str(customer.tenant_id), "active")
    call_command("apply_consents", "--partner", str(partner.code))

    assert {_state(c).status for c in customers} == {CustomerConsent.Status.APPLIED}
    assert all(len(_posts(cpv_sim, c)) == 1 for c in blocked)
    call_command("partners", "--json")
    out = capsys.readouterr().out
    assert json.loads(out[out.index("[") :])[0]["customers_without_access"] == 0


def test_a_403_that_still_comes_back_is_recorded_and_not_spent_again_on_the_same_evidence(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner, customers = _synced(cpv_sim)
    target = customers[0]
    cpv_sim.control.inject_fault(
        "partner_center",
        status=403,
        method="POST",
        path=f"customers/{target.tenant_id}/applicationconsents",
        body={"code": "403", "description": "The user does not have the required GDAP role."},
        times=1,
    )

    _apply(partner)

    state = _state(target)
    assert state.status == CustomerConsent.Status.FAILED and state.access == Access.REFUSED
    assert "required GDAP role" in access_words(state)
    _apply(partner)
    assert len(_posts(cpv_sim, target)) == 1

    # The partner asks from the portal: tried once more on the same evidence, and now it works.
    access_check(partner_id=partner.pk, retry_refused=True)
    application_consent_batch(
        partner_id=partner.pk, customer_ids=customers_needing_consent(partner_id=partner.pk), correlation_id="x"
    )
    assert _state(target).status == CustomerConsent.Status.APPLIED
    assert len(_posts(cpv_sim, target)) == 2


def test_an_ending_relationship_alerts_staff_and_emails_the_partner_once(
    cpv_sim, django_user_model, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    django_user_model.objects.create_superuser("root", "root@vendor.example", "a-long-test-password")
    partner, customers = _synced(cpv_sim)
    tenant = str(partner.tenant_id)
    cpv_sim.control.gdap_state(tenant, str(customers[0].tenant_id), "expiring")
    cpv_sim.control.gdap_state(tenant, str(customers[1].tenant_id), "expiring_global_admin")
    mail.outbox.clear()

    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            access_check(partner_id=partner.pk)

    alert = OperatorAlert.objects.get(condition=OperatorAlert.Condition.GDAP_ENDING)
    assert alert.cleared_at is None and "2 end within 30 days" in alert.message
    subjects = [m.subject for m in mail.outbox]
    assert sum("GDAP" in s for s in subjects) == 2, subjects  # one to the partner, one to the admins
    partner_mail = next(m for m in mail.outbox if partner.contact_email in m.to)
    assert customers[0].company_name in partner_mail.body and "will not extend itself" in partner_mail.body
    assert GdapNotice.objects.filter(partner=partner, resolved_at__isnull=True).count() == 2
    assert AuditEvent.objects.filter(action="partner.gdap_ending", partner=partner).count() == 2
    # Still consentable: a warning, not a block.
    assert {_state(c).access for c in customers[:2]} == {Access.ENDING}
    assert "cannot" in access_words(_state(customers[1]))

    # Extended: the notices resolve and the alert clears.
    for customer in customers[:2]:
        cpv_sim.control.gdap_state(tenant, str(customer.tenant_id), "active")
    access_check(partner_id=partner.pk)
    assert not GdapNotice.objects.filter(resolved_at__isnull=True).exists()
    assert OperatorAlert.objects.get(condition=OperatorAlert.Condition.GDAP_ENDING).cleared_at is not None


def test_a_terminated_relationship_is_noticed_and_its_customer_shows_it(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner, customers = _synced(cpv_sim)
    cpv_sim.control.gdap_state(str(partner.tenant_id), str(customers[2].tenant_id), "terminated")

    access_check(partner_id=partner.pk)

    notice = GdapNotice.objects.get(partner=partner)
    assert notice.kind == GdapNotice.Kind.ENDED and str(notice.customer_tenant_id) == str(customers[2].tenant_id)
    assert _state(customers[2]).access == Access.ENDED


def test_where_microsoft_does_not_serve_the_gdap_api_the_pre_flight_says_so_and_posts_as_before(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner, customers = _synced(cpv_sim)
    Partner.objects.filter(pk=partner.pk).update(cloud="china")
    cpv_sim.control.clear_log()

    _apply(partner)

    assert {_state(c).access for c in customers} == {Access.NOT_AVAILABLE}
    assert "not available in this cloud" in access_words(_state(customers[0]))
    assert not cpv_sim.control.log(service="graph", path="delegatedAdminRelationships")
    assert len(_posts(cpv_sim)) == len(customers)


def test_a_consent_without_the_gdap_permissions_is_not_checked_and_says_which(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    partner, customers = _synced(cpv_sim)
    Partner.objects.filter(pk=partner.pk).update(
        permissions_granted={"partner_center": ["user_impersonation"], "graph": ["User.Read"]}
    )

    result = access_check(partner_id=partner.pk)

    assert result is not None and result.partner_verdict == Access.NOT_CHECKED and result.graph_requests == 0
    words = access_words(_state(customers[0]))
    assert "DelegatedAdminRelationship.Read.All" in words and "GroupMember.Read.All" in words


def test_staff_and_the_partner_see_the_verdicts_and_the_partner_asks_to_check_again(  # type: ignore[no-untyped-def]
    cpv_sim, monkeypatch, django_user_model
) -> None:
    from django.test import Client

    from customers import tasks as customer_tasks
    from partners.access import Role
    from tests.factories import client_for, make_staff

    cpv_sim.world.add_redirect_uris(["http://127.0.0.1:8000/portal/callback"])
    partner, customers = _synced(cpv_sim)
    blocked = customers[0]
    cpv_sim.control.gdap_state(str(partner.tenant_id), str(blocked.tenant_id), "role_unassigned")
    _apply(partner)

    # Staff: the GDAP column, the filter, the count; the overview's count.
    staff = client_for(make_staff(django_user_model, "viewer", Role.VIEWER))
    page = staff.get(f"/partners/{partner.code}/").content.decode()
    assert "Role not assigned to a group" in page and "no security group is assigned" in page
    assert 'id="customers-without-access"' in page and "1 customer without GDAP access" in page
    only = staff.get(f"/partners/{partner.code}/?consent=without_access").content.decode()
    assert blocked.company_name in only and customers[1].company_name not in only
    assert "1 customer without GDAP access" in staff.get("/?fresh=1").content.decode()

    # The partner's admin signs in to the portal: what to fix, and the button.
    client = Client()
    start = client.post("/portal/sign-in", {"cloud": "global"})
    admin = partner_user(cpv_sim, global_admin=True, admin_agent=True, mfa_registered=True)
    from tests.simulated import sign_in

    _target, fields = sign_in(str(start["Location"]), user_oid=admin.oid)
    welcome = client.post("/portal/callback", fields)
    client.get(welcome["Location"])
    portal = client.get("/portal/").content.decode()
    assert 'id="portal-gdap"' in portal and blocked.company_name in portal and "Microsoft's GDAP guide" in portal

    # Fixed in Partner Center; the partner presses the button: Graph is read again and the customer consented.
    cpv_sim.control.gdap_state(str(partner.tenant_id), str(blocked.tenant_id), "active")
    queued: list[dict] = []
    monkeypatch.setattr(customer_tasks.access_check, "delay", lambda **kwargs: queued.append(kwargs))
    answer = client.post("/portal/check-gdap")
    assert answer.status_code == 303 and queued == [{"partner_id": partner.pk}]
    assert AuditEvent.objects.filter(action="portal.gdap_check_asked", partner=partner).exists()
    broker = Broker(monkeypatch)
    customer_tasks.access_check.apply(kwargs=queued[0]).get()
    broker.drain()
    state = _state(blocked)
    assert state.access == Access.OK and state.status == CustomerConsent.Status.APPLIED
    assert "I fixed it" not in client.get("/portal/").content.decode()

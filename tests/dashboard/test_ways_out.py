"""Ways out for staff: a deactivated partner is reactivated, a stray invitation deleted, a locked staff account
unlocked from the staff page; each is audited with the acting staff member and says the next step."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from partners.invitations import invitation_read, invitation_token
from partners.models import AuditEvent, Operation, Partner
from tests.factories import PASSWORD, active_partner_with_data, client_for
from tokens.models import PartnerToken

pytestmark = pytest.mark.django_db


def deactivate(client, partner: Partner) -> None:  # type: ignore[no-untyped-def]
    response = client.post(f"/partners/{partner.code}/do/deactivate", {"confirmed": "yes", "reason": "by mistake"})
    assert response.status_code == 302


def test_a_deactivated_partner_with_a_working_token_is_reactivated_and_active_again(operator) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner_with_data("Contoso")
    client = client_for(operator)
    deactivate(client, partner)
    page = client.get(f"/partners/{partner.code}/").content.decode()
    assert 'id="action-reactivate"' in page

    confirm = client.get(f"/partners/{partner.code}/do/reactivate")
    done = client.post(f"/partners/{partner.code}/do/reactivate", {"confirmed": "yes"}, follow=True)

    assert confirm.status_code == 200 and b"Reactivate the partner" in confirm.content
    partner.refresh_from_db()
    assert partner.status == Partner.Status.ACTIVE and partner.status_reason == ""
    assert "Contoso is active again. Its token renews on schedule again" in done.content.decode()
    event = AuditEvent.objects.get(action="partner.reactivated")
    assert event.actor == operator and event.detail == {"status": "active", "token_usable": True}


def test_a_deactivated_partner_whose_token_is_dead_comes_back_needing_consent(operator) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner_with_data("Fabrikam", age_days=95)
    client = client_for(operator)
    deactivate(client, partner)

    done = client.post(f"/partners/{partner.code}/do/reactivate", {"confirmed": "yes"}, follow=True)

    partner.refresh_from_db()
    assert partner.status == Partner.Status.RECONSENT_NEEDED
    assert "create a consent link and send it to the partner&#x27;s admin" in done.content.decode()
    assert 'id="action-reconsent-link"' in done.content.decode()


def test_a_deactivated_invitation_is_invited_again_and_its_link_works_again(operator) -> None:  # type: ignore[no-untyped-def]
    partner = Partner.objects.create(name="Northwind", contact_email="n@n.example")
    token = invitation_token(partner=partner, purpose="invite")
    client = client_for(operator)
    deactivate(client, partner)

    client.post(f"/partners/{partner.code}/do/reactivate", {"confirmed": "yes"})

    partner.refresh_from_db()
    assert partner.status == Partner.Status.INVITED
    assert invitation_read(token).partner == partner


def test_reactivate_is_offered_only_for_a_deactivated_partner(operator) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner_with_data("Contoso")

    response = client_for(operator).post(f"/partners/{partner.code}/do/reactivate", {"confirmed": "yes"})

    assert response.status_code == 302
    assert not AuditEvent.objects.filter(action="partner.reactivated").exists()


def test_a_stray_invitation_is_deleted_out_of_every_list_and_its_link_stops_working(operator, viewer) -> None:  # type: ignore[no-untyped-def]
    tenant = uuid.uuid4()
    stray = Partner.objects.create(name="Contoso (duplicate)", contact_email="c@c.example", tenant_id=tenant)
    token = invitation_token(partner=stray, purpose="invite")
    client = client_for(operator)

    done = client.post(f"/partners/{stray.code}/do/delete", {"confirmed": "yes", "reason": "duplicate"})

    assert done.status_code == 302 and done["Location"] == "/partners/"
    stray.refresh_from_db()
    assert stray.deleted_at is not None and stray.tenant_id is None
    assert "is deleted" in client.get("/partners/").content.decode()  # the message, once
    assert "Contoso (duplicate)" not in client.get("/partners/").content.decode()
    assert client.get(f"/partners/{stray.code}/").status_code == 404
    assert "Contoso (duplicate)" not in client_for(viewer).get("/").content.decode()
    with pytest.raises(Exception, match="not accepting"):
        invitation_read(token)
    event = AuditEvent.objects.get(action="partner.deleted")
    assert event.actor == operator and event.detail["tenant_id"] == str(tenant)
    # Its tenant is free for the right invitation.
    assert Partner.objects.create(name="Contoso", contact_email="c@c.example", tenant_id=tenant)


def test_a_partner_that_consented_cannot_be_deleted(operator) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner_with_data("Contoso")

    client_for(operator).post(f"/partners/{partner.code}/do/delete", {"confirmed": "yes"})

    partner.refresh_from_db()
    assert partner.deleted_at is None
    assert not AuditEvent.objects.filter(action="partner.deleted").exists()


def test_an_admin_sees_a_locked_account_on_the_staff_page_and_unlocks_it(client, admin_user, viewer) -> None:  # type: ignore[no-untyped-def]
    for _ in range(5):
        client.post("/accounts/login/", {"username": "vera-viewer", "password": "wrong"})
    assert (
        b"Too many failed sign-ins"
        in client.post("/accounts/login/", {"username": "vera-viewer", "password": PASSWORD}).content
    )
    admin = client_for(admin_user)

    staff_page = admin.get("/staff/").content.decode()
    unlocked = admin.post("/staff/", {"what": "unlock", "username": "vera-viewer"}, follow=True)
    signed_in = client.post("/accounts/login/", {"username": "vera-viewer", "password": PASSWORD})

    assert 'id="unlock-vera-viewer"' in staff_page and "locked out" in staff_page
    assert "vera-viewer can sign in again." in unlocked.content.decode()
    assert 'id="unlock-vera-viewer"' not in unlocked.content.decode()
    assert signed_in.status_code == 302
    event = AuditEvent.objects.get(action="staff.unlocked")
    assert event.actor == admin_user and event.detail == {"user": "vera-viewer", "locked": True}


def test_an_operator_cannot_unlock_an_account(operator, viewer) -> None:  # type: ignore[no-untyped-def]
    response = client_for(operator).post("/staff/", {"what": "unlock", "username": "vera-viewer"})

    assert response.status_code == 404
    assert not AuditEvent.objects.filter(action="staff.unlocked").exists()


def test_an_old_token_is_not_usable_for_reactivation() -> None:
    partner = active_partner_with_data("Old")
    PartnerToken.objects.filter(partner=partner).update(last_renewed_at=timezone.now() - timedelta(days=91))
    from dashboard.staff_actions import token_usable

    partner.refresh_from_db()
    assert token_usable(Partner.objects.select_related("token").get(pk=partner.pk)) is False


# --- operations as records --------------------------------------------------------------------------------


def test_two_renewals_keep_their_own_results(operator, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from dashboard import operations
    from tokens import tasks as token_tasks
    from tokens.models import TokenEvent

    monkeypatch.setattr(token_tasks.token_renew, "apply_async", lambda *a, **kw: None)
    partner = active_partner_with_data("Contoso")
    start = timezone.now() - timedelta(minutes=5)
    first = operations.operation_start(actor=operator, partner=partner, kind=operations.RENEW)
    Operation.objects.filter(code=first.detail["operation"]).update(started_at=start)
    failure = TokenEvent.objects.create(partner=partner, kind=TokenEvent.Kind.GAVE_UP, message="AADSTS70000")
    TokenEvent.objects.filter(pk=failure.pk).update(created_at=start + timedelta(minutes=1))
    second = operations.operation_start(actor=operator, partner=partner, kind=operations.RENEW)
    TokenEvent.objects.create(partner=partner, kind=TokenEvent.Kind.RENEWED, message="renewed")

    shown = {p.operation: p for p in operations.operations_recent(partner)}

    assert shown[first.detail["operation"]].state == "failed"
    assert shown[first.detail["operation"]].message == "AADSTS70000"
    assert shown[second.detail["operation"]].state == "done"
    # Written once: a later event on the partner changes neither.
    TokenEvent.objects.create(partner=partner, kind=TokenEvent.Kind.GAVE_UP, message="later")
    again = {p.operation: p.state for p in operations.operations_recent(partner)}
    assert again == {first.detail["operation"]: "failed", second.detail["operation"]: "done"}
    record = Operation.objects.get(code=first.detail["operation"])
    assert (record.state, record.actor, record.kind) == ("failed", operator, "renew")
    assert record.finished_at is not None


def test_a_sync_reads_only_its_own_listing(operator, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from customers import tasks as customer_tasks
    from dashboard import operations
    from partners.services import audit_record

    monkeypatch.setattr(customer_tasks.customers_sync, "apply_async", lambda *a, **kw: None)
    partner = active_partner_with_data("Contoso")
    first = operations.operation_start(actor=operator, partner=partner, kind=operations.SYNC)
    second = operations.operation_start(actor=operator, partner=partner, kind=operations.SYNC)
    audit_record(
        actor=None,
        action="partner.customers_synced",
        partner=partner,
        detail={"listed": 3, "created": 0, "updated": 0, "removed": 0, "correlation_id": second.detail["operation"]},
    )

    assert operations.operation_progress(first).state == "queued"
    assert operations.operation_progress(second).state == "done"


def test_a_bulk_action_records_one_operation_per_partner_under_one_bulk_id(operator, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tokens import tasks as token_tasks

    monkeypatch.setattr(token_tasks.token_renew, "apply_async", lambda *a, **kw: None)
    a, b = active_partner_with_data("Alpha"), active_partner_with_data("Bravo")
    client = client_for(operator)

    done = client.post(
        "/partners/bulk", {"action": "renew", "partners": [str(a.code), str(b.code)], "confirmed": "True"}, follow=True
    )

    assert "Renew tokens now: queued for 2 partners." in done.content.decode()
    rows = list(Operation.objects.order_by("partner__name"))
    assert [(r.partner, r.kind, r.actor, r.state) for r in rows] == [
        (a, "renew", operator, "queued"),
        (b, "renew", operator, "queued"),
    ]
    assert rows[0].bulk is not None and rows[0].bulk == rows[1].bulk

"""Staff sign-in, the staff home page and the admin."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, transaction

from partners.access import Role
from partners.models import AuditEvent, Partner
from partners.services import PartnerError, audit_record, partner_create
from tests.factories import make_staff, signed_in

pytestmark = pytest.mark.django_db


def test_the_staff_home_page_requires_sign_in(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/"


def test_a_signed_in_user_who_is_not_staff_is_refused(client, django_user_model) -> None:  # type: ignore[no-untyped-def]
    client.force_login(django_user_model.objects.create_user(username="someone", password="x" * 20))

    assert client.get("/").status_code == 403


def test_staff_sign_in_with_a_password_reaches_the_overview(client, viewer) -> None:  # type: ignore[no-untyped-def]
    partner_create(actor=viewer, name="Contoso Partners", contact_email="admin@contoso.example")

    response = client.post(
        "/accounts/login/", {"username": "vera-viewer", "password": "a-long-test-password"}, follow=True
    )

    assert response.redirect_chain[-1] == ("/", 302)
    assert b"Partners by status" in response.content
    assert b"Contoso Partners" in client.get("/partners/").content


def test_a_staff_account_without_a_role_is_refused(client, django_user_model, roles) -> None:  # type: ignore[no-untyped-def]
    client.force_login(make_staff(django_user_model, "no-role", Role.NONE))

    response = client.get("/partners/")

    assert response.status_code == 403
    assert b"for the vendor" in response.content


def test_a_wrong_password_is_refused(client, staff_user) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/accounts/login/", {"username": staff_user.username, "password": "wrong"})

    assert response.status_code == 200
    assert "did not match" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_the_partner_list_pages_through_many_partners(client, viewer, django_assert_max_num_queries) -> None:  # type: ignore[no-untyped-def]
    Partner.objects.bulk_create(Partner(name=f"Partner {i:03d}", contact_email=f"p{i}@example.com") for i in range(120))
    signed_in(client, viewer)

    # The page's ids first, then its rows whole (dashboard/paging.py).
    with django_assert_max_num_queries(8):
        first = client.get("/partners/")
    last = client.get("/partners/?page=3")

    assert b"Partner 000" in first.content and b"Partner 050" not in first.content
    assert b"Page 1 of 3" in first.content
    assert b"Partner 119" in last.content


def test_the_admin_shows_partners_and_audit_events_read_only(client, django_user_model, staff_user) -> None:  # type: ignore[no-untyped-def]
    admin = django_user_model.objects.create_superuser(username="root", password="x" * 20, email="r@example.com")
    partner = partner_create(actor=staff_user, name="Fabrikam", contact_email="it@fabrikam.example")
    client.force_login(admin)

    assert client.get("/admin/").status_code == 200
    assert b"Fabrikam" in client.get("/admin/partners/partner/").content
    assert client.get(f"/admin/partners/partner/{partner.pk}/change/").status_code == 200
    assert b"partner.created" in client.get("/admin/partners/auditevent/").content
    assert client.get("/admin/partners/partner/add/").status_code == 403
    assert client.get("/admin/partners/auditevent/add/").status_code == 403


def test_creating_a_partner_writes_an_audit_row_with_the_actor(staff_user) -> None:
    partner = partner_create(
        actor=staff_user,
        name="  Northwind  ",
        contact_email="ops@northwind.example",
        cloud="usgov",
        environment="sandbox",
    )

    event = AuditEvent.objects.get(partner=partner)
    assert partner.name == "Northwind"
    assert event.actor == staff_user and event.actor_label == staff_user.username
    assert event.action == "partner.created"
    assert event.target_type == "partners.partner" and event.target_id == str(partner.code)
    assert event.detail == {
        "name": "Northwind",
        "cloud": "usgov",
        "environment": "sandbox",
        "status": "invited",
    }


def test_the_system_is_the_actor_when_no_one_is(staff_user) -> None:
    partner = partner_create(actor=None, name="Tailspin", contact_email="a@tailspin.example")

    assert partner.audit_events.get().actor_label == "system"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": " "}, "needs a name"),
        ({"contact_email": "not-an-email"}, "is not an email address"),
        ({"cloud": "germany"}, "retired by Microsoft"),
        ({"cloud": "mars"}, "Unknown cloud"),
        ({"environment": "staging"}, "Unknown environment"),
        ({"tenant_id": "contoso"}, "is not a tenant id"),
    ],
)
def test_partner_create_rejects_bad_input_and_writes_nothing(kwargs: dict[str, str], message: str) -> None:
    arguments = {"actor": None, "name": "Valid", "contact_email": "ok@example.com", **kwargs}

    with pytest.raises(PartnerError, match=message):
        partner_create(**arguments)  # type: ignore[arg-type]

    assert not Partner.objects.exists()
    assert not AuditEvent.objects.exists()


def test_a_tenant_belongs_to_one_partner_only() -> None:
    tenant = "0b7e4c1a-3f2d-4e5a-9c8b-7a6d5e4f3c2b"
    partner_create(actor=None, name="First", contact_email="a@first.example", tenant_id=tenant)

    with pytest.raises(PartnerError, match="already belongs to another partner"):
        partner_create(actor=None, name="Second", contact_email="a@second.example", tenant_id=tenant)

    assert Partner.objects.count() == 1
    assert AuditEvent.objects.count() == 1


def test_audit_details_are_scrubbed_of_secrets() -> None:
    event = audit_record(
        actor=None,
        action="test.secrets",
        detail={"refresh_token": "abc", "note": "Bearer eyJabcdefgh.eyJabcdefgh.sig"},
    )

    assert event.detail == {"refresh_token": "[redacted]", "note": "Bearer [redacted]"}


def test_the_audit_log_refuses_updates() -> None:
    event = audit_record(actor=None, action="test.append_only")

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(action="test.rewritten")

    event.refresh_from_db()
    assert event.action == "test.append_only"


@pytest.mark.postgres
def test_the_audit_log_refuses_deletes_on_postgresql(settings) -> None:  # type: ignore[no-untyped-def]
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.fail("this test runs on PostgreSQL: use `make test`")
    event = audit_record(actor=None, action="test.append_only")

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()

    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_each_response_carries_a_request_id_that_audit_rows_record(client, staff_user) -> None:  # type: ignore[no-untyped-def]
    client.force_login(staff_user)

    response = client.get("/", HTTP_X_REQUEST_ID="req-1234567890")
    bogus = client.get("/", HTTP_X_REQUEST_ID="<script>")

    # The product's own id, the client's kept beside it in the logs (tests/security/test_container.py).
    assert response["X-Request-ID"] != "req-1234567890" and len(response["X-Request-ID"]) == 32
    assert bogus["X-Request-ID"] != "<script>" and len(bogus["X-Request-ID"]) == 32

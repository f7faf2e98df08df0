"""The Django admin: signed into only through the dashboard's sign-in (with its lockout), every change audited,
and a superuser's account out of reach of anyone who is not one."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from partners.models import AuditEvent
from partners.services import PartnerError, staff_user_set_active
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser(django_user_model):  # type: ignore[no-untyped-def]
    return django_user_model.objects.create_superuser(username="root-admin", password=PASSWORD, email="r@example.com")


@pytest.fixture
def staff_with_user_permissions(django_user_model):  # type: ignore[no-untyped-def]
    user = django_user_model.objects.create_user(username="helpdesk", password=PASSWORD, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="auth", content_type__model="user"))
    return user


def test_the_admin_signs_in_only_through_the_dashboards_sign_in(client, superuser) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/admin/login/")
    posted = client.post("/admin/login/", {"username": "root-admin", "password": PASSWORD})

    assert page.status_code == 302 and page["Location"] == "/accounts/login/?next=/admin/"
    assert "_auth_user_id" not in client.session and posted.status_code == 302
    # The dashboard's sign-in counts failures for the admin's accounts as for any other.
    for _ in range(5):
        client.post("/accounts/login/", {"username": "root-admin", "password": "wrong"})
    locked = client.post("/accounts/login/", {"username": "root-admin", "password": PASSWORD})
    assert "_auth_user_id" not in client.session and locked.status_code == 200


def test_a_change_made_in_the_admin_is_audited_with_who_made_it(client, superuser) -> None:  # type: ignore[no-untyped-def]
    client.force_login(superuser)

    response = client.post(
        "/admin/auth/user/add/",
        {"username": "new-staff", "password1": "a-long-Passw0rd-here", "password2": "a-long-Passw0rd-here",
         "usable_password": "true"},
    )  # fmt: skip

    assert response.status_code == 302, response.content.decode()[:2000]
    event = AuditEvent.objects.get(action="admin.added")
    assert event.actor == superuser
    assert event.detail["model"] == "user" and event.detail["object"] == "new-staff"


def test_only_a_superuser_acts_on_a_superuser(superuser, staff_with_user_permissions) -> None:  # type: ignore[no-untyped-def]
    helpdesk = Client()
    helpdesk.force_login(staff_with_user_permissions)

    change = helpdesk.post(f"/admin/auth/user/{superuser.pk}/change/", {"username": "root-admin", "is_active": ""})
    delete = helpdesk.post(f"/admin/auth/user/{superuser.pk}/delete/", {"post": "yes"})

    assert change.status_code == 403 and delete.status_code == 403
    superuser.refresh_from_db()
    assert superuser.is_active
    with pytest.raises(PartnerError, match="only another superuser"):
        staff_user_set_active(actor=staff_with_user_permissions, user=superuser, active=False)


@pytest.mark.parametrize("role", ["operator", "viewer"])
def test_the_admin_tells_an_operator_or_a_viewer_why_it_is_not_for_them_instead_of_looping(  # type: ignore[no-untyped-def]
    role, request
) -> None:
    from tests.factories import client_for

    user = request.getfixturevalue(role)
    client = client_for(user)

    page = client.get("/admin/")
    app_page = client.get("/admin/partners/partner/")

    assert page.status_code == 403 and app_page.status_code == 403
    text = page.content.decode()
    assert "The admin is not for this account" in text and f"a staff {user.username.split('-')[1]}" in text
    assert 'id="to-dashboard"' in text


def test_the_admin_still_sends_a_signed_out_visitor_to_the_sign_in(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/admin/")

    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")

"""Every URL of the dashboard and the portal against every kind of visitor: anonymous, a partner user of
partner A, one of partner B, viewer, operator and admin. What may not be seen is a 404; what may be seen but not
done is a 403; a partner's user only ever sees their own organisation."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.test import Client

from dashboard import operations
from partners.access import Role
from partners.invitations import invitation_read
from partners.models import Partner
from tests.factories import active_partner_with_data, client_for, make_staff, portal_client

pytestmark = pytest.mark.django_db

VISITORS = ["anonymous", "partner_a", "partner_b", "no_role", "viewer", "operator", "admin"]
LOGIN = "login"  # a redirect to the staff sign-in page
STAFF_READ = {"anonymous": LOGIN, "partner_a": LOGIN, "partner_b": LOGIN, "no_role": 403, "viewer": 200,
              "operator": 200, "admin": 200}  # fmt: skip
STAFF_ACT = {**STAFF_READ, "viewer": 403}
STAFF_ADMIN = {**STAFF_READ, "viewer": 404, "operator": 404}
NOT_FOUND = {**STAFF_READ, "viewer": 404, "operator": 404, "admin": 404}


@pytest.fixture
def world(django_user_model, roles, django_capture_on_commit_callbacks) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    a = active_partner_with_data("Alpha Partners", customers=3, failed=1)
    b = active_partner_with_data("Bravo Partners", customers=2, failed=0)
    # An operation of A's, so that its progress URL exists (the tasks it queues are never sent here).
    operation = operations.operation_start(actor=None, partner=a, kind=operations.SYNC).detail["operation"]
    clients = {
        "anonymous": Client(),
        "partner_a": portal_client(a),
        "partner_b": portal_client(b),
        "no_role": client_for(make_staff(django_user_model, "nobody", Role.NONE)),
        "viewer": client_for(make_staff(django_user_model, "viewer", Role.VIEWER)),
        "operator": client_for(make_staff(django_user_model, "operator", Role.OPERATOR)),
        "admin": client_for(make_staff(django_user_model, "admin", Role.ADMIN)),
    }
    return {"a": a, "b": b, "operation": operation, "clients": clients}


def routes(w: dict[str, Any]) -> list[tuple[str, str, dict[str, str], dict[str, Any]]]:
    a = w["a"].code
    return [
        ("GET", "/", {}, STAFF_READ),
        ("GET", "/?days=7", {}, STAFF_READ),
        ("GET", "/partners/", {}, STAFF_READ),
        ("GET", "/partners/?q=alpha&status=active&health=healthy&sort=-renewed", {}, STAFF_READ),
        ("GET", f"/partners/{a}/", {}, STAFF_READ),
        ("GET", f"/partners/{a}/?consent=failed", {}, STAFF_READ),
        ("GET", f"/partners/{a}/operations/{w['operation']}", {}, STAFF_READ),
        ("GET", f"/partners/{a}/operations/{uuid.uuid4()}", {}, NOT_FOUND),
        ("GET", f"/partners/{uuid.uuid4()}/", {}, NOT_FOUND),
        ("GET", "/audit/", {}, STAFF_READ),
        ("GET", "/audit/?actor=system&action=partner.&partner=Alpha", {}, STAFF_READ),
        ("GET", "/audit.csv?action=partner.", {}, STAFF_READ),
        ("GET", "/partners.csv?q=alpha", {}, STAFF_READ),
        ("GET", f"/partners/{a}/customers.csv", {}, STAFF_READ),
        ("GET", f"/partners/{uuid.uuid4()}/customers.csv", {}, NOT_FOUND),
        ("GET", "/staff/", {}, STAFF_ADMIN),
        ("GET", "/settings/", {}, STAFF_ADMIN),
        ("GET", "/settings/check", {}, STAFF_ADMIN),
        *[
            ("GET", f"/partners/{a}/do/{action}", {}, STAFF_ACT)
            for action in (
                "renew",
                "sync",
                "apply",
                "apply_failed",
                "verify",
                "reconsent_link",
                "revoke",
                "offboard",
                "deactivate",
            )
        ],
        ("POST", f"/partners/{a}/do/renew", {}, STAFF_ACT),
        ("GET", f"/partners/{a}/do/no-such-action", {}, {**STAFF_ACT, "operator": 404, "admin": 404}),
        ("POST", "/partners/bulk", {"action": "sync", "partners": str(a)}, STAFF_ACT),
        ("GET", "/consent/staff/invite", {}, STAFF_ACT),
        ("POST", f"/consent/staff/partners/{a}/reconsent-link", {}, {**STAFF_ACT, "operator": 302, "admin": 302}),
        ("POST", "/staff/", {"what": "role", "username": "nobody", "role": "1"}, {**STAFF_ADMIN, "admin": 302}),
    ]


def outcome(response: Any) -> Any:
    if response.status_code == 302 and response["Location"].startswith("/accounts/login/"):
        return LOGIN
    return response.status_code


def test_every_staff_url_answers_each_visitor_as_its_role_allows(world) -> None:  # type: ignore[no-untyped-def]
    failures = []
    for method, url, data, expected in routes(world):
        for visitor in VISITORS:
            client = world["clients"][visitor]
            response = client.get(url) if method == "GET" else client.post(url, data)
            if outcome(response) != expected[visitor]:
                failures.append(f"{method} {url} as {visitor}: {outcome(response)}, expected {expected[visitor]}")

    assert not failures, "\n".join(failures)


def test_the_portal_shows_each_partner_user_only_their_own_organisation(world) -> None:  # type: ignore[no-untyped-def]
    clients = world["clients"]
    a_page = clients["partner_a"].get("/portal/").content.decode()
    b_page = clients["partner_b"].get("/portal/").content.decode()

    assert "Alpha Partners" in a_page and "Alpha Partners customer 0000" in a_page
    assert "Bravo" not in a_page
    assert "Bravo Partners" in b_page and "Bravo Partners customer 0001" in b_page
    assert "Alpha" not in b_page
    # Anyone else gets the sign-in page: staff accounts are not partner users.
    for visitor in ("anonymous", "viewer", "operator", "admin"):
        page = clients[visitor].get("/portal/")
        assert page.status_code == 200 and b"Sign in with Microsoft" in page.content


def test_only_a_signed_in_partner_user_may_renew_and_only_for_their_own_organisation(world) -> None:  # type: ignore[no-untyped-def]
    clients = world["clients"]
    for visitor in ("anonymous", "viewer", "operator", "admin"):
        assert clients[visitor].post("/portal/renew").status_code == 403

    response = clients["partner_b"].post("/portal/renew")

    assert response.status_code == 303
    token = response["Location"].rsplit("/consent/i/", 1)[1].strip("/")
    target = invitation_read(token)
    assert target.partner == world["b"] and target.purpose == "reconsent"


def test_a_portal_user_of_a_tenant_that_is_no_partner_sees_a_clear_page(world) -> None:  # type: ignore[no-untyped-def]
    stranger = Partner(name="Stranger", tenant_id=uuid.uuid4(), cloud="global")
    client = portal_client(stranger)

    page = client.get("/portal/")

    assert page.status_code == 200
    assert b"not one of our partners yet" in page.content
    assert b"Alpha" not in page.content and b"Bravo" not in page.content
    assert client.post("/portal/renew").status_code == 200
    assert b"not one of our partners yet" in client.post("/portal/renew").content


def test_a_portal_user_who_is_not_an_administrator_is_refused(world) -> None:  # type: ignore[no-untyped-def]
    client = portal_client(world["a"], global_admin=False)

    page = client.get("/portal/")

    assert page.status_code == 403
    assert b"administrators" in page.content and b"customer 0000" not in page.content

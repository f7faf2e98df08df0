"""Staff pages in staff words: a look-alike invitation is warned of, search finds part of a contact's address and
says what it covers, times read 'just now' or 'yesterday', counts have no '(s)'."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.template import Context, Template
from django.utils import timezone

from partners.models import Partner
from tests.factories import active_partner_with_data, client_for

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("name", "email", "tenant", "shared"),
    [
        ("contoso partners", "new@elsewhere.example", False, "same name"),
        ("Another Name", "ADMIN@contoso.example", False, "same contact email"),
        ("Another Name", "someone@contoso.example", False, "same domain contoso.example"),
        ("Another Name", "x@elsewhere.example", True, "same tenant"),
    ],
)
def test_an_invitation_that_looks_like_an_existing_partner_is_warned_of_once(  # type: ignore[no-untyped-def]
    operator, name, email, tenant, shared
) -> None:
    existing = Partner.objects.create(
        name="Contoso Partners", contact_email="admin@contoso.example", tenant_id=uuid.uuid4()
    )
    client = client_for(operator)
    data = {"name": name, "contact_email": email, "cloud": "global", "environment": "production"}
    if tenant:
        data["tenant_id"] = str(existing.tenant_id)

    warned = client.post("/consent/staff/invite", data)

    page = warned.content.decode()
    assert warned.status_code == 409 and 'id="look-alikes"' in page and shared in page
    assert f'href="/partners/{existing.code}/"' in page and "Invite anyway" in page
    assert Partner.objects.count() == 1
    if not tenant:  # the same tenant cannot be invited twice at all
        anyway = client.post("/consent/staff/invite", {**data, "duplicate_ok": "on"})
        assert anyway.status_code == 302 and Partner.objects.count() == 2


def test_an_invitation_like_no_other_partner_goes_through_at_once(operator) -> None:  # type: ignore[no-untyped-def]
    Partner.objects.create(name="Contoso Partners", contact_email="a@gmail.com")
    data = {"name": "Fabrikam", "contact_email": "b@gmail.com", "cloud": "global", "environment": "production"}

    assert client_for(operator).post("/consent/staff/invite", data).status_code == 302


def test_search_finds_part_of_a_contact_address_and_says_what_it_covers(viewer) -> None:  # type: ignore[no-untyped-def]
    Partner.objects.create(name="Northwind", contact_email="it-desk@northwind-traders.example")
    Partner.objects.create(name="Fabrikam", contact_email="ops@fabrikam.example")
    client = client_for(viewer)

    found = client.get("/partners/", {"q": "it-desk@north"}).content.decode()

    assert "Northwind" in found and "Fabrikam" not in found
    assert 'placeholder="Name, domain, contact email, customer or tenant id"' in found


def test_times_read_as_a_person_says_them() -> None:
    now = timezone.now()
    render = Template("{% load staff %}{{ t|ago }}").render

    assert render(Context({"t": now})) == "just now"
    assert render(Context({"t": now - timedelta(hours=3)})) == "3\xa0hours ago"
    assert render(Context({"t": now - timedelta(hours=30)})) == "yesterday"
    assert render(Context({"t": now - timedelta(days=5, hours=2)})) == "5\xa0days ago"


def test_a_fresh_token_reads_renewed_just_now_and_the_portal_says_today(viewer) -> None:  # type: ignore[no-untyped-def]
    from tests.factories import portal_client

    partner = active_partner_with_data("Contoso", age_days=0)

    listed = client_for(viewer).get("/partners/").content.decode()
    portal = portal_client(partner).get("/portal/").content.decode()

    assert "just now" in listed and "0\xa0minutes" not in listed
    assert "Last renewed today" in portal and "0 days ago" not in portal


def test_counts_on_staff_pages_have_no_s_in_brackets(operator) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner_with_data("Contoso", customers=4, failed=1)

    page = client_for(operator).get(f"/partners/{partner.code}/").content.decode()

    assert "Retry 1 failed consent<" in page and "(s)" not in page


def test_emails_sent_to_a_partner_are_listed_on_its_page_without_their_link(  # type: ignore[no-untyped-def]
    operator, mailoutbox, django_capture_on_commit_callbacks
) -> None:
    partner = Partner.objects.create(name="Contoso", contact_email="admin@contoso.example")
    client = client_for(operator)

    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/partners/{partner.code}/do/reconsent_link", {"confirmed": "yes", "send_email": "on"})
    page = client.get(f"/partners/{partner.code}/").content.decode()

    section = page[page.index('id="emails"') : page.index('id="audit"')]
    assert len(mailoutbox) == 1
    assert "admin@contoso.example" in section and mailoutbox[0].subject in section and "just now" in section
    assert "/consent/i/" not in section

"""CSV downloads: the audit log as filtered, the partner list as searched, one partner's customers. They stream
every row, guard cells against formulas, and carry no secret."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import pytest
from django.http import StreamingHttpResponse
from django.utils import timezone

from cpv.config import AppCredential
from customers.models import CustomerConsent
from dashboard.exports import cell
from partners.models import AuditEvent, Customer, Partner
from partners.services import audit_record
from tests.factories import active_partner_with_data, client_for

pytestmark = pytest.mark.django_db

CANARY = "0.CANARY-rt.secret-value-that-must-not-leave"


def rows_of(response: Any) -> list[list[str]]:
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="')
    text = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(text)))


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1", "'+1"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("Contoso", "Contoso"),
        (True, "yes"),
        (None, ""),
    ],
)
def test_a_cell_that_a_spreadsheet_would_run_is_prefixed_with_an_apostrophe(value: Any, shown: str) -> None:
    assert cell(value) == shown


def test_the_audit_log_export_honours_the_filters_and_is_in_words(viewer) -> None:  # type: ignore[no-untyped-def]
    alpha = Partner.objects.create(name="Alpha Partners", contact_email="a@example.com")
    bravo = Partner.objects.create(name="=Bravo", contact_email="b@example.com")
    audit_record(actor=None, action="partner.invited", partner=alpha, detail={"emailed": True})
    audit_record(actor=None, action="partner.invited", partner=bravo, detail={"emailed": False})
    audit_record(actor=None, action="partner.deactivated", partner=alpha)
    client = client_for(viewer)

    rows = rows_of(client.get("/audit.csv", {"action": "partner.invited"}))

    assert rows[0][:5] == ["When (UTC)", "Who", "What", "About", "Detail"]
    assert sorted((r[1], r[2], r[3], r[4]) for r in rows[1:]) == [
        ("System", "Invited the partner", "'=Bravo", "Emailed: no"),
        ("System", "Invited the partner", "Alpha Partners", "Emailed: yes"),
    ]
    only_alpha = rows_of(client.get("/audit.csv", {"partner": "Alpha"}))
    assert [r[2] for r in only_alpha[1:]] == ["Deactivated the partner", "Invited the partner"]


def test_an_audit_export_with_an_invalid_filter_is_refused_rather_than_exporting_everything(viewer) -> None:  # type: ignore[no-untyped-def]
    response = client_for(viewer).get("/audit.csv", {"since": "not-a-date"})

    assert response.status_code == 400
    assert b"Enter a valid date" in response.content


def test_the_partner_list_export_honours_the_search_and_has_every_row(viewer) -> None:  # type: ignore[no-untyped-def]
    active_partner_with_data("Alpha Partners", customers=3, failed=1)
    active_partner_with_data("Bravo Partners", customers=2, failed=0)
    Partner.objects.create(name="Charlie Invited", contact_email="c@example.com")
    client = client_for(viewer)

    everyone = rows_of(client.get("/partners.csv"))
    alpha = rows_of(client.get("/partners.csv", {"q": "alpha", "page": "7"}))
    invited = rows_of(client.get("/partners.csv", {"status": "invited"}))

    assert [r[0] for r in everyone[1:]] == ["Alpha Partners", "Bravo Partners", "Charlie Invited"]
    header = alpha[0]
    row = dict(zip(header, alpha[1], strict=True))
    assert len(alpha) == 2
    assert row["Status"] == "Active" and row["Token health"] == "Healthy"
    assert (row["Customers"], row["Customers with the app"], row["Customers failing"]) == ("3", "2", "1")
    assert [r[0] for r in invited[1:]] == ["Charlie Invited"]


def test_a_partners_customers_export_lists_each_customer_with_its_consent_state(viewer) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner_with_data("Alpha Partners", customers=3, failed=1)
    client = client_for(viewer)

    rows = rows_of(client.get(f"/partners/{partner.code}/customers.csv"))
    failed = rows_of(client.get(f"/partners/{partner.code}/customers.csv", {"consent": "failed"}))

    assert len(rows) == 4
    assert sorted(r[4] for r in rows[1:]) == ["Applied", "Applied", "Failed"]
    assert len(failed) == 2 and failed[1][4] == "Failed"
    assert "AdminAgents group, and in a GDAP security group" in failed[1][7]
    assert client.get(f"/partners/{uuid.uuid4()}/customers.csv").status_code == 404


def test_the_pages_link_to_their_exports_with_their_filters(viewer) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner_with_data("Alpha Partners", customers=1, failed=0)
    client = client_for(viewer)

    assert (
        'href="/partners.csv?q=alpha&amp;status=active"'
        in client.get("/partners/", {"q": "alpha", "status": "active", "page": "1"}).content.decode()
    )
    assert 'href="/audit.csv?action=partner."' in client.get("/audit/", {"action": "partner."}).content.decode()
    detail = client.get(f"/partners/{partner.code}/", {"consent": "failed"}).content.decode()
    assert f'href="/partners/{partner.code}/customers.csv?consent=failed"' in detail


def test_no_export_carries_a_token_or_a_secret(viewer, settings) -> None:  # type: ignore[no-untyped-def]
    settings.CPV_APP = AppCredential(client_id=str(uuid.uuid4()), client_secret=CANARY + "-client-secret")
    partner = active_partner_with_data("Alpha Partners", customers=2, failed=1)
    audit_record(actor=None, action="partner.token_imported", partner=partner, detail={"refresh_token": CANARY})
    client = client_for(viewer)
    token = partner.token

    texts = [
        b"".join(client.get(url).streaming_content).decode()
        for url in ("/audit.csv", "/partners.csv", f"/partners/{partner.code}/customers.csv")
    ]

    for text in texts:
        assert "CANARY" not in text
        assert token.secret_name not in text and token.fingerprint not in text


def test_an_export_of_many_rows_streams_them_a_line_at_a_time(viewer) -> None:  # type: ignore[no-untyped-def]
    partner = Partner.objects.create(name="Big Partner", contact_email="big@example.com", status="active")
    now = timezone.now()
    customers = Customer.objects.bulk_create(
        Customer(partner=partner, tenant_id=uuid.uuid4(), company_name=f"C {i:05d}", first_seen_at=now,
                 last_seen_at=now)
        for i in range(1201)
    )  # fmt: skip
    CustomerConsent.objects.bulk_create(CustomerConsent(customer=c) for c in customers)
    AuditEvent.objects.bulk_create(AuditEvent(actor_label="system", action="partner.invited") for _ in range(1201))
    client = client_for(viewer)

    for url in (f"/partners/{partner.code}/customers.csv", "/audit.csv?action=partner.invited"):
        response = client.get(url)
        assert isinstance(response, StreamingHttpResponse) and not response.has_header("Content-Length")
        chunks = iter(response.streaming_content)
        assert next(chunks).decode().startswith(("Company,", "When (UTC),"))
        rest = list(chunks)
        # One chunk per row: the response is written as it is read, never assembled whole.
        assert len(rest) == 1201
        assert all(chunk.count(b"\n") == 1 for chunk in rest)

"""GET /api/v1/partners and /api/v1/partners/{code}/customers: only what the client may see, filtered by state, a
page at a time by an opaque cursor that stays stable while rows are added and removed."""

from __future__ import annotations

import uuid

import pytest
from django.utils import timezone

from customers.coverage import coverage_recount
from customers.models import CustomerConsent
from partners.models import Customer, Partner
from tests.api.helpers import api_client, caller

pytestmark = pytest.mark.django_db


def _partner(name: str, **fields: object) -> Partner:
    return Partner.objects.create(
        name=name, contact_email=f"{name.lower()}@example.com", tenant_id=uuid.uuid4(), **fields
    )


def _customer(partner: Partner, name: str, **consent: object) -> Customer:
    now = timezone.now()
    customer = Customer.objects.create(
        partner=partner, tenant_id=uuid.uuid4(), company_name=name, first_seen_at=now, last_seen_at=now
    )
    if consent:
        CustomerConsent.objects.create(customer=customer, **consent)
    return customer


def _walk(http, url: str, cursor: str | None = None, **query: str) -> list[dict]:  # type: ignore[no-untyped-def]
    items = []
    while True:
        response = http.get(url, {"limit": 2, **query, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.content
        body = response.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


def test_partners_shows_only_those_the_client_may_see_with_health_mfa_and_coverage() -> None:
    seen = _partner("Contoso", status=Partner.Status.ACTIVE, mfa_compliant=False)
    _partner("Hidden", status=Partner.Status.ACTIVE)
    _customer(seen, "A", status=CustomerConsent.Status.APPLIED)
    _customer(seen, "B", status=CustomerConsent.Status.FAILED)
    coverage_recount(partner_ids=[seen.pk])
    http = caller(api_client(partners=[seen]).key)

    body = http.get("/api/v1/partners").json()
    assert [item["code"] for item in body["items"]] == [str(seen.code)]
    item = body["items"][0]
    assert item["status"] == "active"
    assert item["token_health"] == "none"
    assert item["mfa_compliant"] is False
    assert item["coverage"] == {"customers": 2, "consented": 1, "failed": 1}
    assert body["next_cursor"] is None


def test_partners_filter_by_state_and_page_stably() -> None:
    partners = [_partner(f"P{i}", status=Partner.Status.ACTIVE) for i in range(5)]
    _partner("Invited")
    http = caller(api_client().key)

    first = http.get("/api/v1/partners", {"state": "active", "limit": 2}).json()
    # Rows added or removed meanwhile move no row of a later page to an earlier one, and none is seen twice.
    Partner.objects.filter(pk=partners[0].pk).delete()
    _partner("Late", status=Partner.Status.ACTIVE)
    rest = _walk(http, "/api/v1/partners", first["next_cursor"], state="active")
    names = [i["name"] for i in first["items"]] + [i["name"] for i in rest]
    assert names == ["P0", "P1", "P2", "P3", "P4", "Late"]
    assert all(i["status"] == "active" for i in rest)


def test_a_bad_filter_or_cursor_is_a_422_problem() -> None:
    http = caller(api_client().key)
    for query in ({"state": "happy"}, {"cursor": "not-ours"}, {"limit": 0}, {"limit": 10_000}, {"stat": "active"}):
        response = http.get("/api/v1/partners", query)
        assert response.status_code == 422, query
        assert response["Content-Type"] == "application/problem+json"


def test_customers_are_filtered_by_state_and_paged() -> None:
    partner = _partner("Contoso", status=Partner.Status.ACTIVE)
    for index in range(3):
        _customer(
            partner,
            f"Applied {index}",
            status=CustomerConsent.Status.APPLIED,
            proof=CustomerConsent.Proof.VERIFIED,
            access=CustomerConsent.Access.OK,
        )
    _customer(partner, "Held back", access=CustomerConsent.Access.NO_RELATIONSHIP)
    http = caller(api_client().key)
    url = f"/api/v1/partners/{partner.code}/customers"

    everyone = _walk(http, url)
    assert [c["company_name"] for c in everyone] == ["Applied 0", "Applied 1", "Applied 2", "Held back"]
    held = http.get(url, {"state": "without_access"}).json()["items"]
    assert [(c["company_name"], c["gdap"], c["consent"]) for c in held] == [("Held back", "no_relationship", "pending")]
    verified = http.get(url, {"state": "verified"}).json()["items"]
    assert {c["verification"] for c in verified} == {"verified"} and len(verified) == 3


def test_customers_of_a_partner_the_client_may_not_see_are_a_404() -> None:
    partner = _partner("Contoso")
    other = _partner("Other")
    http = caller(api_client(partners=[other]).key)
    response = http.get(f"/api/v1/partners/{partner.code}/customers")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"

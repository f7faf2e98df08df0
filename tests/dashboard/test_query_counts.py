"""The list, the overview and a partner's page issue as many queries with many partners and customers as with a
few: counts are aggregates, lists are bounded and related rows are joined or prefetched."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from consent.models import ConsentFlow, ConsentFlowEvent
from dashboard import operations
from partners.models import Partner
from tests.factories import active_partner_with_data, client_for
from tokens.models import TokenEvent

pytestmark = pytest.mark.django_db

# Measured: session + user + permissions, then the page's own reads (the overview and a partner's page each read
# their customers without GDAP access and by what their tenants showed in one query per count; a partner's page
# also its emails sent, its operations and its scheduled ApplicationConsent's lane; the list reads a page's ids,
# then its rows; the overview ranks who needs attention a rank at a time, at most six queries, fewer once the worst
# fill it, then reads their rows twice: for the reasons, kept with the trends, and as they are now, for the page).
MAX_QUERIES = {"overview": 21, "list": 8, "detail": 20, "audit": 8}


def populate(partners: int, customers: int) -> Partner:
    now = timezone.now()
    first = None
    for i in range(partners):
        partner = active_partner_with_data(
            f"Partner {i:04d}", customers=customers, failed=max(1, customers // 3), age_days=i % 95
        )
        flow = ConsentFlow.objects.create(partner=partner, expires_at=now, status=ConsentFlow.Status.VAULTED)
        ConsentFlowEvent.objects.bulk_create(
            ConsentFlowEvent(flow=flow, status=s) for s in ("created", "redirected", "verified", "vaulted")
        )
        TokenEvent.objects.create(partner=partner, kind=TokenEvent.Kind.RENEWED, message="renewed")
        TokenEvent.objects.create(partner=partner, kind=TokenEvent.Kind.RETRYING, message="429")
        first = first or partner
    Partner.objects.bulk_create(
        Partner(name=f"Invited {i:04d}", contact_email=f"i{i}@example.com") for i in range(partners)
    )
    assert first is not None
    operations.operation_start(actor=None, partner=first, kind=operations.APPLY_FAILED)
    operations.operation_start(actor=None, partner=first, kind=operations.RENEW)
    return first


def count(client: Any, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    return len(queries)


@pytest.mark.parametrize("page", ["overview", "list", "detail", "audit"])
def test_the_number_of_queries_does_not_grow_with_partners_or_customers(
    page, viewer, django_assert_max_num_queries
) -> None:  # type: ignore[no-untyped-def]
    client = client_for(viewer)
    # The overview counting afresh (`fresh`): with its trends from the cache it issues fewer queries still.
    urls = {
        "overview": "/?days=30&fresh=1",
        "list": "/partners/?sort=-renewed",
        "detail": "/partners/{code}/",
        "audit": "/audit/",
    }

    small = populate(3, 4)
    few = count(client, urls[page].format(code=small.code))
    big = populate(70, 40)  # 73 active partners, 2,812 customers, 143 partners in all
    with django_assert_max_num_queries(MAX_QUERIES[page]):
        client.get(urls[page].format(code=big.code))
    many = count(client, urls[page].format(code=big.code))

    # The overview's ranking stops once the worst partners fill it: with more partners, it may take fewer queries.
    assert many == few or (page == "overview" and many < few), f"{page}: {few} queries with a few, {many} with many"


def test_the_list_filters_and_sorts_in_the_database(viewer) -> None:  # type: ignore[no-untyped-def]
    client = client_for(viewer)
    populate(6, 2)
    old = Partner.objects.get(name="Partner 0005")
    old.token.last_renewed_at = timezone.now() - timedelta(days=80)
    old.token.save()

    due = client.get("/partners/?health=due").content.decode()
    by_tenant = client.get(f"/partners/?q={str(old.tenant_id)[:8]}").content.decode()
    by_domain = client.get("/partners/?q=partner0003.example").content.decode()
    invited = client.get("/partners/?status=invited&sort=-name").content.decode()

    assert "Partner 0005" in due and "Partner 0001" not in due
    assert "Partner 0005" in by_tenant and "Partner 0004" not in by_tenant
    assert "Partner 0003" in by_domain and "Partner 0002" not in by_domain
    assert invited.index("Invited 0005") < invited.index("Invited 0000") and "Partner 0001" not in invited

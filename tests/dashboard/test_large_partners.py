"""Pages that stay cheap at any size: a partner's counts by state reused for a minute beyond a few thousand
customers (and the page says as of when), and the partner list's late pages found by their ids first."""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from customers import selectors
from customers.models import CustomerConsent
from dashboard.paging import IdsFirstPaginator
from dashboard.selectors import partner_directory
from partners.models import Partner
from tests.factories import active_partner_with_data, client_for, portal_client

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    cache.clear()


def drift(partner: Partner, n: int) -> None:
    ids = CustomerConsent.objects.filter(customer__partner=partner, status=CustomerConsent.Status.APPLIED)
    ids = list(ids.values_list("pk", flat=True)[:n])
    CustomerConsent.objects.filter(pk__in=ids).update(proof=CustomerConsent.Proof.DRIFTED)


def drifted_tab(response) -> int:  # type: ignore[no-untyped-def]
    found = re.search(r'id="customers-drifted">Drifted \((\d+)\)', response.content.decode())
    assert found, "the drifted tab is missing"
    return int(found.group(1))


def test_a_small_partners_counts_are_live(viewer, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner_with_data("Small Partner", customers=6, failed=1)
    client = client_for(viewer)
    url = f"/partners/{partner.code}/"

    assert drifted_tab(client.get(url)) == 0
    drift(partner, 2)
    response = client.get(url)

    assert drifted_tab(response) == 2
    assert b'id="states-as-of"' not in response.content


def test_a_big_partners_counts_are_reused_for_a_minute_and_say_as_of_when(viewer, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(selectors, "STATE_COUNTS_LIVE_UP_TO", 5)
    partner = active_partner_with_data("Big Partner", customers=8, failed=1)
    client = client_for(viewer)
    url = f"/partners/{partner.code}/"

    first = client.get(url)
    drift(partner, 3)
    with CaptureQueriesContext(connection) as reused_queries:
        second = client.get(url)

    # Counted by the first view; the second reuses that count and says so, without counting the customers again.
    assert b'id="states-as-of"' not in first.content
    assert drifted_tab(second) == 0 and b'id="states-as-of"' in second.content
    assert not any(
        "consent_customerconsent" in q["sql"] and "COUNT" in q["sql"] for q in reused_queries.captured_queries
    )
    # Within a minute, or at once once the cached count is gone.
    cache.clear()
    assert drifted_tab(client.get(url)) == 3


def test_a_count_in_the_cache_that_does_not_read_is_counted_again(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(selectors, "STATE_COUNTS_LIVE_UP_TO", 1)
    partner = active_partner_with_data("Big Partner", customers=4, failed=0)
    drift(partner, 1)
    cache.set(selectors._state_counts_key(partner.pk), {"proved": {"verified": "x"}}, 60)

    counted = selectors.partner_state_counts(partner, customers=4)

    assert counted.proved["drifted"] == 1 and not counted.reused
    again = selectors.partner_state_counts(partner, customers=4)
    assert again.reused and again.proved == counted.proved and isinstance(again.counted_at, datetime)


def test_the_portal_reads_the_same_counts(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner_with_data("Portal Partner", customers=5, failed=0)
    drift(partner, 2)

    response = portal_client(partner).get("/portal/")

    assert "2 with permissions missing" in response.content.decode()


def test_the_list_finds_each_page_by_ids_first_in_order_with_its_annotations(viewer) -> None:  # type: ignore[no-untyped-def]
    Partner.objects.bulk_create(Partner(name=f"Partner {i:03d}", contact_email=f"p{i}@example.com") for i in range(23))
    pages = IdsFirstPaginator(partner_directory(sort="-name"), 10)

    seen = [p.name for n in pages.page_range for p in pages.page(n).object_list]
    assert seen == [f"Partner {i:03d}" for i in reversed(range(23))]
    # Rows read whole carry the list's annotation; the page's last rows are not left alone as orphans.
    assert all(p.health for p in pages.page(3).object_list)
    assert len(IdsFirstPaginator(partner_directory(), 10, orphans=3).page(2).object_list) == 13
    # The page a person asks for by number, late or past the end, as the list shows it.
    response = client_for(viewer).get("/partners/", {"page": 99})
    assert response.status_code == 200 and b"Partner 022" in response.content

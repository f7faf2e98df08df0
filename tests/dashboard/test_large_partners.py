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


def test_a_filtered_list_is_counted_up_to_a_bound_and_its_pages_say_whether_another_follows(
    viewer, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    Partner.objects.bulk_create(Partner(name=f"Partner {i:03d}", contact_email=f"p{i}@example.com") for i in range(23))
    pages = IdsFirstPaginator(partner_directory(search="Partner"), 10, count_up_to=15)

    assert pages.count == 16 and not pages.counted_all
    seen, number = [], 1
    while True:
        page = pages.page(number)
        seen += [p.name for p in page.object_list]
        if not page.has_next():
            break
        number = page.next_page_number()
    assert number == 3 and seen == [f"Partner {i:03d}" for i in range(23)]
    assert pages.get_page(4).number == 1 and pages.get_page("x").number == 1  # past the end, or not a number
    counted = IdsFirstPaginator(partner_directory(search="Partner"), 10, count_up_to=23)
    assert counted.count == 23 and counted.counted_all and counted.num_pages == 3

    monkeypatch.setattr("dashboard.views.FILTERED_COUNT_UP_TO", 15)
    monkeypatch.setattr("dashboard.views.PAGE_SIZE", 10)
    client = client_for(viewer)
    filtered = client.get("/partners/", {"q": "Partner", "page": 3}).content.decode()
    assert "More than 15 partners match" in filtered and "Partner 022" in filtered
    assert "Page 3<" in filtered and 'id="next"' not in filtered and 'id="previous"' in filtered
    everyone = client.get("/partners/").content.decode()  # not filtered: counted to the end
    assert "23 partners" in everyone and "Page 1 of 3" in everyone


def test_the_proof_totals_count_present_customers_only() -> None:
    first = active_partner_with_data("First Partner", customers=6, failed=1)
    second = active_partner_with_data("Second Partner", customers=4, failed=0)
    drift(first, 2)
    drift(second, 1)
    # A removed customer's consent stays, and is no longer counted.
    gone = CustomerConsent.objects.filter(customer__partner=first, proof=CustomerConsent.Proof.DRIFTED).first()
    assert gone is not None
    gone.customer.removed_at = gone.updated_at
    gone.customer.save(update_fields=["removed_at"])

    totals = selectors.proof_totals()

    per_partner = selectors.proof_counts()
    assert totals == {state: sum(counts[state] for counts in per_partner.values()) for state in selectors.PROOF_FILTERS}
    assert totals["drifted"] == 2 and totals["applied_unverified"] == 5 + 3 - 2

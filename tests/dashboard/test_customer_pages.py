"""A partner's customers a page at a time from a sort key (keyset pagination), on the staff page and the portal:
every customer exactly once, in order, with ties, in every state; stable links; any bad cursor gives the first
page."""

from __future__ import annotations

import base64
import html
import json
import re
import uuid
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from customers import selectors
from customers.coverage import coverage_recount
from customers.models import CustomerConsent
from customers.selectors import CUSTOMER_PAGE_SIZE, coverage_for, customer_cursor, customer_page, customers_of
from partners.models import Customer, Partner
from tests.factories import active_partner_with_data, client_for, portal_client

pytestmark = pytest.mark.django_db

SIZE = CUSTOMER_PAGE_SIZE
STATES = ["", CustomerConsent.Status.APPLIED, CustomerConsent.Status.FAILED, CustomerConsent.Status.PENDING]
# Names that sort together (ties broken by id), an empty one, accents, quotes and case.
NAMES = ["Contoso"] * 31 + [""] * 4 + ["Ærø Data", "adatum", "Adatum", 'Fabrikam "Cloud"', "Zeta & Co", "Ωmega"]


def partner_with_customers(count: int = 83) -> Partner:
    """An active partner with `count` present customers in every ApplicationConsent state (applied, failed,
    pending, no row yet) and names that tie, plus removed customers that no page may show."""
    partner = active_partner_with_data("Tailspin Partners", customers=0)
    now = timezone.now()
    customers = Customer.objects.bulk_create(
        Customer(
            partner=partner,
            tenant_id=uuid.uuid4(),
            company_name=NAMES[i % len(NAMES)],
            first_seen_at=now,
            last_seen_at=now,
            removed_at=now if i % 9 == 4 else None,
        )
        for i in range(count + count // 8 + 1)
    )
    states = [CustomerConsent.Status.APPLIED, CustomerConsent.Status.FAILED, CustomerConsent.Status.PENDING, None]
    CustomerConsent.objects.bulk_create(
        CustomerConsent(customer=c, status=states[i % 4]) for i, c in enumerate(customers) if states[i % 4]
    )
    coverage_recount(partner_ids=[partner.pk])
    return partner


def walk(partner: Partner, *, state: str = "") -> list[list[int]]:
    pages = []
    page = customer_page(partner, state=state)
    while True:
        pages.append([c.pk for c in page.customers])
        if not page.next_cursor:
            return pages
        page = customer_page(partner, state=state, after=page.next_cursor)


def expected(partner: Partner, state: str = "") -> list[int]:
    """The order, computed in Python: (company name, id) under the database's collation, so sort by position."""
    return [c.pk for c in customers_of(partner, state=state)]


@pytest.mark.parametrize("state", STATES)
def test_following_next_visits_every_customer_once_in_order(state: str) -> None:
    partner = partner_with_customers()
    pages = walk(partner, state=state)
    seen = [pk for page in pages for pk in page]

    assert seen == expected(partner, state)
    assert len(seen) == len(set(seen)) == coverage_for([partner.pk])[partner.pk].in_state(state)
    assert all(len(page) == SIZE for page in pages[:-1]) and 0 < len(pages[-1]) <= SIZE
    removed = set(Customer.objects.filter(partner=partner, removed_at__isnull=False).values_list("pk", flat=True))
    assert removed and not removed & set(seen)


def test_ties_on_the_name_are_ordered_by_id_across_a_page_boundary() -> None:
    partner = partner_with_customers()
    ordered = list(customers_of(partner))
    # The boundary of the first page falls inside the run of "Contoso" (or of another tie).
    boundary = ordered[SIZE - 1 : SIZE + 1]
    assert boundary[0].company_name == boundary[1].company_name

    second = customer_page(partner, after=customer_page(partner).next_cursor)

    assert second.customers[0].pk == boundary[1].pk


@pytest.mark.parametrize("state", STATES)
def test_following_previous_from_the_last_page_comes_back_to_the_first(state: str) -> None:
    partner = partner_with_customers()
    first = customer_page(partner, state=state)
    page = first
    while page.next_cursor:
        page = customer_page(partner, state=state, after=page.next_cursor)
    seen: set[int] = set()
    while page.previous_cursor:
        seen |= {c.pk for c in page.customers}
        page = customer_page(partner, state=state, before=page.previous_cursor)
        assert len(page.customers) == SIZE

    assert [c.pk for c in page.customers] == [c.pk for c in first.customers]
    assert seen | {c.pk for c in page.customers} == set(expected(partner, state))


def test_a_cursor_keeps_its_place_when_customers_come_and_go() -> None:
    partner = partner_with_customers()
    first = customer_page(partner)
    last_shown = first.customers[-1]
    after = expected(partner)[SIZE:]
    # Customers that sort before the cursor arrive, and the customer the cursor names leaves.
    now = timezone.now()
    Customer.objects.bulk_create(
        Customer(partner=partner, tenant_id=uuid.uuid4(), company_name="", first_seen_at=now, last_seen_at=now)
        for _ in range(3)
    )
    Customer.objects.filter(pk=last_shown.pk).update(removed_at=now)

    second = customer_page(partner, after=first.next_cursor)

    assert [c.pk for c in second.customers] == after[:SIZE]


def cursor_of(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


BAD_CURSORS = [
    "not-a-cursor",
    "%%%",
    "=" * 5,
    "x" * 5000,
    base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    cursor_of({"name": "Contoso", "id": 1}),
    cursor_of(["Contoso"]),
    cursor_of(["Contoso", 1, 2]),
    cursor_of([7, 1]),
    cursor_of(["Contoso", "1"]),
    cursor_of(["Contoso", True]),
    cursor_of(["Contoso", 1.5]),
    cursor_of(["Contoso", -1]),
    cursor_of(["Contoso", 2**63]),
    cursor_of(["Contoso", 10**40]),
    cursor_of(["Con\x00toso", 1]),
    base64.urlsafe_b64encode(b'["\\ud800", 1]').decode(),
    cursor_of(["C" * 301, 1]),
]


@pytest.mark.parametrize("param", ["cafter", "cbefore"])
def test_a_bad_cursor_shows_the_first_page_never_an_error(viewer, param: str) -> None:  # type: ignore[no-untyped-def]
    partner = partner_with_customers()
    client = client_for(viewer)
    first = shown(client.get(f"/partners/{partner.code}/"))

    for bad in [*BAD_CURSORS, customer_page(partner).next_cursor + "garbage"]:
        response = client.get(f"/partners/{partner.code}/", {param: bad})
        assert response.status_code == 200, bad
        assert shown(response) == first, bad
    both = customer_page(partner).next_cursor
    assert shown(client.get(f"/partners/{partner.code}/", {"cafter": both, "cbefore": both})) == first


def test_a_cursor_past_the_end_or_before_the_start_shows_the_first_page() -> None:
    partner = partner_with_customers()
    first = [c.pk for c in customer_page(partner).customers]
    end, start = cursor_of(["\uffff" * 300, 2**62]), cursor_of(["", 1])

    past_the_end = customer_page(partner, after=end)
    before_the_start = customer_page(partner, before=start)
    last = customer_page(partner, before=end)

    assert [c.pk for c in past_the_end.customers] == [c.pk for c in before_the_start.customers] == first
    assert not past_the_end.previous_cursor and not before_the_start.previous_cursor
    assert [c.pk for c in last.customers] == expected(partner)[-SIZE:] and last.previous_cursor


def shown(response: Any) -> list[str]:
    """The tenant id prefixes of the customers a page shows, in order."""
    return re.findall(r'<code title="[0-9a-f-]+">([0-9a-f]{8})…</code>', response.content.decode())


def next_link(response: Any, link: str = "customers-next") -> str | None:
    found = re.search(rf'<a href="([^"]*)" id="{link}">', response.content.decode())
    return html.unescape(found.group(1)) if found else None


def test_the_staff_page_pages_through_a_filter_with_its_links_and_a_fixed_number_of_queries(viewer) -> None:  # type: ignore[no-untyped-def]
    partner = partner_with_customers(200)
    client = client_for(viewer)
    url = f"/partners/{partner.code}/"
    response = client.get(url, {"consent": "pending"})
    total = coverage_for([partner.pk])[partner.pk].pending
    assert total > 3 * SIZE and f"{total} customers in this state" in response.content.decode()
    seen, counts = shown(response), []
    while (link := next_link(response)) is not None:
        assert "consent=pending" in link and "cbefore" not in link
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url + link)
        counts.append(len(queries))
        seen += shown(response)
    back = client.get(url + next_link(response, "customers-previous"))  # type: ignore[operator]

    pending = [str(c.tenant_id)[:8] for c in customers_of(partner, state="pending")]
    assert seen == pending and len(counts) >= 3 and len(set(counts)) == 1
    assert shown(back) == pending[(len(pending) - 1) // SIZE * SIZE - SIZE :][:SIZE]
    assert next_link(back, "customers-first") == "?consent=pending"


def test_the_portal_pages_through_the_partners_own_customers() -> None:
    partner = partner_with_customers()
    client = portal_client(partner)
    response = client.get("/portal/")
    seen = re.findall(r"<tr><td>([^<]*)</td>", response.content.decode())
    while found := re.search(r'<a href="(\?after=[^"]*)">Next</a>', response.content.decode()):
        response = client.get("/portal/" + html.unescape(found.group(1)))
        assert response.status_code == 200
        seen += re.findall(r"<tr><td>([^<]*)</td>", response.content.decode())

    assert len(seen) == len(expected(partner))
    assert client.get("/portal/", {"after": "bad"}).status_code == 200


@pytest.mark.parametrize("name", ["\x01" * 300, "😀" * 300, '"\\' * 150, ""])
def test_a_cursor_holds_any_name_a_customer_can_have(name: str) -> None:
    customer = Customer(pk=2**63 - 1, company_name=name)

    assert selectors._cursor_key(customer_cursor(customer)) == (name, 2**63 - 1)

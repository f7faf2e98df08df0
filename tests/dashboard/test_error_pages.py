"""The error pages look like the rest of the product (its stylesheet and icon) and say what to do, for partners
and staff alike; the 500 page renders with no request context at all."""

from __future__ import annotations

import pytest
from django.test import RequestFactory
from django.views.defaults import server_error

from tests.conftest import ROOT

pytestmark = pytest.mark.django_db


def test_a_missing_page_is_a_styled_404(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/consent/i/not-a-link/nothing-here")

    assert response.status_code == 404
    page = response.content.decode()
    assert "Page not found" in page and "css/site.css" in page and "favicon.svg" in page
    # A partner's browser is shown nothing of the staff pages.
    assert "/audit/" not in page and "/partners/" not in page


def test_a_server_error_is_a_styled_500_even_without_a_request_context() -> None:
    response = server_error(RequestFactory().get("/"))

    page = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong on our side" in page and "css/site.css" in page


def test_every_page_layout_names_the_icon_that_exists() -> None:
    assert (ROOT / "static" / "favicon.svg").is_file()
    for layout in ("base.html", "consent/base.html", "portal/base.html"):
        assert "favicon.svg" in (ROOT / "templates" / layout).read_text(), layout


def test_a_missing_page_for_staff_is_in_the_staff_layout(viewer) -> None:  # type: ignore[no-untyped-def]
    from tests.factories import client_for

    response = client_for(viewer).get("/partners/00000000-0000-0000-0000-000000000000/")

    page = response.content.decode()
    assert response.status_code == 404 and "Page not found" in page
    assert 'id="nav-partners"' in page and 'id="to-overview"' in page and "consent link" not in page

"""The partner portal's consent card states one truth: never "needs consent" beside "works" or "keeps working"."""

from __future__ import annotations

import pytest

from partners.models import Partner
from tests.factories import active_partner_with_data, portal_client
from tokens.models import PartnerToken

pytestmark = pytest.mark.django_db


def card(partner: Partner) -> str:
    page = portal_client(partner).get("/portal/").content.decode()
    start = page.index('id="consent-status"')
    return page[start : page.index("</section>", start)]


def test_an_active_partner_with_a_working_token_is_told_it_works() -> None:
    partner = active_partner_with_data("Contoso")

    text = card(partner)

    assert "result-ok" in page_class(partner) and "Your consent works" in text and "keeps working" in text


def page_class(partner: Partner) -> str:
    page = portal_client(partner).get("/portal/").content.decode()
    return page[page.index('<section class="card result-') :][:60]


@pytest.mark.parametrize("status", [Partner.Status.RECONSENT_NEEDED, Partner.Status.DEACTIVATED])
def test_a_partner_that_needs_consent_or_is_switched_off_is_never_told_it_works(status) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner_with_data("Contoso")  # its token row looks healthy
    Partner.objects.filter(pk=partner.pk).update(status=status)

    text = card(partner)

    assert "result-bad" in page_class(partner)
    assert "works" not in text.replace("no longer works", "") and "keeps working" not in text
    assert "renewed automatically" not in text


def test_an_active_partner_whose_token_was_revoked_is_told_to_consent_again() -> None:
    from django.utils import timezone

    partner = active_partner_with_data("Contoso")
    PartnerToken.objects.filter(partner=partner).update(revoked_at=timezone.now())

    text = card(partner)

    assert "no longer works" in text and "keeps working" not in text and "renewed automatically" not in text

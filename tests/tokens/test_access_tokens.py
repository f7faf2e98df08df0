"""Access tokens handed out from the in-process cache stop at once for a partner revoked or deactivated in
another process (whose cache this process never sees cleared)."""

from __future__ import annotations

import pytest

from partners.models import Partner
from tests.factories import active_partner
from tokens.access_tokens import PARTNER_CENTER, TokenUnavailable, access_token_get

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("status", [Partner.Status.RECONSENT_NEEDED, Partner.Status.DEACTIVATED])
def test_a_cached_access_token_is_not_handed_out_once_the_partner_is_no_longer_active(cpv_sim, status) -> None:  # type: ignore[no-untyped-def]
    partner = active_partner(cpv_sim)
    cached = access_token_get(partner=partner, audience=PARTNER_CENTER)
    assert access_token_get(partner=partner, audience=PARTNER_CENTER) == cached

    # What a revocation or deactivation by staff in the web process does to the row; this worker's cache stays.
    Partner.objects.filter(pk=partner.pk).update(status=status)

    with pytest.raises(TokenUnavailable, match="not active"):
        access_token_get(partner=partner, audience=PARTNER_CENTER)
    Partner.objects.filter(pk=partner.pk).update(status=Partner.Status.ACTIVE)
    # Forgotten, not merely hidden: the next hand-out redeems afresh.
    assert access_token_get(partner=partner, audience=PARTNER_CENTER).token != cached.token

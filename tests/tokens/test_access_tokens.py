"""Access tokens handed out from the in-process cache stop at once for a partner revoked or deactivated in
another process (whose cache this process never sees cleared); one with no rotation to keep never waits for the
partner's row."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection

from microsoft.identity import ReconsentRequired
from partners.models import AuditEvent, Partner
from tests.factories import active_partner
from tokens.access_tokens import GRAPH, PARTNER_CENTER, TokenUnavailable, access_token_get
from tokens.models import PartnerToken, TokenEvent

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


def partner_with_a_consented_customer(cpv_sim) -> tuple[Partner, str]:  # type: ignore[no-untyped-def]
    """An active partner and the tenant of one of its customers, where the app is consented (ApplicationConsent)."""
    partner = active_partner(cpv_sim)
    tenant = cpv_sim.control.world()["partners"][0]["customers"][0]["tenant_id"]
    cpv_sim.control.add_consent(tenant, application_id=cpv_sim.env["CPV_CLIENT_ID"])
    return partner, tenant


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_token_in_a_customer_tenant_is_redeemed_while_another_process_holds_the_pointer(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    # A verification takes a token in each customer's tenant: with no rotation to keep (the token is not due), it
    # does not wait for the partner's row, which a renewal or another worker's redemption may hold.
    partner, tenant = partner_with_a_consented_customer(cpv_sim)
    pointer = PartnerToken.objects.get(partner=partner)
    generation = pointer.generation
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"], dbname=db["NAME"], autocommit=False
    ) as other:
        other.execute("SELECT id FROM consent_partnertoken WHERE id = %s FOR UPDATE", [pointer.pk])
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '3s'")

        token = access_token_get(partner=partner, audience=GRAPH, tenant=tenant)

        other.rollback()
    assert token.tenant == tenant.lower() and token.token
    pointer.refresh_from_db()
    assert pointer.generation == generation
    assert not TokenEvent.objects.filter(partner=partner, kind=TokenEvent.Kind.ROTATED).exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_refusal_met_without_the_lock_is_recorded_once_without_asking_entra_again(cpv_sim) -> None:  # type: ignore[no-untyped-def]
    # A customer-tenant token is redeemed without the partner's row lock; Entra's refusal (the partner's token was
    # revoked, AADSTS50173, once) marks the partner as the locked path would, and Entra is not asked a second time,
    # which would have been answered.
    partner, tenant = partner_with_a_consented_customer(cpv_sim)
    cpv_sim.control.inject_entra_error(50173, grant_type="refresh_token", times=1)

    with pytest.raises(ReconsentRequired):
        access_token_get(partner=partner, audience=GRAPH, tenant=tenant)

    partner.refresh_from_db()
    assert partner.status == Partner.Status.RECONSENT_NEEDED
    assert AuditEvent.objects.filter(partner=partner, action="partner.reconsent_needed").count() == 1

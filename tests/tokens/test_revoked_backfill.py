"""A token revoked before the revocation was kept on its row gets it, once, from its audit row (the migration)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from tests.migrations import migrate, migrated_to

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

BEFORE = [("tokens", "0004_partnertoken_revoked_at")]
AFTER = [("tokens", "0005_partnertoken_revoked_at_backfill")]


def test_a_token_revoked_after_it_was_renewed_is_marked_revoked_and_a_newer_one_is_not() -> None:
    with migrated_to(BEFORE) as apps:
        Partner = apps.get_model("partners", "Partner")
        PartnerToken = apps.get_model("tokens", "PartnerToken")
        AuditEvent = apps.get_model("partners", "AuditEvent")
        from django.utils import timezone

        now = timezone.now()
        revoked_at = {}
        for name, renewed in (("revoked", now - timedelta(days=3)), ("consented again", now + timedelta(days=1))):
            partner = Partner.objects.create(name=name, contact_email="a@b.example", tenant_id=uuid.uuid4())
            PartnerToken.objects.create(
                partner=partner, secret_name=f"s-{partner.code}", current_version="v1", last_renewed_at=renewed
            )
            event = AuditEvent.objects.create(partner=partner, action="partner.token_revoked", actor_label="ops")
            revoked_at[name] = event.created_at

        apps = migrate(AFTER)

        revoked = dict(apps.get_model("tokens", "PartnerToken").objects.values_list("partner__name", "revoked_at"))
        assert revoked == {"revoked": revoked_at["revoked"], "consented again": None}

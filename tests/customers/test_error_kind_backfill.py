"""Failures recorded before the error kind was stored get, once, the kind their message says (the migration)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from tests.migrations import migrate, migrated_to

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
BEFORE = [("customers", "0002_customerconsent_error_kind")]
AFTER = [("customers", "0003_customerconsent_error_kind_backfill")]


def test_old_failures_get_the_kind_their_message_says() -> None:
    with migrated_to(BEFORE) as apps:
        partner = apps.get_model("partners", "Partner").objects.create(
            name="Old", contact_email="old@example.com", tenant_id=uuid.uuid4(), status="active"
        )
        messages = {
            "ApplicationConsent in x: Partner Center answered 403 to POST /v1/customers/x": "forbidden",
            "ApplicationConsent in x: Partner Center answered 429 to POST /v1/customers/x": "throttled",
            "no access token: The partner's consent is no longer valid: invalid_grant (AADSTS700082)": (
                "reconsent_required"
            ),
            "Not applied: the partner is re-consent needed": "partner_inactive",
            "something nobody wrote a pattern for": "other",
            "": "",
        }
        Customer = apps.get_model("partners", "Customer")
        CustomerConsent = apps.get_model("customers", "CustomerConsent")
        for message in messages:
            customer = Customer.objects.create(
                partner=partner, tenant_id=uuid.uuid4(), first_seen_at=NOW, last_seen_at=NOW
            )
            CustomerConsent.objects.create(customer=customer, status="failed" if message else "applied",
                                           last_error=message)  # fmt: skip

        apps = migrate(AFTER)

        kinds = dict(apps.get_model("customers", "CustomerConsent").objects.values_list("last_error", "error_kind"))
        assert kinds == messages

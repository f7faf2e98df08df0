"""A database migrated with the old layout (every model in the consent app) keeps every row, and the admin
permissions hanging on the moved models, when it migrates to the layout with the tokens and customers apps."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection

from tests.migrations import latest, migrate

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

# The old layout: the consent app before its models moved out, and the apps they moved to not yet there.
OLD_LAYOUT = [("consent", "0007_throttlewindow_to_cpv"), ("tokens", None), ("customers", None)]
MOVED = {
    "tokens": ["partnertoken", "tokenevent", "vaultsecretversion"],
    "customers": ["customerconsent", "partnercoverage"],
}
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _old_rows(apps: Any) -> dict[str, Any]:
    """One row of every model that moves, and of those they hang on, written with the old layout's models."""
    partner = apps.get_model("partners", "Partner").objects.create(
        name="Old layout", contact_email="old@example.com", tenant_id=uuid.uuid4(), status="active"
    )
    customer = apps.get_model("partners", "Customer").objects.create(
        partner=partner, tenant_id=uuid.uuid4(), company_name="Customer", first_seen_at=NOW, last_seen_at=NOW
    )
    flow = apps.get_model("consent", "ConsentFlow").objects.create(
        partner=partner, status="vaulted", expires_at=NOW, tenant_id=partner.tenant_id, user_name="admin@old"
    )
    apps.get_model("consent", "ConsentFlowEvent").objects.create(flow=flow, status="vaulted", message="Consented")
    token = apps.get_model("consent", "PartnerToken").objects.create(
        partner=partner,
        secret_name="partner-old-refresh-token",
        current_version="v2",
        previous_version="v1",
        version_count=2,
        fingerprint="f" * 64,
        generation=2,
        consent_flow=flow,
        obtained_at=NOW,
        last_renewed_at=NOW,
    )
    event = apps.get_model("consent", "TokenEvent").objects.create(partner=partner, kind="renewed", message="Renewed")
    secret = apps.get_model("consent", "VaultSecretVersion").objects.create(
        name="partner-old-refresh-token",
        version="v2",
        key_id="0123456789abcdef",
        nonce=b"\x00" * 12,
        ciphertext=b"sealed",
        created_at=NOW,
        updated_at=NOW,
    )
    consent = apps.get_model("consent", "CustomerConsent").objects.create(
        customer=customer, status="applied", grants={"a": 1}, applied_at=NOW, attempts=1
    )
    apps.get_model("consent", "PartnerCoverage").objects.create(partner=partner, customers=1, consented=1)
    return {"partner": partner, "flow": flow, "token": token, "event": event, "secret": secret, "consent": consent}


def test_an_old_layout_database_migrates_with_every_row_and_permission_intact() -> None:
    newest = latest()
    try:
        old_apps = migrate(OLD_LAYOUT)
        content_type = old_apps.get_model("contenttypes", "ContentType")
        permission = old_apps.get_model("auth", "Permission")
        for models in MOVED.values():
            for model in models:
                # What the old layout's post-migrate left: a content type and permissions in the consent app.
                ct, _ = content_type.objects.get_or_create(app_label="consent", model=model)
                permission.objects.get_or_create(content_type=ct, codename=f"view_{model}", defaults={"name": model})
        old_ids = {
            model: content_type.objects.get(app_label="consent", model=model).pk
            for models in MOVED.values()
            for model in models
        }
        rows = _old_rows(old_apps)

        new_apps = migrate(newest)
    finally:
        migrate(newest)

    token = new_apps.get_model("tokens", "PartnerToken").objects.get(pk=rows["token"].pk)
    assert (token.partner_id, token.current_version, token.previous_version, token.generation) == (
        rows["partner"].pk,
        "v2",
        "v1",
        2,
    )
    assert token.consent_flow_id == rows["flow"].pk
    assert new_apps.get_model("tokens", "TokenEvent").objects.get(pk=rows["event"].pk).message == "Renewed"
    secret = new_apps.get_model("tokens", "VaultSecretVersion").objects.get(pk=rows["secret"].pk)
    assert bytes(secret.ciphertext) == b"sealed"
    consent = new_apps.get_model("customers", "CustomerConsent").objects.get(pk=rows["consent"].pk)
    assert (consent.status, consent.grants, consent.attempts) == ("applied", {"a": 1}, 1)
    coverage = new_apps.get_model("customers", "PartnerCoverage").objects.get(partner_id=rows["partner"].pk)
    assert (coverage.customers, coverage.consented) == (1, 1)
    assert new_apps.get_model("consent", "ConsentFlow").objects.get(pk=rows["flow"].pk).user_name == "admin@old"
    assert new_apps.get_model("consent", "ConsentFlowEvent").objects.filter(flow_id=rows["flow"].pk).count() == 1
    # The content types moved with their models, keeping their ids (and the permissions that hang on them).
    content_type = new_apps.get_model("contenttypes", "ContentType")
    permission = new_apps.get_model("auth", "Permission")
    for app, models in MOVED.items():
        for model in models:
            moved = content_type.objects.get(app_label=app, model=model)
            assert moved.pk == old_ids[model]
            assert permission.objects.filter(content_type=moved, codename=f"view_{model}").exists()
            assert not content_type.objects.filter(app_label="consent", model=model).exists()


def test_the_moved_models_keep_their_tables() -> None:
    from customers.models import CustomerConsent, PartnerCoverage
    from tokens.models import PartnerToken, TokenEvent, VaultSecretVersion

    tables = {
        m._meta.db_table for m in (PartnerToken, TokenEvent, VaultSecretVersion, CustomerConsent, PartnerCoverage)
    }
    assert tables == {
        "consent_partnertoken",
        "consent_tokenevent",
        "consent_vaultsecretversion",
        "consent_customerconsent",
        "consent_partnercoverage",
    }
    with connection.cursor() as cursor:
        existing = set(connection.introspection.table_names(cursor))
    assert tables <= existing

"""Tokens revoked before the revocation was kept on the token row get it from their audit row, once."""

from django.db import migrations
from django.db.models import F, OuterRef, Subquery


def backfill(apps, schema_editor):  # type: ignore[no-untyped-def]
    PartnerToken = apps.get_model("tokens", "PartnerToken")
    AuditEvent = apps.get_model("partners", "AuditEvent")
    revoked = (
        AuditEvent.objects.filter(partner_id=OuterRef("partner_id"), action="partner.token_revoked")
        .order_by("-created_at")
        .values("created_at")[:1]
    )
    rows = PartnerToken.objects.annotate(revoked=Subquery(revoked)).filter(revoked__isnull=False)
    # Revoked after the token the row points at was obtained or renewed: that token is the revoked one.
    for row in rows.filter(revoked__gte=F("last_renewed_at")).only("pk"):
        PartnerToken.objects.filter(pk=row.pk).update(revoked_at=row.revoked)


class Migration(migrations.Migration):
    dependencies = [("tokens", "0004_partnertoken_revoked_at"), ("partners", "0009_permissions_consented")]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]

"""Reads shared by the staff views."""

from __future__ import annotations

from django.db.models import QuerySet

from partners.models import Partner


def partner_list() -> QuerySet[Partner]:
    return Partner.objects.only(
        "code", "name", "contact_email", "tenant_id", "cloud", "environment", "status", "created_at"
    ).order_by("name", "id")

"""Reads shared by the staff views."""

from __future__ import annotations

from django.db.models import QuerySet

from partners.models import Partner


def partner_for_staff(code: str) -> QuerySet[Partner]:
    """The one place staff views look a partner up (by its code, never its integer id)."""
    return Partner.objects.filter(code=code)


def partner_list() -> QuerySet[Partner]:
    return Partner.objects.only(
        "code", "name", "contact_email", "tenant_id", "cloud", "environment", "status", "created_at"
    ).order_by("name", "id")

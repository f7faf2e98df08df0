"""The admin shows the directory and the audit log read-only: changes go through services, which audit."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from partners.models import AuditEvent, Partner


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Partner)
class PartnerAdmin(ReadOnlyAdmin):
    list_display = ["name", "status", "cloud", "environment", "tenant_id", "created_at"]
    list_filter = ["status", "cloud", "environment"]
    search_fields = ["name", "contact_email", "default_domain", "tenant_id"]
    readonly_fields = [f.name for f in Partner._meta.fields]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor_label", "action", "partner", "target_type", "target_id"]
    list_filter = ["action"]
    list_select_related = ["partner"]
    search_fields = ["action", "actor_label", "target_id", "request_id"]
    readonly_fields = [f.name for f in AuditEvent._meta.fields]

"""The admin shows the directory and the audit log read-only (changes go through services); its own changes are
audited, and only a superuser acts on a superuser."""

from __future__ import annotations

from typing import Any, cast

from django.contrib import admin
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.http import HttpRequest
from django_otp.plugins.otp_totp.models import TOTPDevice

from partners.models import AuditEvent, Partner
from partners.services import audit_record

ADMIN_ACTIONS = {ADDITION: "admin.added", CHANGE: "admin.changed", DELETION: "admin.deleted"}


@receiver(post_save, sender=LogEntry, dispatch_uid="partners.admin_change_audited")
def admin_change_audited(sender: Any, instance: LogEntry, created: bool, **kwargs: Any) -> None:
    """Every change made in the admin lands in the audit log, with who made it and what changed."""
    if not created:
        return
    content_type: Any = instance.content_type
    audit_record(
        actor=cast("User", instance.user),
        action=ADMIN_ACTIONS.get(instance.action_flag, "admin.changed"),
        detail={
            "model": content_type.model if content_type else "",
            "object_id": str(instance.object_id or ""),
            "object": instance.object_repr,
            "change": instance.get_change_message(),
        },
    )


class StaffUserAdmin(UserAdmin):
    """Django's user admin, except that a superuser's account is changed or deleted only by a superuser."""

    def _touches_superuser(self, request: HttpRequest, obj: Any) -> bool:
        return obj is not None and obj.is_superuser and not request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not self._touches_superuser(request, obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not self._touches_superuser(request, obj) and super().has_delete_permission(request, obj)


admin.site.unregister(User)
admin.site.register(User, StaffUserAdmin)
# An authenticator app's secret is nobody's to read, in the admin or anywhere: staff set theirs up on their own
# security page, and an admin resets one from the staff page (audited).
if admin.site.is_registered(TOTPDevice):
    admin.site.unregister(TOTPDevice)


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

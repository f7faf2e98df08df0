"""The Django admin's site: the same finished sign-in as every staff page, not only a session with is_staff; one's own
password change there is audited."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.forms import AdminPasswordChangeForm
from django.contrib.auth.views import PasswordChangeView
from django.db import transaction
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse

from partners.access import SignInStep, staff_sign_in_step
from partners.services import audit_record


class AuditedPasswordChangeForm(AdminPasswordChangeForm):
    """The admin's "change my password" form: the new password and its audit row (never a password) in one
    transaction."""

    def save(self, commit: bool = True) -> Any:
        with transaction.atomic():
            user = super().save(commit=commit)
            audit_record(
                actor=user,
                action="staff.password_changed",
                target=user,
                detail={"user": user.get_username(), "own": True, "superuser": user.is_superuser},
            )
        return user


class StaffAdminSite(admin.AdminSite):
    site_header = "Control panel administration"
    site_title = "Control panel"

    def has_permission(self, request: HttpRequest) -> bool:
        """Django's check, and a finished sign-in (partners.access.staff_sign_in_step)."""
        return super().has_permission(request) and staff_sign_in_step(request) == SignInStep.DONE

    def password_change(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        """Django's own-password page, with the audited form."""
        request.current_app = self.name
        view = PasswordChangeView.as_view(
            form_class=AuditedPasswordChangeForm,
            success_url=reverse("admin:password_change_done", current_app=self.name),
            extra_context={**self.each_context(request), **(extra_context or {})},
        )
        return view(request)  # type: ignore[return-value]

"""The Django admin's site: the same finished sign-in as every staff page, not only a session with is_staff; one's own
password change there is audited."""

from __future__ import annotations

from collections.abc import Callable
from functools import update_wrapper
from typing import Any, TypeVar, cast

from django.contrib import admin
from django.contrib.admin.forms import AdminPasswordChangeForm
from django.contrib.auth.views import PasswordChangeView
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render
from django.template.response import TemplateResponse
from django.urls import reverse

from partners.access import SignInStep, role_of, staff_sign_in_step, staff_sign_in_unfinished
from partners.services import audit_record

View = TypeVar("View", bound=Callable[..., HttpResponseBase])


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

    def admin_view(self, view: View, cacheable: bool = False) -> View:
        """Django's guard, except for a signed-in account the admin is not for: Django would send it to the sign-in
        page, which sends a signed-in account back here (a loop); it gets a page that says why instead."""
        guarded = super().admin_view(view, cacheable)

        def inner(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if request.user.is_authenticated and not self.has_permission(request):
                return staff_sign_in_unfinished(request) or self.refused(request)
            return guarded(request, *args, **kwargs)

        return cast(View, update_wrapper(inner, guarded))

    def refused(self, request: HttpRequest) -> HttpResponse:
        """The admin is for the vendor's superusers (and staff given admin access): a 403 in the staff layout."""
        role = role_of(request.user)
        context = {"role_name": role.label if role else ""}
        return render(request, "registration/admin_refused.html", context, status=403)

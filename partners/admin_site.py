"""The Django admin's site: the same finished sign-in as every staff page, not only a session with is_staff."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from partners.access import SignInStep, staff_sign_in_step


class StaffAdminSite(admin.AdminSite):
    site_header = "Control panel administration"
    site_title = "Control panel"

    def has_permission(self, request: HttpRequest) -> bool:
        """Django's check, and a finished sign-in (partners.access.staff_sign_in_step)."""
        return super().has_permission(request) and staff_sign_in_step(request) == SignInStep.DONE

from __future__ import annotations

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class PartnersConfig(AppConfig):
    name = "partners"
    verbose_name = "Partners"


class StaffAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with StaffAdminSite as `admin.site`; INSTALLED_APPS names this in its place."""

    default = False  # the partners app's own config stays PartnersConfig
    default_site = "partners.admin_site.StaffAdminSite"

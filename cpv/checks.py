"""System checks of the deployment (`manage.py check --deploy`), beyond Django's own."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def staff_sign_in_check(app_configs: Any, **kwargs: Any) -> list[Warning]:
    """In production, passwords are the admins' break-glass: without Microsoft's sign-in no one else signs in."""
    if settings.CPV_MODE == "production" and not settings.CPV_STAFF_TENANT_ID:
        return [
            Warning(
                "Staff cannot sign in with Microsoft (CPV_STAFF_TENANT_ID is not set): in production only admins "
                "sign in, with a password and its authenticator code.",
                hint="Set CPV_STAFF_TENANT_ID to the vendor's tenant id and bind each staff account to its "
                "Microsoft object id on the staff page (or with manage.py staff_bind_microsoft).",
                id="cpv.W001",
            )
        ]
    return []

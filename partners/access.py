"""Who may see and do what on the staff pages: decided here, in one place, for every staff view.

Staff roles are Django groups holding the dashboard's permissions (created by `cpv/migrations/0001_staff_roles`
and kept in shape by `partners.services.staff_roles_sync`):

- viewer: reads every staff page except staff management and settings;
- operator: also runs the actions (renewals, syncs, consents, links, revocation, invitations);
- admin: also manages staff accounts and sees the settings page.

A signed-in account without a role gets a 403 everywhere. Within the dashboard, a page a role may not see is a
404 (it does not exist for them); a page or action it may see but not do is a 403. Partner users of the portal
are not Django users at all: their access is checked by `consent.portal`, never here.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404

from partners.models import Partner


class Role(enum.IntEnum):
    """Each role includes the ones below it."""

    NONE = 0
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()


# The permissions live on the partners app (content type partners.partner), named by what they allow.
PERMISSION_APP = "partners"
PERMISSION_MODEL = "partner"
PERMISSIONS: dict[str, tuple[str, Role]] = {
    "dashboard_view": ("Can see the staff dashboard", Role.VIEWER),
    "dashboard_operate": ("Can run actions on partners from the dashboard", Role.OPERATOR),
    "dashboard_admin": ("Can manage staff accounts and see the settings", Role.ADMIN),
}
ROLE_GROUPS: dict[Role, str] = {Role.VIEWER: "viewer", Role.OPERATOR: "operator", Role.ADMIN: "admin"}


def role_permissions(role: Role) -> list[str]:
    """The permission codenames a role's group holds."""
    return [codename for codename, (_, lowest) in PERMISSIONS.items() if role >= lowest]


def role_of(user: AbstractBaseUser | AnonymousUser) -> Role:
    """The highest role the user holds (superusers are admins); Role.NONE for anyone else."""
    if not user.is_authenticated or not getattr(user, "is_active", False):
        return Role.NONE
    # has_perm caches the user's permissions on the object: one query for all three checks.
    for codename, (_, role) in sorted(PERMISSIONS.items(), key=lambda item: -item[1][1]):
        if user.has_perm(f"{PERMISSION_APP}.{codename}"):  # type: ignore[attr-defined]
            return role
    return Role.NONE


def staff_view(*, see: Role = Role.VIEWER, act: Role | None = None) -> Callable[[Callable[..., HttpResponse]], Any]:
    """Guard a staff view: anonymous visitors go to the sign-in page; accounts without a role get a 403;
    a role below `see` gets a 404; a role below `act` (for views that change something, whatever the
    method, so that their confirmation pages are refused too) gets a 403.

    The view finds the role in `request.staff_role`.
    """

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            role = role_of(request.user)
            if role == Role.NONE:
                raise PermissionDenied("This page is for the vendor's staff.")
            if role < see:
                raise Http404
            if act is not None and role < act:
                raise PermissionDenied(f"Your role ({role.label}) may look but not act here.")
            request.staff_role = role  # type: ignore[attr-defined]
            return view(request, *args, **kwargs)

        wrapper.staff_access = (see, act)  # type: ignore[attr-defined]
        return wrapper

    return decorator


def partner_for_staff(code: uuid.UUID | str) -> Partner:
    """The one place staff views look a partner up: by its code, with its token row and the consent flow that
    obtained it; a 404 otherwise."""
    return get_object_or_404(Partner.objects.select_related("token__consent_flow").filter(code=code))

"""Who may see and do what on the staff pages, decided in one place for every staff view: a role below a page is a
404, below an action a 403, no role a 403 everywhere (portal users are checked by `consent.portal`). Also whether
a staff sign-in is finished: Microsoft with MFA, or a password with its TOTP code where one is needed."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.http import urlencode
from django_otp.plugins.otp_totp.models import TOTPDevice

from cpv.sessions import session_signed_in
from partners.models import Partner, StaffIdentity


class Role(enum.IntEnum):
    """Django groups, each including the ones below: viewer reads, operator acts, admin manages staff and settings."""

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


# The session's record of how its staff member signed in: {"method": "microsoft" | "password", ...}.
SIGN_IN_SESSION_KEY = "staff_sign_in"
MICROSOFT = "microsoft"
PASSWORD = "password"  # noqa: S105 - the name of a sign-in method


class SignInStep(enum.StrEnum):
    """What a signed-in staff member must still do before any staff page."""

    DONE = "done"
    VERIFY = "verify"  # give the TOTP code of the account's authenticator app
    ENROLL = "enroll"  # set up an authenticator app (CPV_STAFF_TOTP=required)
    USE_MICROSOFT = "use_microsoft"  # passwords are the admins' break-glass; this account signs in with Microsoft
    ENDED = "ended"  # the Microsoft account this session signed in with is no longer bound to the staff account


def staff_sign_in_record(request: HttpRequest, *, method: str, identity: StaffIdentity | None = None) -> None:
    """Note in the fresh session how its staff member signed in, and with which bound identity (checked per request)."""
    record: dict[str, Any] = {"method": method}
    if identity is not None:
        record.update(identity=identity.pk, object_id=str(identity.object_id))
    request.session[SIGN_IN_SESSION_KEY] = record
    # The session's absolute lifetime starts at its sign-in.
    session_signed_in(request)


def staff_sign_in_method(request: HttpRequest) -> str:
    record = request.session.get(SIGN_IN_SESSION_KEY)
    return str(record.get("method")) if isinstance(record, dict) else PASSWORD


def password_sign_in_allowed(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Whether the account may sign in with a password at all (every account, or only admins)."""
    return settings.CPV_STAFF_PASSWORD_SIGN_IN == "all" or role_of(user) >= Role.ADMIN  # noqa: S105


def totp_device(user: AbstractBaseUser | AnonymousUser) -> TOTPDevice | None:
    """The account's confirmed authenticator app, if it set one up."""
    if not user.is_authenticated:
        return None
    return TOTPDevice.objects.filter(user_id=user.pk, confirmed=True).order_by("pk").first()


def staff_sign_in_step(request: HttpRequest) -> SignInStep:
    """What the signed-in staff member must still do (DONE: nothing); a session that does not say counts as a password
    sign-in. A Microsoft sign-in costs one query per call."""
    record = request.session.get(SIGN_IN_SESSION_KEY)
    record = record if isinstance(record, dict) else {}
    user = request.user
    if record.get("method") == MICROSOFT:
        identity, object_id, tenant_id = record.get("identity"), record.get("object_id"), settings.CPV_STAFF_TENANT_ID
        still_bound = bool(identity and object_id and tenant_id and user.pk) and (
            StaffIdentity.objects.filter(
                pk=str(identity), user_id=str(user.pk), object_id=str(object_id), tenant_id=str(tenant_id)
            ).exists()
        )
        return SignInStep.DONE if still_bound else SignInStep.ENDED
    if not password_sign_in_allowed(user):
        return SignInStep.USE_MICROSOFT
    if getattr(user, "is_verified", None) is not None and user.is_verified():  # type: ignore[union-attr]
        return SignInStep.DONE
    if record.get("no_totp") and settings.CPV_STAFF_TOTP == "enrolled":
        return SignInStep.DONE
    if totp_device(user) is not None:
        return SignInStep.VERIFY
    if settings.CPV_STAFF_TOTP == "required":
        return SignInStep.ENROLL
    # CPV_STAFF_TOTP=enrolled and no authenticator app: the password was enough for this session.
    request.session[SIGN_IN_SESSION_KEY] = {**record, "method": PASSWORD, "no_totp": True}
    return SignInStep.DONE


def staff_sign_in_unfinished(request: HttpRequest) -> HttpResponse | None:
    """Where to send a staff member whose sign-in is unfinished (signing out one that may not go on), or None."""
    step = staff_sign_in_step(request)
    if step == SignInStep.DONE:
        return None
    if step in (SignInStep.USE_MICROSOFT, SignInStep.ENDED):
        logout(request)
        why = "password" if step == SignInStep.USE_MICROSOFT else "unbound"
        return HttpResponseRedirect(reverse("login") + "?" + urlencode({"refused": why}))
    next_url = request.get_full_path()
    where = "sign_in_verify" if step == SignInStep.VERIFY else "sign_in_enroll"
    return HttpResponseRedirect(reverse(where) + "?" + urlencode({"next": next_url}))


def staff_view(*, see: Role = Role.VIEWER, act: Role | None = None) -> Callable[[Callable[..., HttpResponse]], Any]:
    """Guard a staff view: anonymous to sign-in, no role 403, below `see` 404, below `act` 403 (whatever the method).
    The view finds the role in `request.staff_role`."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if unfinished := staff_sign_in_unfinished(request):
                return unfinished
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
    """The one place staff views look a partner up, by code, with its token row and consent flow; a 404 otherwise."""
    return get_object_or_404(
        Partner.objects.select_related("token__consent_flow").filter(code=code, deleted_at__isnull=True)
    )

"""Staff sign-in's rules, in one place: the lockout of passwords and codes, matching a Microsoft sign-in to a staff
account (with MFA), and the authenticator app. Its pages are dashboard/sign_in.py; the OpenID Connect kit is
consent/microsoft_sign_in.py; whether a session's sign-in is finished is partners/access.py."""

from __future__ import annotations

import hashlib
import logging
import unicodedata

from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from cpv.ratelimit import client_address
from partners.access import Role, role_of
from partners.models import StaffIdentity
from partners.services import Actor, PartnerError, audit_record, superuser_guard

logger = logging.getLogger(__name__)

# --- the lockout: wrong passwords and codes, per account and per address ------------------------------


# Failed sign-ins counted per username and per client address; past the limit, that username (or address) is
# refused for the rest of the window, even with the right password, so guessing gains nothing.
def sign_in_limits() -> dict[str, int]:
    per_account = settings.CPV_SIGNIN_MAX_FAILURES
    return {"username": per_account, "address": 4 * per_account}


def sign_in_window() -> int:
    return int(settings.CPV_SIGNIN_LOCKOUT_MINUTES) * 60


def _sign_in_key(kind: str, value: str) -> str:
    # The username as Django's sign-in reads it (NFKC, no surrounding spaces), in any case: "ada ", "ADA" and
    # the full-width letters of "ada" are one account, counted once.
    normalized = unicodedata.normalize("NFKC", value).strip().lower()
    return f"signin-failures:{kind}:{hashlib.sha256(normalized.encode()).hexdigest()[:32]}"


def sign_in_keys(request: HttpRequest | None, username: str) -> dict[str, str]:
    keys = {"username": _sign_in_key("username", username or "")}
    if request is not None:
        keys["address"] = _sign_in_key("address", client_address(request))
    return keys


def sign_in_locked(request: HttpRequest | None, username: str) -> bool:
    keys = sign_in_keys(request, username)
    counts = cache.get_many(list(keys.values()))
    # A counter is an int; anything else under its key (written by someone else) counts as none.
    return any(
        isinstance(count := counts.get(key, 0), int) and count >= sign_in_limits()[kind] for kind, key in keys.items()
    )


def sign_in_failed(request: HttpRequest | None, username: str) -> None:
    for key in sign_in_keys(request, username).values():
        # The window starts at the first failure: add() only sets a counter that does not exist yet.
        if not cache.add(key, 1, timeout=sign_in_window()):
            try:
                cache.incr(key)
            except ValueError:
                cache.add(key, 1, timeout=sign_in_window())


def sign_in_succeeded(request: HttpRequest | None, username: str) -> None:
    # Only the account's counter is cleared: an address that guessed many accounts stays counted.
    cache.delete(sign_in_keys(request, username)["username"])


def staff_sign_in_unlock(*, actor: Actor, user: User) -> bool:
    """An admin lifts an account's lockout (its failed sign-ins count from zero again), audited: True when it was
    locked. An address that guessed many accounts stays counted. Raises PartnerError for a superuser's unless the
    actor is one."""
    superuser_guard(actor, user)
    username = user.get_username()
    was_locked = sign_in_locked(None, username)
    with transaction.atomic():
        audit_record(actor=actor, action="staff.unlocked", target=user, detail={"user": username, "locked": was_locked})
    sign_in_succeeded(None, username)
    return was_locked


# --- Microsoft sign-in and the authenticator app -------------------------------------------------------------


class StaffSignInRefused(PartnerError):
    """A Microsoft sign-in that opens no staff session; `reason` says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def staff_microsoft_sign_in(
    *, tenant_id: str, object_id: str, username: str, mfa: bool | None, auth_contexts: list[str] | None = None
) -> StaffIdentity:
    """The active staff identity a verified sign-in is, by tenant and object id, with MFA (the configured
    authentication context in `acrs`, else `amr`); notes the sign-in. Raises StaffSignInRefused."""
    if not settings.CPV_STAFF_TENANT_ID or tenant_id != settings.CPV_STAFF_TENANT_ID:
        raise StaffSignInRefused("other_tenant", "the account is not one of the vendor's tenant")
    context = settings.CPV_STAFF_AUTH_CONTEXT
    # Where a context is configured, the vendor's Conditional Access requires MFA for it: `acrs` proves MFA.
    if context:
        if context not in (auth_contexts or []):
            raise StaffSignInRefused("no_auth_context", f"the sign-in did not satisfy authentication context {context}")
    elif mfa is None:
        raise StaffSignInRefused("mfa_unknown", "Microsoft's token did not say whether the sign-in used MFA")
    elif not mfa:
        raise StaffSignInRefused("no_mfa", "Microsoft's sign-in did not use MFA")
    identity = StaffIdentity.objects.select_related("user").filter(tenant_id=tenant_id, object_id=object_id).first()
    if identity is None or not identity.user.is_active or role_of(identity.user) == Role.NONE:
        raise StaffSignInRefused("not_staff", "no active staff account with a role is bound to the account")
    StaffIdentity.objects.filter(pk=identity.pk).update(last_username=username[:254], last_signed_in_at=timezone.now())
    return identity


def staff_totp_begin(*, user: User) -> TOTPDevice:
    """A fresh unconfirmed authenticator secret; other set-ups in progress are dropped, never confirmed."""
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user, confirmed=False).delete()
        return TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)


def staff_totp_reset(*, actor: Actor, user: User) -> int:
    """Remove the account's authenticator apps (a lost phone): how many. Raises PartnerError for a superuser's unless
    the actor is one."""
    superuser_guard(actor, user)
    with transaction.atomic():
        removed, _ = TOTPDevice.objects.filter(user=user).delete()
        audit_record(
            actor=actor,
            action="staff.totp_reset",
            target=user,
            detail={"user": user.get_username(), "removed": removed},
        )
    return removed


def staff_totp_confirm(*, user: User, device: TOTPDevice) -> TOTPDevice:
    """Keep a newly checked authenticator app as the account's only one: the device, confirmed."""
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        audit_record(actor=user, action="staff.totp_enrolled", target=user, detail={"user": user.get_username()})
    return device

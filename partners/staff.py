"""Staff sign-in's rules, in one place: the lockout of passwords and codes, the break-glass count of wrong codes,
the audit rows of sign-ins, matching a Microsoft sign-in to a staff
account (with MFA), and the authenticator app. Its pages are dashboard/sign_in.py; the OpenID Connect kit is
consent/microsoft_sign_in.py; whether a session's sign-in is finished is partners/access.py."""

from __future__ import annotations

import hashlib
import logging
import unicodedata

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.core.cache import cache
from django.core.mail import send_mail
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from cpv.ratelimit import address_bucket, client_address, count_hit, uncount_hit
from partners.access import Role, role_of
from partners.models import AuditEvent, SignInFailure, StaffIdentity, StaffPasswordGuard
from partners.services import Actor, PartnerError, audit_record, staff_admin_emails, superuser_guard

logger = logging.getLogger(__name__)

# --- the lockout: wrong passwords and codes, per account and per address ------------------------------


# Sign-in attempts counted per username and per client address (an IPv6 address by its /64); past the limit, that
# username (or address) is refused for the rest of the window, even with the right password, so guessing gains
# nothing. Each attempt is counted before its password or code is checked, and given back when it was right: guesses
# sent at the same moment cannot all pass a check made before any of them was counted.
def sign_in_limits() -> dict[str, int]:
    per_account = settings.CPV_SIGNIN_MAX_FAILURES
    return {"username": per_account, "address": 4 * per_account}


def sign_in_window() -> int:
    return int(settings.CPV_SIGNIN_LOCKOUT_MINUTES) * 60


def _normalized(username: str) -> str:
    # The username as Django's sign-in reads it (NFKC, no surrounding spaces), in any case: "ada ", "ADA" and
    # the full-width letters of "ada" are one account, counted once.
    return unicodedata.normalize("NFKC", username or "").strip().lower()


def _sign_in_key(kind: str, value: str) -> str:
    return f"signin-failures:{kind}:{hashlib.sha256(value.encode()).hexdigest()[:32]}"


def sign_in_keys(request: HttpRequest | None, username: str) -> dict[str, str]:
    keys = {"username": _sign_in_key("username", _normalized(username))}
    if request is not None:
        keys["address"] = _sign_in_key("address", address_bucket(client_address(request)))
    return keys


def sign_in_attempt_begin(request: HttpRequest | None, username: str) -> bool:
    """Count an attempt against the account and the address before anything is checked: False when either is past its
    limit (refuse it unchecked). A right attempt is given back with `sign_in_attempt_right`."""
    limits = sign_in_limits()
    keys = sign_in_keys(request, username)
    counts = {kind: count_hit(key, timeout=sign_in_window()) for kind, key in keys.items()}
    if all(count <= limits[kind] for kind, count in counts.items()):
        return True
    # Refused unchecked: the attempt is not a failure of the other counter either.
    for key in keys.values():
        uncount_hit(key)
    return False


def sign_in_attempt_right(request: HttpRequest | None, username: str) -> None:
    """The attempt counted by `sign_in_attempt_begin` was right: it is not a failure."""
    for key in sign_in_keys(request, username).values():
        uncount_hit(key)


def sign_in_locked(request: HttpRequest | None, username: str) -> bool:
    """True when the account (or, with a request, its address) is at its limit: its next attempt is refused
    unchecked. A value under a counter that this code did not write counts as none."""
    limits = sign_in_limits()
    keys = sign_in_keys(request, username)
    counts = cache.get_many(list(keys.values()))
    return any(isinstance(count := counts.get(key, 0), int) and count >= limits[kind] for kind, key in keys.items())


# --- audit rows of sign-ins (never a password, a code, or a username nobody has) -------------------------------


def _account(username: str) -> User | None:
    """The account a typed username names (as Django's sign-in finds it), or None."""
    if not username.strip():
        return None
    return User.objects.filter(username=unicodedata.normalize("NFKC", username).strip()).first()


def staff_sign_in_failed(
    *, request: HttpRequest | None, username: str, reason: str, user: User | None = None, detail: str = ""
) -> AuditEvent:
    """The audit row of a refused sign-in: the account when one is named (a username that names none is not written:
    it is often a password typed in the wrong box), the reason and the client's address."""
    account = user or _account(username)
    return audit_record(
        actor=None,
        action="staff.sign_in_failed",
        target=account,
        detail={
            "user": account.get_username() if account is not None else "",
            "reason": reason,
            "address": client_address(request) if request is not None else "",
            **({"why": detail} if detail else {}),
        },
    )


def staff_sign_in_succeeded(
    *, request: HttpRequest | None, user: User, method: str, right_code: bool = False
) -> AuditEvent:
    """A finished sign-in, audited: the account's failure count is cleared, and with `right_code` (a right TOTP code
    after the password: nothing else resets it) its break-glass count of wrong codes."""
    if request is not None:
        cache.delete(sign_in_keys(request, user.get_username())["username"])
    with transaction.atomic():
        if right_code:
            StaffPasswordGuard.objects.filter(user=user, wrong_codes__gt=0, frozen_at__isnull=True).update(
                wrong_codes=0
            )
        return audit_record(
            actor=user,
            action="staff.signed_in",
            target=user,
            detail={
                "user": user.get_username(),
                "method": method,
                "address": client_address(request) if request is not None else "",
            },
        )


# --- the break-glass: wrong codes after a right password, counted in the database -------------------------------


def password_sign_in_frozen(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Whether too many wrong codes after the right password froze the account's password sign-in."""
    return user.pk is not None and StaffPasswordGuard.objects.filter(user_id=user.pk, frozen_at__isnull=False).exists()


def staff_wrong_code(*, request: HttpRequest | None, user: User, alert: bool) -> StaffPasswordGuard:
    """Count a wrong TOTP code given after the account's right password, with its audit row; the admins are emailed
    when `alert` (the first wrong code of a password sign-in) and when the count freezes the password sign-in.
    Returns the count's row (`frozen_at` set once frozen)."""
    StaffPasswordGuard.objects.get_or_create(user=user)
    address = client_address(request) if request is not None else ""
    with transaction.atomic():
        guard = StaffPasswordGuard.objects.select_for_update().get(user=user)
        guard.wrong_codes += 1
        guard.last_wrong_code_at = timezone.now()
        froze = guard.frozen_at is None and guard.wrong_codes >= StaffPasswordGuard.WRONG_CODES_FREEZE
        if froze:
            guard.frozen_at = guard.last_wrong_code_at
        guard.save(update_fields=["wrong_codes", "last_wrong_code_at", "frozen_at"])
        staff_sign_in_failed(request=request, username="", user=user, reason=SignInFailure.WRONG_CODE)
        if froze:
            audit_record(
                actor=None,
                action="staff.password_frozen",
                target=user,
                detail={"user": user.get_username(), "wrong_codes": guard.wrong_codes, "address": address},
            )
        if alert or froze:
            transaction.on_commit(
                lambda: _wrong_code_alert(user=user, address=address, wrong_codes=guard.wrong_codes, froze=froze),
                robust=True,
            )
    logger.warning("a wrong TOTP code after the right password (%s so far)", guard.wrong_codes)
    return guard


def _wrong_code_alert(*, user: User, address: str, wrong_codes: int, froze: bool) -> None:
    username = user.get_username()
    if froze:
        subject = f"password sign-in of {username} frozen"
        first = (
            f"{wrong_codes} wrong authenticator codes were given after the right password of the staff account "
            f"{username} (the last from {address or 'an unknown address'}). Its password sign-in is frozen until "
            f"another admin releases it on the staff page, or `python manage.py staff_unfreeze {username}` is run."
        )
    else:
        subject = f"wrong authenticator code for {username}"
        first = (
            f"Someone gave the right password of the staff account {username} and then a wrong authenticator code, "
            f"from {address or 'an unknown address'}."
        )
    body = (
        f"{first}\n\nIf this was not {username}, the password is known to someone else: change it now, and check "
        "the audit log. After "
        f"{StaffPasswordGuard.WRONG_CODES_FREEZE} wrong codes in a row the account's password sign-in is frozen.\n"
    )
    recipients = staff_admin_emails()
    if recipients:
        send_mail(settings.CPV_VENDOR.subject(subject), body, None, recipients)


def staff_unfreeze(*, actor: Actor, user: User) -> StaffPasswordGuard:
    """Release a frozen password sign-in (its wrong-code count back to 0), audited: the count's row. Raises
    PartnerError for one's own account (another admin releases it), a superuser's unless the actor is one, or an
    account that is not frozen."""
    if actor is not None and getattr(actor, "pk", None) == user.pk:
        raise PartnerError("You cannot release your own account; ask another admin.")
    superuser_guard(actor, user)
    with transaction.atomic():
        guard = StaffPasswordGuard.objects.select_for_update().filter(user=user).first()
        if guard is None or guard.frozen_at is None:
            raise PartnerError(f"The password sign-in of {user.get_username()} is not frozen.")
        wrong_codes = guard.wrong_codes
        guard.wrong_codes, guard.frozen_at = 0, None
        guard.save(update_fields=["wrong_codes", "frozen_at"])
        audit_record(
            actor=actor,
            action="staff.password_unfrozen",
            target=user,
            detail={"user": user.get_username(), "wrong_codes": wrong_codes},
        )
    return guard


def staff_sign_in_unlock(*, actor: Actor, user: User) -> bool:
    """An admin lifts an account's lockout (its failed sign-ins count from zero again), audited: True when it was
    locked. An address that guessed many accounts stays counted. Raises PartnerError for a superuser's unless the
    actor is one."""
    superuser_guard(actor, user)
    username = user.get_username()
    was_locked = sign_in_locked(None, username)
    with transaction.atomic():
        audit_record(actor=actor, action="staff.unlocked", target=user, detail={"user": username, "locked": was_locked})
    # The account's counter starts from zero again; an address that guessed many accounts stays counted.
    cache.delete(sign_in_keys(None, username)["username"])
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

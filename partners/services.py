"""Partner directory services: every change to a partner writes its audit row in the same transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group, Permission, User
from django.contrib.auth.password_validation import validate_password
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from cpv import clouds
from cpv.logs import redact_value, request_id_var
from partners.access import (
    PERMISSION_APP,
    PERMISSION_MODEL,
    PERMISSIONS,
    ROLE_GROUPS,
    Role,
    role_permissions,
)
from partners.models import AuditEvent, Partner, StaffIdentity

Actor = AbstractBaseUser | AnonymousUser | None


def audit_record(
    *,
    actor: Actor,
    action: str,
    partner: Partner | None = None,
    target: Any = None,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append an audit row, `detail` scrubbed of anything secret-shaped, in the caller's transaction: the AuditEvent."""
    user = actor if isinstance(actor, User) and actor.is_authenticated else None
    if target is None and partner is not None:
        target = partner
    target_type = target._meta.label_lower if target is not None and hasattr(target, "_meta") else ""
    target_id = str(getattr(target, "code", None) or getattr(target, "pk", "") or "") if target is not None else ""
    return AuditEvent.objects.create(
        actor=user,
        actor_label=user.get_username() if user is not None else "system",
        action=action,
        target_type=target_type,
        target_id=target_id,
        partner=partner,
        detail=redact_value(detail or {}),
        request_id=request_id_var.get(),
    )


class PartnerError(ValueError):
    """A partner could not be created or changed as asked; the message is meant for the person asking."""


def partner_create(
    *,
    actor: Actor,
    name: str,
    contact_email: str,
    cloud: str = clouds.GLOBAL,
    environment: str = Partner.Environment.PRODUCTION,
    tenant_id: uuid.UUID | str | None = None,
    status: str = Partner.Status.INVITED,
    signup_key: uuid.UUID | None = None,
) -> Partner:
    """Create a partner with its audit row. Raises PartnerError for a blank name, a bad email, an unknown or retired
    cloud, environment or status, or a tenant another partner has."""
    name = name.strip()
    if not name:
        raise PartnerError("A partner needs a name.")
    try:
        validate_email(contact_email)
    except ValidationError:
        raise PartnerError(f"{contact_email!r} is not an email address.") from None
    if cloud not in clouds.CLOUDS:
        raise PartnerError(
            f"Unknown cloud {cloud!r}; choose one of {', '.join(c for c, _ in clouds.PARTNER_CLOUD_CHOICES)}."
        )
    if clouds.CLOUDS[cloud].retired:
        raise PartnerError(clouds.CLOUDS[cloud].retired_reason)
    if environment not in Partner.Environment.values:
        raise PartnerError(f"Unknown environment {environment!r}; choose production or sandbox.")
    if status not in Partner.Status.values:
        raise PartnerError(f"Unknown status {status!r}.")
    tenant = None
    if tenant_id:
        try:
            tenant = uuid.UUID(str(tenant_id))
        except ValueError:
            raise PartnerError(f"{tenant_id!r} is not a tenant id (a GUID).") from None
    try:
        with transaction.atomic():
            partner = Partner.objects.create(
                name=name,
                contact_email=contact_email,
                cloud=cloud,
                environment=environment,
                tenant_id=tenant,
                status=status,
                signup_key=signup_key,
            )
            audit_record(
                actor=actor,
                action="partner.created",
                partner=partner,
                detail={"name": name, "cloud": cloud, "environment": environment, "status": status},
            )
    except IntegrityError:
        if signup_key is not None and Partner.objects.filter(signup_key=signup_key).exists():
            raise PartnerError("This form was already submitted.") from None
        raise PartnerError(f"Tenant {tenant} already belongs to another partner.") from None
    return partner


def partner_deactivate(*, actor: Actor, partner: Partner, reason: str = "") -> Partner:
    """Stop serving a partner (no renewal, sync, consent; its links stop working); the token stays in the vault.
    Raises PartnerError when it is already deactivated."""
    with transaction.atomic():
        locked = Partner.objects.select_for_update().get(pk=partner.pk)
        if locked.status == Partner.Status.DEACTIVATED:
            raise PartnerError(f"{locked.name} is already deactivated.")
        previous = locked.status
        locked.status = Partner.Status.DEACTIVATED
        locked.status_reason = (reason.strip() or "Deactivated by the vendor's staff")[:500]
        locked.save(update_fields=["status", "status_reason", "updated_at"])
        audit_record(
            actor=actor,
            action="partner.deactivated",
            partner=locked,
            detail={"previous_status": previous, "reason": locked.status_reason},
        )
    return locked


@dataclass(frozen=True)
class Reactivated:
    """What a reactivation gave the partner: its new status and the next step in words, for staff."""

    partner: Partner
    next_step: str


def partner_reactivate(*, actor: Actor, partner: Partner, token_usable: bool) -> Reactivated:
    """Serve a deactivated partner again: active when its token still works (`token_usable`, the caller's reading of
    the token's own facts), else invited or pending again when it was before its deactivation, else re-consent
    needed. Raises PartnerError when it is not deactivated."""
    with transaction.atomic():
        locked = Partner.objects.select_for_update().get(pk=partner.pk)
        if locked.status != Partner.Status.DEACTIVATED or locked.deleted_at is not None:
            raise PartnerError(f"{locked.name} is not deactivated.")
        deactivation = locked.audit_events.filter(action="partner.deactivated").order_by("-created_at", "-id").first()
        before = (deactivation.detail if deactivation else {}).get("previous_status", "")
        if token_usable:
            locked.status, locked.status_reason = Partner.Status.ACTIVE, ""
            next_step = "Its token renews on schedule again; sync its customers to catch up."
        elif before in (Partner.Status.INVITED, Partner.Status.PENDING):
            locked.status, locked.status_reason = before, ""
            next_step = "It has not consented yet: create a consent link and send it to the partner's admin."
        else:
            locked.status = Partner.Status.RECONSENT_NEEDED
            locked.status_reason = "Reactivated without a working token: the partner must consent again."
            next_step = "Its token no longer works: create a consent link and send it to the partner's admin."
        offboarded = locked.offboarding_started_at is not None
        if offboarded:
            # An offboarded partner comes back as a new start: its customers get the app again once it consents.
            locked.offboarding_started_at = locked.offboarded_at = None
            next_step += " It was offboarded: its customers get the vendor's app again after it consents."
        locked.save(update_fields=["status", "status_reason", "offboarding_started_at", "offboarded_at", "updated_at"])
        audit_record(
            actor=actor,
            action="partner.reactivated",
            partner=locked,
            detail={
                "status": locked.status,
                "token_usable": token_usable,
                **({"was_offboarded": True} if offboarded else {}),
            },
        )
    return Reactivated(locked, next_step)


# Only a partner that never consented can be deleted: one that did has a token, customers and history to keep.
DELETABLE = (Partner.Status.INVITED, Partner.Status.PENDING)


def partner_delete(*, actor: Actor, partner: Partner, reason: str = "") -> Partner:
    """Delete a stray invitation (soft: `deleted_at`, its links stop working, its pinned tenant is freed for a new
    invitation). Raises PartnerError for a partner that consented or is already deleted."""
    with transaction.atomic():
        locked = Partner.objects.select_for_update().get(pk=partner.pk)
        if locked.deleted_at is not None:
            raise PartnerError(f"{locked.name} is already deleted.")
        if locked.status not in DELETABLE:
            raise PartnerError(
                f"{locked.name} is {locked.get_status_display().lower()}: only a partner that never consented can be "
                "deleted (deactivate this one instead)."
            )
        detail = {"name": locked.name, "status": locked.status, "tenant_id": str(locked.tenant_id or "")}
        locked.deleted_at = timezone.now()
        locked.tenant_id = None
        locked.status_reason = (reason.strip() or "Deleted by the vendor's staff")[:500]
        locked.link_generation += 1
        locked.save(update_fields=["deleted_at", "tenant_id", "status_reason", "link_generation", "updated_at"])
        audit_record(actor=actor, action="partner.deleted", partner=locked, detail={**detail, "reason": reason})
    return locked


# --- staff accounts and their roles -----------------------------------------------------------------------


def staff_roles_sync() -> dict[str, Group]:
    """Make the role groups exist with exactly their permissions (repairing a flushed database): the groups by name."""
    content_type, _ = ContentType.objects.get_or_create(app_label=PERMISSION_APP, model=PERMISSION_MODEL)
    permissions = {}
    for codename, (name, _) in PERMISSIONS.items():
        permissions[codename], _ = Permission.objects.get_or_create(
            content_type=content_type, codename=codename, defaults={"name": name}
        )
    groups = {}
    for role, group_name in ROLE_GROUPS.items():
        group, _ = Group.objects.get_or_create(name=group_name)
        group.permissions.set([permissions[c] for c in role_permissions(role)])
        groups[group_name] = group
    return groups


def _role_groups() -> list[Group]:
    return list(Group.objects.filter(name__in=ROLE_GROUPS.values()))


def staff_role_set(*, actor: Actor, user: User, role: Role) -> User:
    """Give `user` exactly one staff role (NONE removes them all). Raises PartnerError for a superuser, or for an
    admin removing their own admin role."""
    if user.is_superuser:
        raise PartnerError(f"{user.get_username()} is a superuser and always has every role.")
    if actor is not None and getattr(actor, "pk", None) == user.pk and role < Role.ADMIN:
        raise PartnerError("You cannot lower your own role; ask another admin.")
    groups = {g.name: g for g in _role_groups()}
    if len(groups) < len(ROLE_GROUPS):
        groups = staff_roles_sync()
    with transaction.atomic():
        previous = sorted(user.groups.filter(name__in=ROLE_GROUPS.values()).values_list("name", flat=True))
        user.groups.remove(*groups.values())
        if role != Role.NONE:
            user.groups.add(groups[ROLE_GROUPS[role]])
        audit_record(
            actor=actor,
            action="staff.role_set",
            target=user,
            detail={"user": user.get_username(), "role": role.label, "previous": previous},
        )
    return user


def staff_user_create(*, actor: Actor, username: str, email: str, password: str, role: Role) -> User:
    """Create a staff account with a role. Raises PartnerError for a taken username or a refused password."""
    username = username.strip()
    if not username:
        raise PartnerError("A staff account needs a username.")
    try:
        validate_password(password, User(username=username, email=email))
    except ValidationError as exc:
        raise PartnerError(" ".join(exc.messages)) from None
    with transaction.atomic():
        if User.objects.filter(username__iexact=username).exists():
            raise PartnerError(f"The username {username!r} is taken.")
        user = User.objects.create_user(username=username, email=email, password=password)
        audit_record(
            actor=actor,
            action="staff.created",
            target=user,
            detail={"user": username, "email": email, "role": role.label},
        )
        if role != Role.NONE:
            staff_role_set(actor=actor, user=user, role=role)
    return user


def staff_user_set_active(*, actor: Actor, user: User, active: bool) -> User:
    """Enable or disable a staff account (a disabled one's sessions stop working). Raises PartnerError for one's own
    account, or a superuser's unless the actor is one."""
    if actor is not None and getattr(actor, "pk", None) == user.pk:
        raise PartnerError("You cannot disable your own account.")
    superuser_guard(actor, user)
    with transaction.atomic():
        user.is_active = active
        user.save(update_fields=["is_active"])
        audit_record(
            actor=actor,
            action="staff.enabled" if active else "staff.disabled",
            target=user,
            detail={"user": user.get_username()},
        )
    return user


def superuser_guard(actor: Actor, user: User) -> None:
    if user.is_superuser and actor is not None and not getattr(actor, "is_superuser", False):
        raise PartnerError(f"{user.get_username()} is a superuser: only another superuser can change that account.")


def staff_identity_set(*, actor: Actor, user: User, object_id: uuid.UUID | None) -> StaffIdentity | None:
    """Bind the account to an Entra object id in CPV_STAFF_TENANT_ID (None unbinds). Raises PartnerError without a
    staff tenant, for an id another account holds, or for a superuser's unless the actor is one."""
    superuser_guard(actor, user)
    with transaction.atomic():
        previous = StaffIdentity.objects.filter(user=user).first()
        if object_id is None:
            if previous is not None:
                previous.delete()
                audit_record(
                    actor=actor,
                    action="staff.microsoft_unbound",
                    target=user,
                    detail={"user": user.get_username(), "object_id": str(previous.object_id)},
                )
            return None
        if not settings.CPV_STAFF_TENANT_ID:
            raise PartnerError("Microsoft sign-in for staff is not configured (CPV_STAFF_TENANT_ID is not set).")
        tenant_id = uuid.UUID(settings.CPV_STAFF_TENANT_ID)
        if previous is not None and (previous.tenant_id, previous.object_id) == (tenant_id, object_id):
            return previous  # nothing changes: no audit row
        holder = StaffIdentity.objects.filter(tenant_id=tenant_id, object_id=object_id).exclude(user=user).first()
        if holder is not None:
            raise PartnerError(f"That Microsoft account is already bound to {holder.user.get_username()}.")
        try:
            with transaction.atomic():
                identity, _ = StaffIdentity.objects.update_or_create(
                    user=user, defaults={"tenant_id": tenant_id, "object_id": object_id, "last_username": ""}
                )
        except IntegrityError:  # bound to another account at the same moment
            raise PartnerError("That Microsoft account was just bound to another staff account.") from None
        audit_record(
            actor=actor,
            action="staff.microsoft_bound",
            target=user,
            detail={
                "user": user.get_username(),
                "object_id": str(object_id),
                "tenant_id": str(tenant_id),
                "previous": str(previous.object_id) if previous else "",
            },
        )
    return identity


def staff_admin_emails() -> list[str]:
    """The email addresses of the active admins and superusers: who operator alerts reach."""
    admins = User.objects.filter(is_active=True).filter(Q(is_superuser=True) | Q(groups__name=ROLE_GROUPS[Role.ADMIN]))
    return sorted({email for email in admins.exclude(email="").values_list("email", flat=True)})


# A partner's MFA state is written when it changes, and otherwise at most this often: ApplicationConsent calls
# Partner Center once per customer, and each answer carries it.
MFA_RECORD_EVERY = timedelta(minutes=10)


def partner_mfa_record(*, partner: Partner, compliant: bool | None, now: datetime | None = None) -> bool:
    """Keep Partner Center's `isMfaCompliant` (None writes nothing), in memory too: True when written."""
    if compliant is None:
        return False
    now = now or timezone.now()
    if (
        partner.mfa_compliant == compliant
        and partner.mfa_checked_at is not None
        and now - partner.mfa_checked_at < MFA_RECORD_EVERY
    ):
        return False
    Partner.objects.filter(pk=partner.pk).update(mfa_compliant=compliant, mfa_checked_at=now)
    partner.mfa_compliant, partner.mfa_checked_at = compliant, now
    return True

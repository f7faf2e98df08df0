"""Partner directory services: every change to a partner writes its audit row in the same transaction."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction

from cpv import clouds
from cpv.logs import redact_value, request_id_var
from partners.models import AuditEvent, Partner

Actor = AbstractBaseUser | AnonymousUser | None


def audit_record(
    *,
    actor: Actor,
    action: str,
    partner: Partner | None = None,
    target: Any = None,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append an audit row. `detail` is scrubbed of anything secret-shaped before it is written.

    Returns the AuditEvent. Callers run it inside their own transaction so the row and the change land
    together.
    """
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
    """Create a partner and its `partner.created` audit row.

    Returns the Partner. Raises PartnerError for a blank name, a bad email, an unknown or retired cloud,
    an unknown environment or status, or a tenant that already belongs to another partner.
    """
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

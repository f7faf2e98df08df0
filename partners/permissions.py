"""What a partner's consent grants against the permissions the product requires; a partner missing some stays
active, and the features that need them ask here."""

from __future__ import annotations

from django.db import transaction

from microsoft import permissions
from microsoft.permissions import RequiredPermission
from partners.invitations import partner_reconsent_link
from partners.models import Partner
from partners.services import audit_record


def partner_permissions_missing(partner: Partner) -> list[RequiredPermission]:
    """The required permissions the partner's last consent did not grant ([] before any consent; for a consent recorded
    before grants were kept, or an imported token: all but Partner Center's, which its token proves)."""
    if partner.tenant_id is None:
        return []
    granted = dict(partner.permissions_granted or {})
    granted.setdefault(permissions.PARTNER_CENTER, ["user_impersonation"])
    return permissions.missing(granted)


def partner_permission_granted(partner: Partner, permission: RequiredPermission) -> bool:
    """Whether a feature that needs `permission` can run for the partner."""
    return permission not in partner_permissions_missing(partner)


def partner_permissions_outdated(partner: Partner) -> bool:
    """Whether an active partner's consent is to an older list than the product's, or lacks one of its permissions."""
    return partner.status == Partner.Status.ACTIVE and (
        partner.permissions_fingerprint != permissions.fingerprint() or bool(partner_permissions_missing(partner))
    )


def partner_permission_refused(*, partner: Partner, api: str) -> None:
    """Record that the consent holds nothing for `api` (AADSTS65001); the partner stays active."""
    with transaction.atomic():
        locked = Partner.objects.select_for_update().get(pk=partner.pk)
        granted = dict(locked.permissions_granted or {})
        if granted.get(api) == []:
            return
        granted[api] = []
        locked.permissions_granted = granted
        locked.save(update_fields=["permissions_granted", "updated_at"])
        audit_record(
            actor=None,
            action="partner.permissions_refused",
            partner=locked,
            detail={"api": permissions.API_NAMES.get(api, api)},
        )


def permissions_reconsent_ask() -> int:
    """Ask each active partner whose consent predates the required list to consent again, once per list (an email with
    a fresh link): how many were asked."""
    wanted = permissions.fingerprint()
    asked = 0
    candidates = (
        Partner.objects.filter(status=Partner.Status.ACTIVE)
        .exclude(permissions_fingerprint=wanted)
        .exclude(permissions_asked_fingerprint=wanted)
        .values_list("pk", flat=True)
    )
    for pk in list(candidates):
        with transaction.atomic():
            partner = Partner.objects.select_for_update().get(pk=pk)
            if not partner_permissions_outdated(partner) or partner.permissions_asked_fingerprint == wanted:
                continue
            partner.permissions_asked_fingerprint = wanted
            partner.save(update_fields=["permissions_asked_fingerprint", "updated_at"])
            missing = [p.label for p in partner_permissions_missing(partner)]
            audit_record(
                actor=None,
                action="partner.permissions_reconsent_asked",
                partner=partner,
                detail={"fingerprint": wanted, "missing": missing},
            )
            partner_reconsent_link(
                actor=None,
                partner=partner,
                send_email=True,
                subject="please consent again: the app needs more permissions",
                intro="The app you consented to now needs more permissions"
                + (f" ({', '.join(missing)})" if missing else "")
                + ". Your current consent keeps working for what it granted. Open this link and sign in again "
                "as a Global Administrator to consent on behalf of your organisation:",
            )
            asked += 1
    return asked

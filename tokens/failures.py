"""What a failed redemption means and what is done about it: retry a transient error, mark a dead consent
"re-consent needed" (emailing a link once), alert an operator about the app's own credential."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from events.models import EventType
from events.services import event_record
from microsoft import identity, partner_center
from microsoft.retrying import backoff_delay
from partners.invitations import partner_reconsent_link
from partners.models import Partner
from partners.registrations import cloud_for
from partners.services import PartnerError, audit_record, partner_mfa_record
from tokens.alerts import alert_raise
from tokens.models import OperatorAlert, PartnerToken, TokenEvent
from tokens.outcomes import RenewalOutcome, RenewalResult
from tokens.pointers import token_event
from tokens.vault import VaultError

logger = logging.getLogger(__name__)

Kind = TokenEvent.Kind


# After the bounded retries of one run, the next try waits in the database this long (never as a long ETA).
GAVE_UP_PAUSE = timedelta(hours=6)
# AADSTS700016 (the app is not in the directory) for this many partners within the window is the vendor's own
# registration (deleted, or in another cloud), not each partner's doing: one operator alert, nobody marked.
APP_NOT_FOUND_PARTNERS = 2
# Counted over longer than a partner's second look takes (its retry an hour on, at its slot in the hourly sweep).
APP_NOT_FOUND_WINDOW = timedelta(hours=6)
APP_NOT_FOUND_RETRY = timedelta(hours=1)


_PERMANENT_REASONS: dict[str, tuple[str, str]] = {
    identity.ReconsentRequired.kind: (
        Kind.RECONSENT_NEEDED,
        "Microsoft no longer accepts the partner's consent (expired after 90 days unused, revoked, or the "
        "account's password was reset by an administrator): the partner must consent again",
    ),
    identity.MfaRequired.kind: (
        Kind.MFA_REQUIRED,
        "Microsoft requires multi-factor authentication for the account that consented: the partner must "
        "consent again with an account that uses MFA",
    ),
    identity.ConditionalAccessBlocked.kind: (
        Kind.CONDITIONAL_ACCESS,
        "A Conditional Access policy in the partner's tenant blocks the control panel: the partner must "
        "exclude the integration account from the policy, then consent again",
    ),
}


def failure_record(
    pointer: PartnerToken, *, kind: str, message: str, now: datetime, next_attempt_at: datetime | None = None
) -> None:
    pointer.failure_count += 1
    pointer.last_error = message[:500]
    pointer.last_error_kind = kind[:32]
    pointer.last_failure_at = now
    pointer.next_attempt_at = next_attempt_at
    pointer.save(
        update_fields=[
            "failure_count",
            "last_error",
            "last_error_kind",
            "last_failure_at",
            "next_attempt_at",
            "updated_at",
        ]
    )


def partner_mark_reconsent_needed(*, pointer: PartnerToken, error: identity.IdentityError, now: datetime) -> bool:
    """Mark the partner "re-consent needed", email a fresh link and audit it, once. Runs in the caller's transaction
    holding the pointer's lock; True when it marked the partner."""
    event_kind, reason = _PERMANENT_REASONS.get(error.kind, _PERMANENT_REASONS[identity.ReconsentRequired.kind])
    partner = Partner.objects.select_for_update().get(pk=pointer.partner_id)
    failure_record(pointer, kind=error.kind, message=f"{reason}. {error}", now=now)
    token_event(partner, event_kind, reason, error=error.error, codes=list(error.codes), kind=error.kind)
    if partner.status == Partner.Status.RECONSENT_NEEDED or partner.status == Partner.Status.DEACTIVATED:
        return False
    previous = partner.status
    partner.status = Partner.Status.RECONSENT_NEEDED
    partner.status_reason = reason[:500]
    partner.save(update_fields=["status", "status_reason", "updated_at"])
    event_record(
        type=EventType.PARTNER_CONSENT_NEEDED,
        partner=partner,
        detail={"previous_status": previous, "reason": error.kind},
    )
    audit_record(
        actor=None,
        action="partner.reconsent_needed",
        partner=partner,
        detail={"previous_status": previous, "kind": error.kind, "codes": list(error.codes), "reason": reason},
    )
    try:
        partner_reconsent_link(actor=None, partner=partner, send_email=True)
    except PartnerError as exc:
        logger.warning("no re-consent link for partner %s: %s", partner.code, exc)
    # Staff see the partner's state on the dashboard; the log line reaches whoever watches the logs.
    logger.warning("partner %s needs re-consent: %s (%s)", partner.code, error.kind, list(error.codes))
    return True


def partner_mfa_refused(*, partner_id: int, detail: str) -> bool:
    """Partner Center refused the token for want of MFA: mark the partner "re-consent needed" (MFA) and email it, once;
    nothing is retried. Runs its own transaction. True when it marked the partner."""
    error = identity.MfaRequired(
        f"Partner Center requires multi-factor authentication: {detail}", error="mfa_required", codes=(900421,)
    )
    now = timezone.now()
    with transaction.atomic():
        pointer = (
            PartnerToken.objects.select_for_update(of=("self",))
            .select_related("partner")
            .filter(partner_id=partner_id)
            .first()
        )
        if pointer is None:
            return False
        partner_mfa_note(partner=pointer.partner, compliant=False, now=now)
        return partner_mark_reconsent_needed(pointer=pointer, error=error, now=now)


def partner_mfa_verify(*, partner: Partner, access_token: str) -> bool | None:
    """Ask Partner Center (`ValidateMfa`) whether the token satisfies its MFA rule, marking the partner on a refusal.
    Returns isMfaCompliant, or None when it could not say."""
    client = partner_center.PartnerCenterClient(
        base_url=cloud_for(partner).partner_center_url, access_token=access_token
    )
    try:
        client.organization_profile()
    except partner_center.MfaRequired as exc:
        partner_mfa_refused(partner_id=partner.pk, detail=str(exc))
        return False
    except partner_center.PartnerCenterError as exc:
        logger.warning("partner %s: Partner Center could not confirm MFA: %s", partner.code, exc)
        return client.mfa_compliant
    if client.mfa_compliant is False:
        partner_mfa_refused(partner_id=partner.pk, detail="Partner Center answered isMfaCompliant: false")
    else:
        partner_mfa_note(partner=partner, compliant=client.mfa_compliant)
    return client.mfa_compliant


def partner_mfa_note(*, partner: Partner, compliant: bool | None, now: datetime | None = None) -> bool:
    """Keep Partner Center's `isMfaCompliant` (`partner_mfa_record`) and, when the verdict turned (compliant to not,
    or back), its event, in one transaction: True when written."""
    before = partner.mfa_compliant
    with transaction.atomic():
        written = partner_mfa_record(partner=partner, compliant=compliant, now=now)
        if written and before is not None and compliant is not None and before != compliant:
            event_record(
                type=EventType.PARTNER_MFA_VERDICT_CHANGED,
                partner=partner,
                detail={"mfa_compliant": compliant, "previous": before},
            )
    return written


def renewal_failure_record(
    pointer: PartnerToken, exc: Exception, *, now: datetime, attempt: int, max_attempts: int
) -> RenewalResult:
    """Record a failed renewal in the caller's transaction: `retry` while attempts are left, else `failed`."""
    partner = pointer.partner
    transient = (isinstance(exc, identity.IdentityError) and not exc.permanent) or (
        isinstance(exc, VaultError) and exc.transient
    )
    kind = getattr(exc, "kind", "") or exc.__class__.__name__
    if transient:
        retry_after = getattr(exc, "retry_after", None)
        if attempt < max_attempts:
            delay = backoff_delay(attempt=attempt, retry_after=retry_after)
            message = f"Attempt {attempt} of {max_attempts} failed ({exc}); trying again in {delay:.0f} s"
            failure_record(pointer, kind="transient", message=message, now=now)
            token_event(
                partner, Kind.RETRYING, message, attempt=attempt, retry_after=retry_after, delay=round(delay, 1)
            )
            # Returned, not raised, so the failure rows commit; the caller raises RenewalRetry after the block.
            return RenewalResult(partner.pk, RenewalOutcome.RETRY, message, retry_after=delay)
        message = f"Renewal failed {max_attempts} times ({exc}); the next sweep tries again later"
        _renewal_failing(pointer, kind="transient")
        failure_record(pointer, kind="transient", message=message, now=now, next_attempt_at=now + GAVE_UP_PAUSE)
        token_event(partner, Kind.GAVE_UP, message, attempts=max_attempts)
        logger.warning("renewal of partner %s gave up after %d attempts: %s", partner.code, max_attempts, exc)
        return RenewalResult(partner.pk, RenewalOutcome.FAILED, message)
    if isinstance(exc, identity.AppNotFound):
        return _app_not_found(pointer, exc, now=now)
    if isinstance(exc, identity.ReconsentRequired | identity.MfaRequired | identity.ConditionalAccessBlocked):
        partner_mark_reconsent_needed(pointer=pointer, error=exc, now=now)
        return RenewalResult(partner.pk, RenewalOutcome.FAILED, str(exc))
    if isinstance(exc, identity.InvalidClient | identity.IdentityMisconfigured):
        message = f"The control panel's own app credential was refused ({exc}): rotate it"
        logger.error("OPERATOR ALERT: %s (partner %s)", message, partner.code)
        alert_raise(OperatorAlert.Condition.CREDENTIAL_REFUSED, message, now=now)
    else:
        message = f"Renewal failed ({exc})"
        logger.error("renewal of partner %s failed permanently: %s", partner.code, exc)
    _renewal_failing(pointer, kind=kind)
    failure_record(pointer, kind=kind, message=message, now=now, next_attempt_at=now + GAVE_UP_PAUSE)
    token_event(partner, Kind.OPERATOR_ALERT, message, kind=kind)
    return RenewalResult(partner.pk, RenewalOutcome.FAILED, message)


def _renewal_failing(pointer: PartnerToken, *, kind: str) -> None:
    """The event of a renewal that gave up, once per spell: not again while a give-up since the token's last renewal
    stands (the next success ends the spell)."""
    since = TokenEvent.objects.filter(partner_id=pointer.partner_id, kind__in=(Kind.GAVE_UP, Kind.OPERATOR_ALERT))
    if pointer.last_renewed_at is not None:
        since = since.filter(created_at__gt=pointer.last_renewed_at)
    if not since.exists():
        event_record(type=EventType.PARTNER_RENEWAL_FAILING, partner=pointer.partner, detail={"kind": kind[:32]})


def _app_not_found(pointer: PartnerToken, exc: identity.AppNotFound, *, now: datetime) -> RenewalResult:
    """AADSTS700016: for several partners within APP_NOT_FOUND_WINDOW (or while that alert is open), one operator
    alert and nobody marked; for this partner alone, twice, "re-consent needed"."""
    partner = pointer.partner
    seen = set(
        TokenEvent.objects.filter(
            kind=Kind.OPERATOR_ALERT, detail__kind=exc.kind, created_at__gte=now - APP_NOT_FOUND_WINDOW
        ).values_list("partner_id", flat=True)
    )
    others = len(seen - {partner.pk})
    seen_before = partner.pk in seen
    alert_open = OperatorAlert.objects.filter(
        condition=OperatorAlert.Condition.APP_NOT_FOUND, cleared_at__isnull=True
    ).exists()
    if alert_open or others + 1 >= APP_NOT_FOUND_PARTNERS:
        message = (
            f"Microsoft does not find the control panel's app for {others + 1} partners within "
            f"{APP_NOT_FOUND_WINDOW.total_seconds() / 3600:.0f} hour(s) ({exc}): check that the app registration "
            "exists, is multi-tenant and is in the partners' cloud; no partner was asked to consent again"
        )
        alert_raise(OperatorAlert.Condition.APP_NOT_FOUND, message, now=now)
    elif seen_before:
        partner_mark_reconsent_needed(
            pointer=pointer,
            error=identity.ReconsentRequired(
                f"The control panel's app was removed from the partner's tenant: {exc}",
                error=exc.error,
                codes=exc.codes,
                correlation_id=exc.correlation_id,
            ),
            now=now,
        )
        return RenewalResult(partner.pk, RenewalOutcome.FAILED, str(exc))
    else:
        message = (
            f"Microsoft does not find the control panel's app in the partner's tenant ({exc}); checked again later"
        )
    failure_record(pointer, kind=exc.kind, message=message, now=now, next_attempt_at=now + APP_NOT_FOUND_RETRY)
    token_event(partner, Kind.OPERATOR_ALERT, message, kind=exc.kind)
    return RenewalResult(partner.pk, RenewalOutcome.FAILED, message)

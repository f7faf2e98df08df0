"""Operator alerts: a condition that needs the vendor's operators, raised once (an email, a line on the overview)
and cleared when it ends, never once per task."""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from microsoft.app_credentials import Refusal
from partners.models import Partner
from partners.services import staff_admin_emails
from tokens.models import OperatorAlert, PartnerToken, TokenEvent
from tokens.selectors import EXPIRY_WARNING, TOKEN_LIFETIME, TokenStatus, token_health_expression

logger = logging.getLogger(__name__)

Condition = OperatorAlert.Condition

# Renewals failing at once for this share of the partners with a token (and at least RENEWALS_FAILING_MIN of
# them) is a condition of the control panel, not of the partners.
RENEWALS_FAILING_SHARE = 0.1
RENEWALS_FAILING_MIN = 2


def alert_raise(condition: str, message: str, *, now: datetime | None = None) -> bool:
    """Open the condition's alert (email after the commit), or refresh an open one's message: True when it opened."""
    now = now or timezone.now()
    with transaction.atomic():
        alert = OperatorAlert.objects.select_for_update().filter(condition=condition).first()
        if alert is not None and alert.cleared_at is None:
            if alert.message != message[:500]:
                alert.message = message[:500]
                alert.save(update_fields=["message"])
            return False
        alert = alert or OperatorAlert(condition=condition)
        alert.message, alert.raised_at, alert.cleared_at, alert.emailed_at = message[:500], now, None, now
        alert.save()
        logger.error("OPERATOR ALERT: %s", message)
        label = Condition(condition).label
        transaction.on_commit(lambda: _email_admins(label, message), robust=True)
    return True


def credential_refusals_alert(refused: tuple[Refusal, ...], *, now: datetime | None = None) -> None:
    """Raise the fallback alert when Entra refused some of the app's credentials before accepting another (a
    request that needed no fallback changes nothing)."""
    if not refused:
        return
    words = "; ".join(f"{refusal.credential} (AADSTS{refusal.code})" for refusal in refused)
    alert_raise(
        Condition.CREDENTIAL_FALLBACK,
        f"Microsoft refused {words}, and the control panel signed in with an older credential: replace or remove "
        "the refused one (python manage.py app_check says which Entra accepts)",
        now=now,
    )


def alert_clear(condition: str, *, now: datetime | None = None) -> bool:
    """Close the condition's open alert. Returns True when there was one."""
    cleared = OperatorAlert.objects.filter(condition=condition, cleared_at__isnull=True).update(
        cleared_at=now or timezone.now()
    )
    return bool(cleared)


def alerts_open() -> list[OperatorAlert]:
    return list(OperatorAlert.objects.filter(cleared_at__isnull=True).order_by("raised_at"))


def alerts_evaluate(*, now: datetime | None = None) -> None:
    """Count the sweep's conditions, and close the credential and app-not-found alerts once a token has moved since."""
    now = now or timezone.now()
    with_token = PartnerToken.objects.filter(partner__status=Partner.Status.ACTIVE).exclude(current_version="")
    # Token health as the dashboard reads it (one query): every active partner with a token, by health.
    healths = dict(
        Partner.objects.filter(status=Partner.Status.ACTIVE)
        .order_by()
        .annotate(health=token_health_expression(now=now))
        .exclude(health=TokenStatus.NONE)
        .values("health")
        .annotate(n=Count("id"))
        .values_list("health", "n")
    )
    total, failing = sum(healths.values()), healths.get(TokenStatus.FAILING, 0)
    _alert_while(
        Condition.RENEWALS_FAILING,
        bool(total) and failing >= max(RENEWALS_FAILING_MIN, RENEWALS_FAILING_SHARE * total),
        f"Renewals are failing for {failing} of {total} partners: look at the token events on their pages and at "
        "the workers' log",
        now=now,
    )
    expiring = with_token.filter(last_renewed_at__lte=now - (TOKEN_LIFETIME - EXPIRY_WARNING)).count()
    _alert_while(
        Condition.TOKENS_EXPIRING,
        expiring > 0,
        f"{expiring} partner token(s) have gone {(TOKEN_LIFETIME - EXPIRY_WARNING).days} days without a renewal and "
        "stop working at 90: renew them, or ask those partners to consent again",
        now=now,
    )
    # A token that moved since proves the app's credential and registration work again.
    for condition in (Condition.CREDENTIAL_REFUSED, Condition.APP_NOT_FOUND):
        alert = OperatorAlert.objects.filter(condition=condition, cleared_at__isnull=True).first()
        if (
            alert is not None
            and TokenEvent.objects.filter(kind__in=TokenEvent.MOVED, created_at__gt=alert.raised_at).exists()
        ):
            alert_clear(condition, now=now)


def _alert_while(condition: str, holds: bool, message: str, *, now: datetime) -> None:
    if holds:
        alert_raise(condition, message, now=now)
    else:
        alert_clear(condition, now=now)


def _email_admins(subject: str, message: str) -> None:
    recipients = staff_admin_emails()
    if not recipients:
        logger.warning("operator alert not emailed: no admin has an email address")
        return
    body = f"{message}.\n\nThe overview of the control panel shows it until it is resolved: {settings.CPV_BASE_URL}/\n"
    send_mail(f"Control panel alert: {subject}", body, None, recipients)

"""Invitation and re-consent links (signed, expiring, naming a partner), and the email that carries them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core import signing
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F
from django.template.loader import render_to_string
from django.urls import reverse

from partners.models import Partner
from partners.services import Actor, PartnerError, audit_record

SALT = "cpv.consent.invitation"
PURPOSES = ("invite", "reconsent", "self_onboarding")


class InvitationInvalid(Exception):
    """The link was altered, or names no partner that may consent."""


class InvitationExpired(InvitationInvalid):
    """The link was genuine but is past its lifetime."""


@dataclass(frozen=True)
class InvitationTarget:
    partner: Partner
    purpose: str
    # When the link stops working (its issue time plus CPV_INVITATION_MAX_AGE_DAYS).
    expires_at: datetime


def invitation_token(*, partner: Partner, purpose: str) -> str:
    """A link token for the partner's current link generation (see `link_issue` for a new link)."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown invitation purpose {purpose!r}")
    data = {"p": partner.code.hex, "k": purpose, "g": partner.link_generation}
    return signing.dumps(data, salt=SALT, compress=False)


def invitation_url(*, partner: Partner, purpose: str) -> str:
    """The absolute link for a partner; built from CPV_BASE_URL, never from a request."""
    token = invitation_token(partner=partner, purpose=purpose)
    return settings.CPV_BASE_URL + reverse("consent:landing", args=[token])


def link_issue(*, partner: Partner, purpose: str) -> str:
    """A new link for the partner: every link issued before it stops working. Returns its absolute URL."""
    links_invalidate(partner=partner)
    return invitation_url(partner=partner, purpose=purpose)


def links_invalidate(*, partner: Partner) -> None:
    """Every link issued so far stops working (a newer one replaces them, or a consent used one)."""
    Partner.objects.filter(pk=partner.pk).update(link_generation=F("link_generation") + 1)
    partner.refresh_from_db(fields=["link_generation"])


def invitation_read(token: str) -> InvitationTarget:
    """The partner and purpose a link names. Raises InvitationExpired or InvitationInvalid."""
    max_age = timedelta(days=settings.CPV_INVITATION_MAX_AGE_DAYS)
    try:
        data = signing.loads(token, salt=SALT, max_age=max_age)
    except signing.SignatureExpired:
        raise InvitationExpired("the link has expired") from None
    except signing.BadSignature:
        raise InvitationInvalid("the link is not one of ours") from None
    try:
        code = uuid.UUID(str(data["p"]))
        purpose = str(data["k"])
        generation = int(data.get("g", 0))
        issued_at = datetime.fromtimestamp(signing.b62_decode(token.split(":")[-2]), tz=UTC)
    except (KeyError, TypeError, ValueError, IndexError):
        raise InvitationInvalid("the link is malformed") from None
    partner = Partner.objects.filter(code=code).first()
    if partner is None or partner.status == Partner.Status.DEACTIVATED or partner.deleted_at is not None:
        raise InvitationExpired("the partner is not accepting consent links")
    if purpose not in PURPOSES:
        raise InvitationInvalid("the link is malformed")
    if generation != partner.link_generation:
        raise InvitationExpired("the link was replaced by a newer one, or already used for a consent")
    return InvitationTarget(partner=partner, purpose=purpose, expires_at=issued_at + max_age)


def link_send_after_commit(*, partner: Partner, url: str, subject: str, intro: str) -> None:
    """Email the partner's contact the link once the caller's transaction commits; a failure to send is only logged."""
    transaction.on_commit(robust=True, func=lambda: _link_send(partner=partner, url=url, subject=subject, intro=intro))


def _link_send(*, partner: Partner, url: str, subject: str, intro: str) -> None:
    vendor = settings.CPV_VENDOR
    body = render_to_string(
        "email/consent_link.txt",
        {
            "partner": partner,
            "url": url,
            "intro": intro,
            "days": settings.CPV_INVITATION_MAX_AGE_DAYS,
            "vendor": vendor,
        },
    )
    send_mail(vendor.subject(subject), body, None, [partner.contact_email])


def partner_reconsent_link(
    *,
    actor: Actor,
    partner: Partner,
    send_email: bool = False,
    subject: str = "please renew your consent",
    intro: str = "Your organisation's consent needs to be renewed. Open this link and sign in again:",
) -> str:
    """A fresh link to consent again (the working token stays until it succeeds), emailed when `send_email`."""
    if partner.status == Partner.Status.DEACTIVATED:
        raise PartnerError("This partner is deactivated; reactivate it before asking for consent.")
    with transaction.atomic():
        # In the transaction of its audit row: the earlier links stop working only if this one is recorded.
        url = link_issue(partner=partner, purpose="reconsent")
        audit_record(
            actor=actor,
            action="partner.reconsent_link_created",
            partner=partner,
            detail={"emailed": send_email},
        )
        if send_email:
            link_send_after_commit(partner=partner, url=url, subject=subject, intro=intro)
    return url

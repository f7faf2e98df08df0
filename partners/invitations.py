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

from partners.models import Partner, SentEmail
from partners.services import Actor, PartnerError, audit_record

SALT = "cpv.consent.invitation"
PURPOSES = ("invite", "reconsent", "self_onboarding")


class InvitationInvalid(Exception):
    """The link was altered, or names no partner that may consent."""


class InvitationExpired(InvitationInvalid):
    """The link was genuine but no longer works: `why` says how (expired, replaced, closed), `link` what it named."""

    def __init__(self, message: str, *, why: str = "expired", link: StaleLink | None = None) -> None:
        super().__init__(message)
        self.why = why
        self.link = link


@dataclass(frozen=True)
class StaleLink:
    """What a genuine link that no longer works named: the partner, its purpose and the generation it was issued in."""

    partner: Partner
    purpose: str
    generation: int


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


def links_invalidate_locked(partner: Partner) -> str:
    """`links_invalidate` on a partner row the caller holds locked and is about to save: the field to save with it."""
    partner.link_generation += 1
    return "link_generation"


def invitation_read(token: str) -> InvitationTarget:
    """The partner and purpose a link names. Raises InvitationExpired (with what the link named, when it is genuine
    and its partner exists) or InvitationInvalid."""
    max_age = timedelta(days=settings.CPV_INVITATION_MAX_AGE_DAYS)
    try:
        # Checked for its signature first, for its age below: an expired link still says whose it was.
        data = signing.loads(token, salt=SALT)
    except signing.BadSignature:
        raise InvitationInvalid("the link is not one of ours") from None
    try:
        code = uuid.UUID(str(data["p"]))
        purpose = str(data["k"])
        generation = int(data.get("g", 0))
        issued_at = datetime.fromtimestamp(signing.b62_decode(token.split(":")[-2]), tz=UTC)
    except (KeyError, TypeError, ValueError, IndexError):
        raise InvitationInvalid("the link is malformed") from None
    if purpose not in PURPOSES:
        raise InvitationInvalid("the link is malformed")
    partner = Partner.objects.filter(code=code).first()
    if partner is None:
        raise InvitationInvalid("the link names no partner")
    link = StaleLink(partner=partner, purpose=purpose, generation=generation)
    if partner.status == Partner.Status.DEACTIVATED or partner.deleted_at is not None:
        raise InvitationExpired("the partner is not accepting consent links", why="closed", link=link)
    if generation != partner.link_generation:
        raise InvitationExpired(
            "the link was replaced by a newer one, or already used for a consent", why="replaced", link=link
        )
    if datetime.now(tz=UTC) - issued_at > max_age:
        raise InvitationExpired("the link has expired", why="expired", link=link)
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
    partner_email_send(partner=partner, subject=vendor.subject(subject), body=body)


def partner_email_send(*, partner: Partner, subject: str, body: str) -> SentEmail:
    """Email the partner's contact and record that it went out (time, to, subject; never the body): the record.
    Raises what the mail backend raises, recording nothing."""
    send_mail(subject, body, None, [partner.contact_email])
    return SentEmail.objects.create(partner=partner, to=partner.contact_email, subject=subject[:300])


# A fresh link asked for from a dead-end page goes out at most this often per partner: the page can be reloaded,
# and every new link replaces the one before.
FRESH_LINK_EVERY = timedelta(minutes=10)


def partner_fresh_link_send(*, partner: Partner, purpose: str) -> bool:
    """From a link that no longer works: email a fresh one to the partner's contact (never to the browser asking),
    audited as the system's; True when one was sent now, False when one went out in the last FRESH_LINK_EVERY.
    Raises PartnerError for a deactivated or deleted partner."""
    if partner.status == Partner.Status.DEACTIVATED or partner.deleted_at is not None:
        raise PartnerError("This partner is not accepting consent links; write to the vendor.")
    purpose = purpose if purpose in PURPOSES else "invite"
    with transaction.atomic():
        locked = Partner.objects.select_for_update().get(pk=partner.pk)
        since = datetime.now(tz=UTC) - FRESH_LINK_EVERY
        if locked.audit_events.filter(action="partner.fresh_link_sent", created_at__gte=since).exists():
            return False
        url = link_issue(partner=locked, purpose=purpose)
        audit_record(actor=None, action="partner.fresh_link_sent", partner=locked, detail={"emailed": True})
        link_send_after_commit(
            partner=locked,
            url=url,
            subject="your new consent link",
            intro="Someone opened an earlier consent link for your organisation that no longer works, and asked for "
            "a new one. Open this link and sign in to consent:",
        )
    return True


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

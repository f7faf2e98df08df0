"""The staff actions on a partner in one table (words, buttons, bulk labels, when offered, what runs), read by the
views, the bulk form and the partner's page."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from customers.coverage import Coverage
from customers.selectors import coverage_for
from dashboard import operations
from partners.invitations import partner_reconsent_link
from partners.models import Partner
from partners.services import DELETABLE, partner_deactivate, partner_delete, partner_reactivate
from tokens.models import PartnerToken
from tokens.selectors import TOKEN_LIFETIME, TokenStatus, token_health
from tokens.store import partner_token_revoke

Actor = AbstractBaseUser | AnonymousUser
Run = Callable[[Actor, Partner, dict[str, str]], str]


@dataclass(frozen=True)
class Action:
    title: str  # the confirmation page's heading
    explanation: str  # what will happen, on the confirmation page
    button: str  # the confirmation page's button
    run: Run  # does it; returns the message for staff; raises PartnerError
    label: str  # the button on the partner's page
    # Offered for an active partner only (the others are offered whatever the state, but never when deactivated).
    active_only: bool = False
    needs_token: bool = False
    danger: bool = False
    reason: bool = False  # asks for a reason
    email: bool = False  # offers to email the link
    bulk: str = ""  # its label in the list's bulk action menu; "" when it does not run in bulk
    bulk_data: dict[str, str] = field(default_factory=dict)  # what a bulk run passes for the form's fields
    # Where staff land after it: the partner's page, or the list when the partner is gone from view.
    then_list: bool = False
    queues: bool = False  # its work runs in the background: staff are told it is queued, not done


def _operation(kind: str) -> Run:
    def run(actor: Actor, partner: Partner, data: dict[str, str]) -> str:
        bulk = uuid.UUID(data["bulk"]) if data.get("bulk") else None
        event = operations.operation_start(actor=actor, partner=partner, kind=kind, bulk=bulk)
        total = event.detail["total"]
        return f"{operations.KIND_LABELS[kind]} queued for {partner.name} ({plural(total, 'task')})."

    return run


def _reconsent(actor: Actor, partner: Partner, data: dict[str, str]) -> str:
    url = partner_reconsent_link(actor=actor, partner=partner, send_email=bool(data.get("send_email")))
    return f"A new consent link for {partner.name}: {url}"


def _revoke(actor: Actor, partner: Partner, data: dict[str, str]) -> str:
    partner_token_revoke(actor=actor, partner=partner, reason=data.get("reason", ""))
    return (
        f"The token of {partner.name} is disabled in the vault and no longer used; access tokens already handed out "
        "expire within the hour. The partner must consent again."
    )


def _offboard(actor: Actor, partner: Partner, data: dict[str, str]) -> str:
    return operations.offboarding_start(actor=actor, partner=partner)


def _deactivate(actor: Actor, partner: Partner, data: dict[str, str]) -> str:
    partner_deactivate(actor=actor, partner=partner, reason=data.get("reason", ""))
    return f"{partner.name} is deactivated. You can reactivate it from its page."


def token_usable(partner: Partner) -> bool:
    """Whether the partner's token, by its own facts, can still be redeemed (held, not revoked or dead, younger than
    Entra's 90-day inactivity limit)."""
    health = token_health(partner)
    alive = health.status in (TokenStatus.HEALTHY, TokenStatus.DUE, TokenStatus.FAILING)
    return alive and (health.age is None or health.age < TOKEN_LIFETIME)


def _reactivate(actor: Actor, partner: Partner, data: dict[str, str]) -> str:
    done = partner_reactivate(actor=actor, partner=partner, token_usable=token_usable(partner))
    return f"{partner.name} is {done.partner.get_status_display().lower()} again. {done.next_step}"


def _delete(actor: Actor, partner: Partner, data: dict[str, str]) -> str:
    partner_delete(actor=actor, partner=partner, reason=data.get("reason", ""))
    return f"{partner.name} is deleted; its consent links no longer work. The audit log keeps its history."


def plural(count: int, noun: str, nouns: str = "") -> str:
    """'1 partner', '3 partners': a count with its noun, never 'partner(s)'."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


ACTIONS: dict[str, Action] = {
    "renew": Action(
        "Renew the token now",
        "The partner's refresh token is redeemed now (in the background) and the new one kept as a new vault "
        "version. Each renewal uses one of the secret's 500 versions.",
        "Renew now",
        _operation(operations.RENEW),
        queues=True,
        label="Renew now",
        active_only=True,
        bulk="Renew tokens now",
    ),
    "sync": Action(
        "Sync customers",
        "The partner's customers are listed from Partner Center (in the background); new ones are added and the "
        "ones that left are marked removed.",
        "Sync customers",
        _operation(operations.SYNC),
        queues=True,
        label="Sync customers",
        active_only=True,
        bulk="Sync customers",
    ),
    "apply": Action(
        "Apply ApplicationConsent",
        "The vendor's app is put into every present customer tenant that lacks it, has failed, or has older "
        "grants, one background task per customer.",
        "Apply to all that need it",
        _operation(operations.APPLY),
        queues=True,
        label="Apply consents",
        active_only=True,
        bulk="Apply ApplicationConsent",
    ),
    "apply_failed": Action(
        "Apply ApplicationConsent to failed customers",
        "ApplicationConsent is tried again for the customers whose last attempt failed.",
        "Retry the failed ones",
        _operation(operations.APPLY_FAILED),
        queues=True,
        label="Retry {failed_consents}",
        active_only=True,
        bulk="Apply ApplicationConsent to failed customers",
    ),
    "verify": Action(
        "Verify in each customer tenant",
        "Each customer with an applied ApplicationConsent is read in Microsoft Graph, in its own tenant: is the "
        "vendor's app there with every permission it was granted? A customer found drifted or missing is repaired "
        "(the consent removed and applied again, up to three times) and read again. No Partner Center request is "
        "spent on a healthy customer.",
        "Verify and repair",
        _operation(operations.VERIFY),
        label="Verify in customer tenants",
        active_only=True,
        bulk="Verify ApplicationConsent in customer tenants (repair what drifted)",
    ),
    "reconsent_link": Action(
        "Create a consent link",
        "A fresh signed link with which the partner's admin consents again. The current token keeps working "
        "until the new consent succeeds.",
        "Create the link",
        _reconsent,
        label="Create a consent link",
        email=True,
        bulk="Email a consent link",
        bulk_data={"send_email": "1"},
    ),
    "revoke": Action(
        "Revoke the token",
        "The token's versions are disabled in the vault at once and the partner is marked as needing "
        "re-consent: no worker redeems it or hands out an access token from it any more. Access tokens already "
        "handed out stay valid until they expire (about an hour). Microsoft still holds the partner's consent: "
        "only the partner's own administrator can withdraw it (by removing the app in their tenant).",
        "Revoke the token",
        _revoke,
        label="Revoke token",
        needs_token=True,
        danger=True,
        reason=True,
    ),
    "offboard": Action(
        "Offboard the partner",
        "The vendor's app is taken out of every one of the partner's customers (ApplicationConsent removed, then "
        "checked gone in each tenant the partner can still read); from now no consent is applied or repaired for "
        "it. Once every customer is done, its token is revoked, the partner is deactivated and emailed how to "
        "withdraw its own consent. This runs in the background and resumes where it stopped; the partner's page "
        "shows the progress. It cannot be undone: the partner would have to consent again and every customer be "
        "consented again.",
        "Offboard",
        _offboard,
        label="Offboard",
        active_only=True,
        needs_token=True,
        danger=True,
    ),
    "deactivate": Action(
        "Deactivate the partner",
        "No more renewals, syncs or consents run for the partner, and its consent links stop working. The "
        "token stays in the vault until it expires (revoke it to disable it now).",
        "Deactivate",
        _deactivate,
        label="Deactivate",
        danger=True,
        reason=True,
        bulk="Deactivate",
    ),
    "reactivate": Action(
        "Reactivate the partner",
        "The partner is served again: active when its token still works, otherwise marked as needing consent so "
        "that a new consent link brings it back. Its earlier consent links work again until they expire.",
        "Reactivate",
        _reactivate,
        label="Reactivate",
    ),
    "delete": Action(
        "Delete this invitation",
        "For a partner that never consented (a stray or duplicate invitation): it disappears from the lists and "
        "its consent links stop working. The audit log keeps its history.",
        "Delete",
        _delete,
        label="Delete invitation",
        danger=True,
        reason=True,
        then_list=True,
    ),
}
# The list's bulk action menu, in the table's order.
BULK_ACTIONS: list[tuple[str, str]] = [(name, action.bulk) for name, action in ACTIONS.items() if action.bulk]


@dataclass(frozen=True)
class Offered:
    """An action offered on a partner's page; `style` is primary, secondary or danger."""

    name: str
    label: str
    style: str

    @property
    def element_id(self) -> str:
        return "action-" + self.name.replace("_", "-")


def actions_for(partner: Partner, *, has_token: bool, failed_customers: int) -> list[Offered]:
    """The actions that can succeed for the partner's state, the one that matters most first."""
    if partner.deleted_at is not None:
        return []
    if partner.status == Partner.Status.DEACTIVATED:
        return [Offered("reactivate", ACTIONS["reactivate"].label, "primary")]
    if partner.offboarding_started_at is not None:
        # Being offboarded: its page shows the progress; nothing else runs for it meanwhile.
        return []
    active = partner.status == Partner.Status.ACTIVE
    primary = "renew" if active else "reconsent_link"
    offered: list[Offered] = []
    for name, action in ACTIONS.items():
        if (action.active_only and not active) or (action.needs_token and not has_token):
            continue
        if name == "apply_failed" and not failed_customers:
            continue
        if name == "reactivate" or (name == "delete" and partner.status not in DELETABLE):
            continue
        style = "danger" if action.danger else "primary" if name == primary else "secondary"
        label = action.label.format(failed_consents=plural(failed_customers, "failed consent"))
        offered.append(Offered(name, label, style))
    return sorted(offered, key=lambda o: {"primary": 0, "secondary": 1, "danger": 2}[o.style])


def offered_names(partner: Partner) -> set[str]:
    """The names of the actions offered for the partner now (what a POST may run)."""
    has_token = PartnerToken.objects.filter(partner=partner).exclude(current_version="").exists()
    failed = coverage_for([partner.pk]).get(partner.pk, Coverage()).failed
    return {o.name for o in actions_for(partner, has_token=has_token, failed_customers=failed)}

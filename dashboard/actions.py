"""Staff actions: inviting a partner, and the dashboard's actions on one partner or many.

Every action is a POST behind a confirmation page (a GET shows what will happen; the form on it POSTs with
`confirmed`), needs the operator role, and is audited with the acting user by the service it calls.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django import forms
from django.contrib import messages
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from consent.services import partner_invite
from cpv.clouds import PARTNER_CLOUD_CHOICES
from customers.coverage import Coverage
from customers.selectors import coverage_for
from dashboard import operations, selectors
from dashboard.forms import BULK_ACTIONS, BulkForm, ReasonForm
from partners.access import Role, partner_for_staff, staff_view
from partners.invitations import partner_reconsent_link
from partners.models import Partner
from partners.services import PartnerError, partner_deactivate
from tokens.models import PartnerToken
from tokens.store import partner_token_revoke


class InvitationForm(forms.Form):
    name = forms.CharField(max_length=200, label="Company name")
    contact_email = forms.EmailField(max_length=254, label="Contact email")
    cloud = forms.ChoiceField(choices=PARTNER_CLOUD_CHOICES, initial="global")
    environment = forms.ChoiceField(choices=Partner.Environment.choices, initial=Partner.Environment.PRODUCTION)
    tenant_id = forms.UUIDField(required=False, label="Tenant id (optional: pins the invitation)")
    send_email = forms.BooleanField(required=False, initial=True, label="Email the link to the contact")


@staff_view(see=Role.VIEWER, act=Role.OPERATOR)
@require_http_methods(["GET", "POST"])
def invite(request: HttpRequest) -> HttpResponse:
    form = InvitationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            invitation = partner_invite(
                actor=request.user,
                name=data["name"],
                contact_email=data["contact_email"],
                cloud=data["cloud"],
                environment=data["environment"],
                tenant_id=data["tenant_id"],
                send_email=data["send_email"],
            )
        except PartnerError as exc:
            form.add_error(None, str(exc))
        else:
            selectors.overview_trends_forget()
            messages.success(request, f"Invited {invitation.partner.name}. Their link: {invitation.url}")
            return HttpResponseRedirect(reverse("dashboard:detail", args=[invitation.partner.code]))
    return render(request, "dashboard/invite.html", {"form": form}, status=400 if form.errors else 200)


@staff_view(see=Role.VIEWER, act=Role.OPERATOR)
@require_POST
def reconsent_link(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    partner = partner_for_staff(code)
    try:
        url = partner_reconsent_link(actor=request.user, partner=partner, send_email=bool(request.POST.get("send")))
    except PartnerError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"A new consent link for {partner.name}: {url}")
    return HttpResponseRedirect(reverse("dashboard:detail", args=[partner.code]))


# --- the dashboard's actions on one partner ------------------------------------------------------------------

Actor = AbstractBaseUser | AnonymousUser


@dataclass(frozen=True)
class Action:
    title: str
    explanation: str
    button: str
    run: Callable[[Actor, Partner, dict[str, str]], str]
    danger: bool = False
    reason: bool = False
    email: bool = False


def _operation(kind: str) -> Callable[[Actor, Partner, dict[str, str]], str]:
    def run(actor: Actor, partner: Partner, data: dict[str, str]) -> str:
        event = operations.operation_start(actor=actor, partner=partner, kind=kind)
        return f"{operations.KIND_LABELS[kind]} queued for {partner.name} ({event.detail['total']} task(s))."

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


def _deactivate(actor: Actor, partner: Partner, data: dict[str, str]) -> str:
    partner_deactivate(actor=actor, partner=partner, reason=data.get("reason", ""))
    return f"{partner.name} is deactivated."


ACTIONS: dict[str, Action] = {
    "renew": Action(
        "Renew the token now",
        "The partner's refresh token is redeemed now (in the background) and the new one kept as a new vault "
        "version. Each renewal uses one of the secret's 500 versions.",
        "Renew now",
        _operation(operations.RENEW),
    ),
    "sync": Action(
        "Sync customers",
        "The partner's customers are listed from Partner Center (in the background); new ones are added and the "
        "ones that left are marked removed.",
        "Sync customers",
        _operation(operations.SYNC),
    ),
    "apply": Action(
        "Apply ApplicationConsent",
        "The vendor's app is put into every present customer tenant that lacks it, has failed, or has older "
        "grants, one background task per customer.",
        "Apply to all that need it",
        _operation(operations.APPLY),
    ),
    "apply_failed": Action(
        "Apply ApplicationConsent to failed customers",
        "ApplicationConsent is tried again for the customers whose last attempt failed.",
        "Retry the failed ones",
        _operation(operations.APPLY_FAILED),
    ),
    "reconsent_link": Action(
        "Create a consent link",
        "A fresh signed link with which the partner's admin consents again. The current token keeps working "
        "until the new consent succeeds.",
        "Create the link",
        _reconsent,
        email=True,
    ),
    "revoke": Action(
        "Revoke the token",
        "The token's versions are disabled in the vault at once and the partner is marked as needing "
        "re-consent: no worker redeems it or hands out an access token from it any more. Access tokens already "
        "handed out stay valid until they expire (about an hour). Microsoft still holds the partner's consent: "
        "only the partner's own administrator can withdraw it (by removing the app in their tenant).",
        "Revoke the token",
        _revoke,
        danger=True,
        reason=True,
    ),
    "deactivate": Action(
        "Deactivate the partner",
        "No more renewals, syncs or consents run for the partner, and its consent links stop working. The "
        "token stays in the vault until it expires (revoke it to disable it now).",
        "Deactivate",
        _deactivate,
        danger=True,
        reason=True,
    ),
}


@dataclass(frozen=True)
class Offered:
    """An action offered on a partner's page: `style` is primary (the one that matters most now), secondary or
    danger."""

    name: str
    label: str
    style: str

    @property
    def element_id(self) -> str:
        return "action-" + self.name.replace("_", "-")


def actions_for(partner: Partner, *, has_token: bool, failed_customers: int) -> list[Offered]:
    """Only the actions that can succeed for the partner's state, the one that matters most first."""
    status = partner.status
    if status == Partner.Status.DEACTIVATED:
        return []
    offered: list[Offered] = []
    if status == Partner.Status.ACTIVE:
        offered += [
            Offered("renew", "Renew now", "primary"),
            Offered("sync", "Sync customers", "secondary"),
            Offered("apply", "Apply consents", "secondary"),
        ]
        if failed_customers:
            offered.append(Offered("apply_failed", f"Retry {failed_customers} failed consent(s)", "secondary"))
        offered.append(Offered("reconsent_link", "Create a consent link", "secondary"))
    else:
        # Invited, pending or needing re-consent: a consent is what moves the partner on.
        offered.append(Offered("reconsent_link", "Create a consent link", "primary"))
    if has_token:
        offered.append(Offered("revoke", "Revoke token", "danger"))
    offered.append(Offered("deactivate", "Deactivate", "danger"))
    return offered


def _offered_names(partner: Partner) -> set[str]:
    has_token = PartnerToken.objects.filter(partner=partner).exclude(current_version="").exists()
    failed = coverage_for([partner.pk]).get(partner.pk, Coverage()).failed
    return {o.name for o in actions_for(partner, has_token=has_token, failed_customers=failed)}


@staff_view(see=Role.VIEWER, act=Role.OPERATOR)
@require_http_methods(["GET", "POST"])
def partner_action(request: HttpRequest, code: uuid.UUID, action: str) -> HttpResponse:
    """GET: the confirmation page. POST with `confirmed`: run the action and go back to the partner's page."""
    what = ACTIONS.get(action)
    if what is None:
        raise Http404
    partner = partner_for_staff(code)
    if action not in _offered_names(partner):
        messages.error(
            request, f"“{what.title}” is not available while {partner.name} is {partner.get_status_display().lower()}."
        )
        return HttpResponseRedirect(reverse("dashboard:detail", args=[partner.code]))
    form = ReasonForm(request.POST or None)
    if request.method == "POST" and request.POST.get("confirmed") == "yes" and form.is_valid():
        try:
            message = what.run(request.user, partner, form.cleaned_data)
        except PartnerError as exc:
            messages.error(request, str(exc))
        else:
            selectors.overview_trends_forget()
            messages.success(request, message)
        return HttpResponseRedirect(reverse("dashboard:detail", args=[partner.code]))
    context = {"partner": partner, "action": action, "what": what, "form": form}
    return render(request, "dashboard/confirm.html", context)


# --- bulk actions from the list ------------------------------------------------------------------------------

BULK_RUN: dict[str, Callable[[Actor, Partner, dict[str, str]], str]] = {
    "renew": _operation(operations.RENEW),
    "sync": _operation(operations.SYNC),
    "apply": _operation(operations.APPLY),
    "apply_failed": _operation(operations.APPLY_FAILED),
    "reconsent_link": lambda actor, partner, data: _reconsent(actor, partner, {"send_email": "1"}),
    "deactivate": _deactivate,
}


@staff_view(see=Role.VIEWER, act=Role.OPERATOR)
@require_POST
def bulk(request: HttpRequest) -> HttpResponse:
    """The selected partners and an action: first a confirmation page listing them, then (with `confirmed`)
    the action on each; a partner the action does not apply to is reported and skipped."""
    form = BulkForm(request.POST)
    back = request.POST.get("back", "") or reverse("dashboard:list")
    if not back.startswith("/") or not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        back = reverse("dashboard:list")
    if not form.is_valid():
        messages.error(
            request,
            "Choose an action and at least one partner. " + " ".join(str(e) for e in form.errors.get("partners", [])),
        )
        return HttpResponseRedirect(back)
    action = form.cleaned_data["action"]
    partners = list(Partner.objects.filter(code__in=form.cleaned_data["partners"]).order_by("name", "id"))
    if not form.cleaned_data["confirmed"]:
        context = {
            "partners": partners,
            "action": action,
            "label": dict(BULK_ACTIONS)[action],
            "back": back,
            "danger": action == "deactivate",
        }
        return render(request, "dashboard/bulk_confirm.html", context)
    done, skipped = 0, []
    for partner in partners:
        try:
            BULK_RUN[action](request.user, partner, {})
            done += 1
        except PartnerError as exc:
            skipped.append(f"{partner.name}: {exc}")
    # The overview the operator goes back to counts their change, not a minute-old picture.
    selectors.overview_trends_forget()
    messages.success(request, f"{dict(BULK_ACTIONS)[action]}: done for {done} partner(s).")
    for line in skipped[:20]:
        messages.warning(request, f"Skipped {line}")
    return HttpResponseRedirect(back)

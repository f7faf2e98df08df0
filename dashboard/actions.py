"""Staff actions on one partner or many, and inviting a partner: each a POST behind a confirmation page, for
operators, audited by the service it calls."""

from __future__ import annotations

import uuid

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from consent.services import partner_invite
from cpv.clouds import PARTNER_CLOUD_CHOICES
from dashboard import operations, selectors
from dashboard.forms import BulkForm, ReasonForm
from dashboard.staff_actions import ACTIONS, BULK_ACTIONS, offered_names, plural
from partners.access import Role, partner_for_staff, staff_view
from partners.invitations import partner_reconsent_link
from partners.models import Customer, Partner
from partners.services import PartnerError


class InvitationForm(forms.Form):
    name = forms.CharField(max_length=200, label="Company name")
    contact_email = forms.EmailField(max_length=254, label="Contact email")
    cloud = forms.ChoiceField(choices=PARTNER_CLOUD_CHOICES, initial="global")
    environment = forms.ChoiceField(choices=Partner.Environment.choices, initial=Partner.Environment.PRODUCTION)
    tenant_id = forms.UUIDField(required=False, label="Tenant id (optional: pins the invitation)")
    send_email = forms.BooleanField(required=False, initial=True, label="Email the link to the contact")
    # Asked only once the page has warned of look-alike partners.
    duplicate_ok = forms.BooleanField(required=False, widget=forms.HiddenInput)


@staff_view(see=Role.VIEWER, act=Role.OPERATOR)
@require_http_methods(["GET", "POST"])
def invite(request: HttpRequest) -> HttpResponse:
    form = InvitationForm(request.POST or None)
    look_alikes: list[selectors.LookAlike] = []
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        look_alikes = selectors.partners_like(
            name=data["name"], contact_email=data["contact_email"], tenant_id=data["tenant_id"]
        )
        if look_alikes and not data["duplicate_ok"]:
            # Warn once; the same form posted again (with duplicate_ok) invites anyway.
            form = InvitationForm({**request.POST.dict(), "duplicate_ok": "on"})
            form.is_valid()
            return render(request, "dashboard/invite.html", {"form": form, "look_alikes": look_alikes}, status=409)
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
    context = {"form": form, "look_alikes": look_alikes}
    return render(request, "dashboard/invite.html", context, status=400 if form.errors else 200)


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


@staff_view(see=Role.VIEWER, act=Role.OPERATOR)
@require_http_methods(["GET", "POST"])
def partner_action(request: HttpRequest, code: uuid.UUID, action: str) -> HttpResponse:
    """GET: the confirmation page. POST with `confirmed`: run the action and go back to the partner's page."""
    what = ACTIONS.get(action)
    if what is None:
        raise Http404
    partner = partner_for_staff(code)
    if action not in offered_names(partner):
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
            if what.then_list:
                return HttpResponseRedirect(reverse("dashboard:list"))
        return HttpResponseRedirect(reverse("dashboard:detail", args=[partner.code]))
    context = {"partner": partner, "action": action, "what": what, "form": form}
    return render(request, "dashboard/confirm.html", context)


@staff_view(see=Role.VIEWER, act=Role.OPERATOR)
@require_POST
def customer_action(request: HttpRequest, code: uuid.UUID, tenant: uuid.UUID, action: str) -> HttpResponse:
    """Verify, apply again or reset one customer's ApplicationConsent (queued), then back to its partner's page."""
    partner = partner_for_staff(code)
    try:
        message = operations.customer_action_start(actor=request.user, partner=partner, tenant_id=tenant, action=action)
    except Customer.DoesNotExist:
        raise Http404 from None
    except PartnerError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, message)
    return HttpResponseRedirect(reverse("dashboard:detail", args=[partner.code]) + "#customers")


@staff_view(see=Role.VIEWER, act=Role.OPERATOR)
@require_POST
def repair_drifted(request: HttpRequest) -> HttpResponse:
    """Repair every drifted or missing customer (queued), then back to the overview."""
    try:
        messages.success(request, operations.drifted_repair_start(actor=request.user))
    except PartnerError as exc:
        messages.error(request, str(exc))
    return HttpResponseRedirect(reverse("dashboard:home") + "#coverage")


# --- bulk actions from the list ------------------------------------------------------------------------------


@staff_view(see=Role.VIEWER, act=Role.OPERATOR)
@require_POST
def bulk(request: HttpRequest) -> HttpResponse:
    """The selected partners and an action: a confirmation page, then (with `confirmed`) the action on each, skipping
    and reporting partners it does not apply to."""
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
    partners = list(
        Partner.objects.filter(code__in=form.cleaned_data["partners"], deleted_at__isnull=True).order_by("name", "id")
    )
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
    # One id for every operation this bulk action starts: the partners it covered, read back together.
    data = {**ACTIONS[action].bulk_data, "bulk": str(uuid.uuid4())}
    for partner in partners:
        try:
            ACTIONS[action].run(request.user, partner, data)
            done += 1
        except PartnerError as exc:
            skipped.append(f"{partner.name}: {exc}")
    # The overview the operator goes back to counts their change, not a minute-old picture.
    selectors.overview_trends_forget()
    did = "queued" if ACTIONS[action].queues else "done"
    summary = f"{dict(BULK_ACTIONS)[action]}: {did} for {plural(done, 'partner')}."
    if ACTIONS[action].queues and done:
        # The list of what it started says how far each got (queued, running, done).
        follow = reverse("dashboard:bulk_operations", args=[data["bulk"]])
        messages.success(
            request, format_html('{} <a href="{}" id="bulk-progress">Follow their progress</a>.', summary, follow)
        )
    else:
        messages.success(request, summary)
    for line in skipped[:20]:
        messages.warning(request, f"Skipped {line}")
    return HttpResponseRedirect(back)

"""Staff actions on consent: inviting a partner, and a fresh consent link for one."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from consent.services import partner_invite, partner_reconsent_link
from cpv.clouds import PARTNER_CLOUD_CHOICES
from partners.access import staff_required
from partners.models import Partner
from partners.services import PartnerError


class InvitationForm(forms.Form):
    name = forms.CharField(max_length=200, label="Company name")
    contact_email = forms.EmailField(max_length=254, label="Contact email")
    cloud = forms.ChoiceField(choices=PARTNER_CLOUD_CHOICES, initial="global")
    environment = forms.ChoiceField(choices=Partner.Environment.choices, initial=Partner.Environment.PRODUCTION)
    tenant_id = forms.UUIDField(required=False, label="Tenant id (optional: pins the invitation)")
    send_email = forms.BooleanField(required=False, initial=True, label="Email the link to the contact")


@staff_required
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
            messages.success(request, f"Invited {invitation.partner.name}. Their link: {invitation.url}")
            return HttpResponseRedirect(reverse("partners:detail", args=[invitation.partner.code]))
    return render(request, "consent/staff_invite.html", {"form": form}, status=400 if form.errors else 200)


@staff_required
@require_POST
def reconsent_link(request: HttpRequest, code: str) -> HttpResponse:
    partner = get_object_or_404(Partner, code=code)
    try:
        url = partner_reconsent_link(actor=request.user, partner=partner, send_email=bool(request.POST.get("send")))
    except PartnerError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"A new consent link for {partner.name}: {url}")
    return HttpResponseRedirect(reverse("partners:detail", args=[partner.code]))

"""The partner-facing consent pages: landing, self-onboarding, callback, result. Nothing from a third party; the
callback and result send `Referrer-Policy: no-referrer`."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django import forms
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from consent import oauth_state, services
from consent.models import ConsentFlow
from consent.outcomes import SUCCESS, outcome
from consent.pages import form_page, private
from cpv.clouds import PARTNER_CLOUD_CHOICES
from cpv.ratelimit import too_many
from microsoft import permissions
from partners.invitations import InvitationExpired, InvitationInvalid, invitation_read, invitation_token
from partners.models import Partner
from partners.registrations import app_for
from partners.services import PartnerError

logger = logging.getLogger(__name__)


def _browser_key(request: HttpRequest) -> str:
    return oauth_state.browser_key(request, services.BROWSER_COOKIE)


def _bind_browser(response: HttpResponse, key: str) -> None:
    oauth_state.browser_bind(
        response, cookie=services.BROWSER_COOKIE, key=key, seconds=settings.CPV_CONSENT_FLOW_MINUTES * 60 + 300
    )


def _permissions() -> list[str]:
    """What the consent grants, in words: the required permissions, staying signed in, and ApplicationConsent's
    grants."""
    lines = [
        f"{p.used_for.capitalize()} ({p.api_name}: {p.name}{'; needs an administrator' if p.admin_only else ''})."
        for p in permissions.REQUIRED_PERMISSIONS
    ]
    lines.append("Stay signed in, so that it can keep working without asking again (offline_access).")
    for grant in settings.CPV_APPLICATION_GRANTS["applicationGrants"]:
        lines.append(f"Add its own app to each of your customers' tenants with: {grant['scope'].replace(',', ', ')}.")
    return lines


@require_GET
@never_cache
def landing(request: HttpRequest, token: str) -> HttpResponse:
    """What will happen, who asks, what the signing-in person needs, and a button that POSTs to start."""
    if limited := too_many(request, "consent-landing"):
        return limited
    try:
        target = invitation_read(token)
    except InvitationExpired:
        return _outcome_page(request, "expired_link", status=410)
    except InvitationInvalid:
        return _outcome_page(request, "expired_link", status=404)
    try:
        authority_host = services.consent_cloud_for(target.partner).authority_host
    except services.ConsentUnavailable as exc:
        return private(
            render(
                request, "consent/message.html", {"title": "Consent is not available", "message": str(exc)}, status=410
            )
        )
    context = {
        "partner": target.partner,
        "purpose": target.purpose,
        "token": token,
        "permissions": _permissions(),
        "unavailable": not app_for(target.partner).configured,
    }
    response = form_page(render(request, "consent/landing.html", context))
    # The form posts here, and its answer redirects to this partner's sign-in authority.
    response._csp_update = {"form-action": [authority_host]}  # type: ignore[attr-defined]
    return response


@require_POST
@never_cache
def start(request: HttpRequest, token: str) -> HttpResponse:
    """Create the flow and send the browser to Microsoft (a POST: never start OAuth from a GET)."""
    if limited := too_many(request, "consent-start"):
        return limited
    try:
        target = invitation_read(token)
    except InvitationInvalid:
        return _outcome_page(request, "expired_link", status=410)
    origin = {
        "invite": ConsentFlow.Origin.INVITATION,
        "reconsent": ConsentFlow.Origin.RECONSENT_LINK,
        "self_onboarding": ConsentFlow.Origin.SELF_ONBOARDING,
    }[target.purpose]
    key = _browser_key(request) or oauth_state.new_browser_key()
    try:
        _, auth_uri = services.consent_flow_start(
            partner=target.partner, origin=origin, browser_key=key, link_expires_at=target.expires_at
        )
    except services.ConsentUnavailable as exc:
        return private(
            render(
                request,
                "consent/message.html",
                {"title": "Consent is not available right now", "message": str(exc)},
                status=503,
            )
        )
    response = HttpResponseRedirect(auth_uri, status=303)
    _bind_browser(response, key)
    return private(response)


@csrf_exempt  # Microsoft's form_post is cross-site; the single-use state bound to this browser is the check.
@require_http_methods(["GET", "POST"])
@never_cache
def callback(request: HttpRequest) -> HttpResponse:
    """Microsoft's answer: finish the flow and 303 to its result page."""
    if limited := too_many(request, "consent-callback"):
        return limited
    if request.method != "POST":
        return private(
            render(
                request,
                "consent/message.html",
                {
                    "title": "This page only takes Microsoft's answer",
                    "message": "Open the consent link you were given to start again.",
                },
                status=400,
            )
        )
    form = {k: v for k, v in request.POST.items() if isinstance(v, str)}
    try:
        flow = services.consent_flow_complete(form=form, browser_key=_browser_key(request))
    except services.CallbackRejected as exc:
        logger.info("consent callback rejected: %s", exc.reason)
        return private(
            render(
                request,
                "consent/message.html",
                {"title": "This sign-in cannot be completed", "message": str(exc)},
                status=400,
            )
        )
    response = HttpResponseRedirect(reverse("consent:result", args=[flow.code]), status=303)
    return private(response)


@require_GET
@never_cache
def result(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    """The outcome of a flow, to the browser that ran it (any other browser gets a 404)."""
    flow = get_object_or_404(ConsentFlow.objects.select_related("partner"), code=code)
    if not oauth_state.browser_matches(_browser_key(request), flow.browser_hash):
        raise Http404
    if flow.status == ConsentFlow.Status.VAULTED:
        reason = SUCCESS
    elif flow.is_open:
        reason = "our_error"
    else:
        reason = flow.failure_reason or "our_error"
    return _outcome_page(request, reason, flow=flow, status=200)


@require_POST
@never_cache
def retry(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    """Try a failed attempt again, with the link it came from (no new link is made)."""
    if limited := too_many(request, "consent-start"):
        return limited
    flow = get_object_or_404(ConsentFlow.objects.select_related("partner"), code=code)
    key = _browser_key(request)
    if not oauth_state.browser_matches(key, flow.browser_hash):
        raise Http404
    try:
        _, auth_uri = services.consent_flow_retry(flow=flow, browser_key=key)
    except services.ConsentUnavailable as exc:
        return _outcome_page(request, exc.reason, status=410 if exc.reason == "expired_link" else 409)
    return private(HttpResponseRedirect(auth_uri, status=303))


def _outcome_page(request: HttpRequest, reason: str, *, flow: ConsentFlow | None = None, status: int) -> HttpResponse:
    what = outcome(reason).worded_for(settings.CPV_VENDOR.label)
    retry_url = ""
    if flow is not None and what.retry and services.consent_link_live(flow, flow.partner):
        retry_url = reverse("consent:retry", args=[flow.code])
    context: dict[str, Any] = {
        "outcome": what,
        "success": reason == SUCCESS,
        "flow": flow,
        "retry_url": retry_url,
    }
    page = render(request, "consent/result.html", context, status=status)
    # A page with the "Try again" form keeps the same-origin referrer policy: under no-referrer a browser posts
    # `Origin: null`, which the CSRF check refuses. Either way nothing about it reaches another site.
    response = form_page(page) if retry_url else private(page)
    if retry_url and flow is not None:
        # The retry form posts here, and its answer redirects to this partner's sign-in authority.
        try:
            authority_host = services.consent_cloud_for(flow.partner).authority_host
        except services.ConsentUnavailable:
            return response
        response._csp_update = {"form-action": [authority_host]}  # type: ignore[attr-defined]
    return response


class SelfOnboardingForm(forms.Form):
    company_name = forms.CharField(max_length=200, strip=True)
    contact_email = forms.EmailField(max_length=254)
    cloud = forms.ChoiceField(choices=PARTNER_CLOUD_CHOICES, initial="global")
    environment = forms.ChoiceField(choices=Partner.Environment.choices, initial=Partner.Environment.PRODUCTION)
    signup_key = forms.UUIDField(widget=forms.HiddenInput)


@require_http_methods(["GET", "POST"])
@never_cache
def onboard(request: HttpRequest) -> HttpResponse:
    """Self-onboarding: a partner registers and continues to the landing page, as with an invitation."""
    if not settings.CPV_SELF_ONBOARDING:
        raise Http404
    if request.method == "POST":
        if limited := too_many(request, "onboard"):
            return limited
        form = SelfOnboardingForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                partner = services.self_onboarding_submit(
                    name=data["company_name"],
                    contact_email=data["contact_email"],
                    cloud=data["cloud"],
                    environment=data["environment"],
                    signup_key=data["signup_key"],
                )
            except PartnerError as exc:
                form.add_error(None, str(exc))
            else:
                token = invitation_token(partner=partner, purpose="self_onboarding")
                return HttpResponseRedirect(reverse("consent:landing", args=[token]), status=303)
        status = 400
    else:
        form = SelfOnboardingForm(initial={"signup_key": uuid.uuid4()})
        status = 200
    return form_page(render(request, "consent/onboard.html", {"form": form}, status=status))

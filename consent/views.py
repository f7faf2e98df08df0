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
from partners.invitations import (
    InvitationExpired,
    InvitationInvalid,
    StaleLink,
    invitation_read,
    invitation_token,
    partner_fresh_link_send,
)
from partners.models import Partner
from partners.registrations import app_for, app_refusal
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
    except InvitationInvalid as exc:
        return _dead_link_page(request, exc, token)
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
        "no_app": app_refusal(target.partner.cloud, target.partner.environment),
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
    except InvitationInvalid as exc:
        return _dead_link_page(request, exc, token)
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
        if exc.flow is not None and exc.reason == "expired_flow":
            # This browser's own attempt, too late: its result page says so and offers to try again.
            services.consent_flows_expire()
            return private(HttpResponseRedirect(reverse("consent:result", args=[exc.flow.code]), status=303))
        # A replayed answer is refused; the browser that ran the attempt is shown the way to its result.
        result_url = reverse("consent:result", args=[exc.flow.code]) if exc.flow is not None else ""
        return private(
            render(
                request,
                "consent/message.html",
                {"title": "This sign-in cannot be completed", "message": str(exc), "result_url": result_url},
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
        return _outcome_page(request, exc.reason, flow=flow, status=410 if exc.reason == "expired_link" else 409)
    return private(HttpResponseRedirect(auth_uri, status=303))


# What each kind of attempt asked for, to ask for the same again.
PURPOSE_OF_ORIGIN: dict[str, str] = {
    ConsentFlow.Origin.INVITATION: "invite",
    ConsentFlow.Origin.RECONSENT_LINK: "reconsent",
    ConsentFlow.Origin.SELF_ONBOARDING: "self_onboarding",
}
# The outcomes after which a new attempt can succeed, once the link it needs works.
NEEDS_A_LINK = {"expired_link", "link_replaced"}


def _dead_link_page(request: HttpRequest, exc: InvitationInvalid, token: str) -> HttpResponse:
    """A link that does not work, and the one next step that does: the portal when its consent is done, a fresh
    link emailed to the partner's contact when it expired or was replaced, the vendor when consent is switched off."""
    if not isinstance(exc, InvitationExpired) or exc.link is None:
        return _outcome_page(request, "link_unknown", status=404)
    if exc.why == "closed":
        return _outcome_page(request, "link_closed", status=410)
    if exc.why == "replaced" and _link_used(exc.link):
        return _outcome_page(request, "link_used", status=410)
    return _outcome_page(request, "link_replaced" if exc.why == "replaced" else "expired_link", token=token, status=410)


def _link_used(link: StaleLink) -> bool:
    return ConsentFlow.objects.filter(
        partner=link.partner, link_generation=link.generation, status=ConsentFlow.Status.VAULTED
    ).exists()


def _masked(email: str) -> str:
    """c•••@contoso.com: enough for the partner to know which mailbox, not an address for a stranger to read."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}•••@{domain}"


@require_POST
@never_cache
def fresh_link(request: HttpRequest) -> HttpResponse:
    """From a dead-end page: email the partner's contact a fresh consent link (never shown to this browser), for a
    genuine link that no longer works (`token`) or this browser's attempt whose link no longer works (`flow`)."""
    if limited := too_many(request, "consent-fresh-link"):
        return limited
    partner, purpose = None, "invite"
    if token := request.POST.get("token", ""):
        try:
            invitation_read(token)
        except InvitationExpired as exc:
            if exc.link is not None and exc.why != "closed" and not _link_used(exc.link):
                partner, purpose = exc.link.partner, exc.link.purpose
        except InvitationInvalid:
            pass
        else:  # it works: nothing to replace
            return HttpResponseRedirect(reverse("consent:landing", args=[token]), status=303)
    elif code := request.POST.get("flow", ""):
        try:
            flow = ConsentFlow.objects.select_related("partner").filter(code=uuid.UUID(code)).first()
        except ValueError:
            flow = None
        if flow is not None and oauth_state.browser_matches(_browser_key(request), flow.browser_hash):
            partner, purpose = flow.partner, PURPOSE_OF_ORIGIN.get(flow.origin, "invite")
    if partner is None:
        return _outcome_page(request, "link_unknown", status=404)
    try:
        partner_fresh_link_send(partner=partner, purpose=purpose)
    except PartnerError:
        return _outcome_page(request, "link_closed", status=410)
    return _outcome_page(request, "fresh_link_sent", status=200, sent_to=_masked(partner.contact_email))


def _outcome_page(
    request: HttpRequest,
    reason: str,
    *,
    flow: ConsentFlow | None = None,
    status: int,
    token: str = "",
    sent_to: str = "",
) -> HttpResponse:
    what = outcome(reason).worded_for(settings.CPV_VENDOR.label)
    retry_url = ""
    fresh_flow = ""
    if flow is not None and (what.retry or reason in NEEDS_A_LINK):
        if what.retry and services.consent_link_live(flow, flow.partner):
            retry_url = reverse("consent:retry", args=[flow.code])
        elif flow.partner.status != Partner.Status.DEACTIVATED and flow.partner.deleted_at is None:
            fresh_flow = str(flow.code)
    if reason in NEEDS_A_LINK and not (token or fresh_flow):
        # No fresh link can be had (the partner's consent is switched off): the vendor is the way on.
        what = outcome("link_closed").worded_for(settings.CPV_VENDOR.label)
    context: dict[str, Any] = {
        "outcome": what,
        "success": reason == SUCCESS,
        "flow": flow,
        "retry_url": retry_url,
        "fresh_token": token if reason in NEEDS_A_LINK else "",
        "fresh_flow": fresh_flow,
        "to_portal": reason in (SUCCESS, "link_used"),
        "sent_to": sent_to,
    }
    page = render(request, "consent/result.html", context, status=status)
    # A page with a form ("Try again", "Email a new link") keeps the same-origin referrer policy: under no-referrer
    # a browser posts `Origin: null`, which the CSRF check refuses. Either way nothing about it reaches another site.
    has_form = bool(retry_url or context["fresh_token"] or fresh_flow)
    response = form_page(page) if has_form else private(page)
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

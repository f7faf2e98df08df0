"""The partner portal: a partner's administrator signs in with Microsoft and sees only their own organisation,
checked in one place (`portal_view`); no portal URL names a partner."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from consent import microsoft_sign_in
from consent.models import ConsentFlow
from consent.pages import form_page, private
from cpv import clouds
from cpv.ratelimit import too_many
from cpv.sessions import session_signed_in
from customers import tasks as customer_tasks
from customers.coverage import Coverage
from customers.selectors import (
    WITHOUT_ACCESS_STATE,
    coverage_for,
    customer_page,
    customers_of,
    gdap_notices_open,
    partner_state_counts,
)
from customers.words import PROOF_LABELS, access_guide, access_words, consent_error_words, proof_state, proof_words
from partners.invitations import partner_reconsent_link
from partners.models import Partner
from partners.permissions import partner_permissions_missing, partner_permissions_outdated
from partners.services import PartnerError, audit_record
from tokens.selectors import TokenHealth, TokenStatus, token_health

logger = logging.getLogger(__name__)

SIGN_IN = microsoft_sign_in.SignInKind(
    name="portal",
    cookie="__Host-cpv-portal",
    callback="portal:callback",
    welcome="portal:welcome",
    role_check=True,
    per_cloud_app=True,
)
SESSION_KEY = "portal_identity"
SIGN_IN_CLOUDS = [(c, n) for c, n in clouds.PARTNER_CLOUD_CHOICES]


def _message(request: HttpRequest, title: str, message: str, *, status: int) -> HttpResponse:
    return private(render(request, "portal/message.html", {"title": title, "message": message}, status=status))


def _refusal(request: HttpRequest, failed: microsoft_sign_in.SignInFailed) -> HttpResponse:
    return _message(request, failed.title, failed.message, status=failed.status)


def _authority_hosts() -> list[str]:
    hosts = set()
    for name, _ in SIGN_IN_CLOUDS:
        try:
            hosts.add(clouds.resolve(name).authority_host)
        except (ValueError, clouds.CloudRetiredError):
            continue
    return sorted(hosts)


def redirect_uri() -> str:
    """The portal's redirect URI (register it on the app): CPV_BASE_URL + the callback path, never the Host."""
    return microsoft_sign_in.redirect_uri(SIGN_IN)


# --- who is signed in: the one check ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PortalIdentity:
    tenant_id: str
    user_oid: str
    name: str
    username: str
    cloud: str
    # This sign-in's evidence, read as the consent reads it: the Global Administrator role from the tokens' `wids`
    # (or Microsoft Graph), and MFA from the access token's `amr`. None: not shown (a session from before MFA was
    # asked holds no answer, and is asked to sign in again).
    global_admin: bool | None
    mfa: bool | None = None


def portal_identity(request: HttpRequest) -> PortalIdentity | None:
    data = request.session.get(SESSION_KEY)
    if not isinstance(data, dict):
        return None
    try:
        return PortalIdentity(**data)
    except TypeError:
        return None


def _partner_for(who: PortalIdentity) -> Partner | None:
    return Partner.objects.select_related("token").filter(tenant_id=who.tenant_id, cloud=who.cloud).first()


def _admin_refusal(who: PortalIdentity, partner: Partner) -> tuple[str, str] | None:
    """Why this sign-in may not act for the partner, as a title and words, or None: it must show now what the consent
    asks (a Global Administrator, with MFA). Having consented once proves neither today."""
    person = who.username or who.name
    if who.global_admin is not True:
        return (
            "This portal is for your organisation's administrators",
            f"You are signed in as {person}, whose sign-in did not show the Global Administrator role in "
            f"{partner.name}'s Microsoft tenant: the role a consent needs, and the portal asks of every sign-in "
            "(having consented before is not enough). Sign in with a Global Administrator's account.",
        )
    if who.mfa is not True:
        return (
            "Multi-factor authentication is required",
            f"Your sign-in as {person} did not show a second factor, which a consent needs and the portal asks of "
            "every sign-in. Sign out, sign in again and complete multi-factor authentication (or ask your "
            "administrator to require it).",
        )
    return None


def portal_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Guard a signed-in portal page: no identity goes to sign-in, a tenant that is no partner (or a sign-in without
    an administrator's current evidence) gets a page that says so; the view gets the identity and its partner."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        who = portal_identity(request)
        if who is None:
            if request.method == "POST":
                return _message(request, "Signed out", "Your portal session has ended. Sign in again.", status=403)
            return HttpResponseRedirect(reverse("portal:home"))
        partner = _partner_for(who)
        if partner is None:
            return form_page(render(request, "portal/not_partner.html", {"who": who}, status=200))
        if refusal := _admin_refusal(who, partner):
            return _message(request, *refusal, status=403)
        return view(request, who, partner, *args, **kwargs)

    return wrapper


# --- sign-in ---------------------------------------------------------------------------------------------------


@require_GET
@never_cache
def home(request: HttpRequest) -> HttpResponse:
    """The signed-in partner's status page, or the sign-in page."""
    if portal_identity(request) is None:
        # A page whose form POSTs here keeps the site's `same-origin` referrer policy: under `no-referrer` the
        # browser sends `Origin: null`, which the CSRF check rightly refuses.
        response = form_page(render(request, "portal/sign_in.html", {"clouds": SIGN_IN_CLOUDS}))
        # The form posts here, and its answer redirects to the chosen cloud's sign-in authority.
        response._csp_update = {"form-action": _authority_hosts()}  # type: ignore[attr-defined]
        return response
    return status(request)


@require_POST
@never_cache
def sign_in(request: HttpRequest) -> HttpResponse:
    """Start the Microsoft sign-in (a POST: never start OAuth from a GET)."""
    if limited := too_many(request, "portal-start"):
        return limited
    try:
        response = microsoft_sign_in.sign_in_start(
            request, SIGN_IN, cloud_name=request.POST.get("cloud") or clouds.GLOBAL, tenant="organizations"
        )
    except microsoft_sign_in.SignInFailed as failed:
        return _refusal(request, failed)
    return private(response)


callback = microsoft_sign_in.callback_view(SIGN_IN, page=_refusal)


@require_GET
@never_cache
def welcome(request: HttpRequest, handoff: str) -> HttpResponse:
    """The same-site end of the sign-in: the verified identity goes into a fresh session."""
    try:
        signed_in = microsoft_sign_in.sign_in_handed_over(request, SIGN_IN, handoff)
    except microsoft_sign_in.SignInFailed as failed:
        return _refusal(request, failed)
    # A new session key on every sign-in: a session id planted before it is worth nothing after.
    request.session.cycle_key()
    request.session[SESSION_KEY] = {
        "tenant_id": signed_in.tenant_id,
        "user_oid": signed_in.user_oid,
        "name": signed_in.name,
        "username": signed_in.username,
        "cloud": signed_in.cloud,
        "global_admin": signed_in.global_admin,
        "mfa": signed_in.mfa,
    }
    request.session["portal_signed_in_at"] = timezone.now().isoformat()
    # The session's absolute lifetime starts at its sign-in.
    session_signed_in(request)
    response = HttpResponseRedirect(reverse("portal:home"), status=303)
    microsoft_sign_in.sign_in_cookie_clear(response, SIGN_IN)
    return private(response)


@require_POST
def sign_out(request: HttpRequest) -> HttpResponse:
    request.session.pop(SESSION_KEY, None)
    request.session.pop("portal_signed_in_at", None)
    request.session.cycle_key()
    return HttpResponseRedirect(reverse("portal:home"), status=303)


# --- the signed-in pages ---------------------------------------------------------------------------------------

STATUS_WORDS: dict[str, str] = {
    Partner.Status.INVITED: "You have been invited; your administrator has not consented yet.",
    Partner.Status.PENDING: "You have registered; your administrator has not consented yet.",
    Partner.Status.ACTIVE: "Connected: {vendor} can act for your organisation in Partner Center.",
    Partner.Status.RECONSENT_NEEDED: "Your consent no longer works: an administrator needs to consent again before "
    "{vendor} can act for you.",
    Partner.Status.DEACTIVATED: "Your organisation's connection has been deactivated by {vendor}: nothing is renewed "
    "or applied for you. Write to {vendor} if you expected otherwise.",
}


@dataclass(frozen=True)
class ConsentCard:
    """The portal's consent card, one truth from the partner's status and its token's health: the words, whether
    the consent works now (the card's colour and whether "keeps working" may be said), and the token's words when
    they add to the status (never a "works" beside a "needs consent")."""

    words: str
    works: bool
    token_words: str


def consent_card(partner: Partner, health: TokenHealth) -> ConsentCard:
    """What the card says for the partner now."""
    vendor = settings.CPV_VENDOR.label
    status = partner.status
    if status == Partner.Status.ACTIVE and health.status == TokenStatus.INVALID:
        status = Partner.Status.RECONSENT_NEEDED  # the token's own facts win over a status not yet moved
    words = STATUS_WORDS.get(status, "").replace("{vendor}", vendor)
    works = status == Partner.Status.ACTIVE and health.status != TokenStatus.NONE
    return ConsentCard(words=words, works=works, token_words=health.in_words if works else "")


@portal_view
def status(request: HttpRequest, who: PortalIdentity, partner: Partner) -> HttpResponse:
    customers = customer_page(partner, after=request.GET.get("after", ""), before=request.GET.get("before", ""))
    health = token_health(partner)
    customer: Any
    for customer in customers.customers:
        consent = getattr(customer, "application_consent", None)
        customer.error_words = consent_error_words(consent)
        customer.proof_state = proof_state(consent)
        customer.proof_label = PROOF_LABELS.get(customer.proof_state, "")
        customer.proof_words = proof_words(consent)
    # What the partner must fix in GDAP: every customer held back, each with its words (the first GDAP_LISTED).
    to_fix: list[Any] = list(customers_of(partner, state=WITHOUT_ACCESS_STATE)[: GDAP_LISTED + 1])
    for customer in to_fix:
        consent = customer.application_consent
        customer.access_words = access_words(consent)
        customer.access_guide = access_guide(consent)
    last_consent = (
        ConsentFlow.objects.filter(partner=partner, status=ConsentFlow.Status.VAULTED).order_by("-finished_at").first()
    )
    coverage = coverage_for([partner.pk]).get(partner.pk, Coverage())
    states = partner_state_counts(partner, customers=coverage.customers)
    context = {
        "who": who,
        "partner": partner,
        "card": consent_card(partner, health),
        "health": health,
        "coverage": coverage,
        "customers": customers,
        "last_consent": last_consent,
        "can_renew": partner.status != Partner.Status.DEACTIVATED,
        # A consent to an older list of required permissions keeps working; the partner is asked to consent again.
        "permissions_missing": partner_permissions_missing(partner) if partner_permissions_outdated(partner) else [],
        "proved": states.proved,
        "gdap_to_fix": to_fix[:GDAP_LISTED],
        "gdap_more": states.without_access - GDAP_LISTED,
        "gdap_notices": gdap_notices_open(partner),
        "can_check_gdap": partner.status == Partner.Status.ACTIVE,
    }
    return form_page(render(request, "portal/status.html", context))


# The portal lists this many customers without GDAP access, each with what to do (the rest are counted).
GDAP_LISTED = 50


@require_POST
def gdap_check(request: HttpRequest) -> HttpResponse:
    """Check GDAP again (Graph only) once the partner fixed it; customers where access appeared are consented by the
    workers with no staff action. Audited with who asked."""
    if limited := too_many(request, "portal-gdap-check"):
        return limited
    return _gdap_check(request)


@portal_view
def _gdap_check(request: HttpRequest, who: PortalIdentity, partner: Partner) -> HttpResponse:
    if partner.status != Partner.Status.ACTIVE:
        return _message(request, "GDAP cannot be checked", "Your organisation's consent is not active.", status=409)
    audit_record(
        actor=None,
        action="portal.gdap_check_asked",
        partner=partner,
        detail={"user_oid": who.user_oid, "user": who.username or who.name, "tenant_id": who.tenant_id},
    )
    customer_tasks.access_check.delay(partner_id=partner.pk)
    messages.success(
        request,
        "GDAP is being checked again; customers where access now works get our app within minutes. Reload this page "
        "to see each customer's state.",
    )
    return HttpResponseRedirect(reverse("portal:home"), status=303)


@require_POST
@portal_view
def renew(request: HttpRequest, who: PortalIdentity, partner: Partner) -> HttpResponse:
    """Send the administrator to a fresh re-consent page for their own organisation (audited with who asked)."""
    try:
        with transaction.atomic():
            url = partner_reconsent_link(actor=None, partner=partner)
            audit_record(
                actor=None,
                action="portal.reconsent_started",
                partner=partner,
                detail={"user_oid": who.user_oid, "user": who.username or who.name, "tenant_id": who.tenant_id},
            )
    except PartnerError as exc:
        return _message(request, "Consent cannot be renewed", str(exc), status=409)
    return HttpResponseRedirect(url.removeprefix(settings.CPV_BASE_URL) or url, status=303)

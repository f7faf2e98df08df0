"""Signing a person in with Microsoft (OpenID Connect, PKCE, no refresh token): the one kit of the portal and the
staff sign-in. Microsoft's cross-site form_post lacks the SameSite=Lax session cookie, so the callback hands the
sealed identity to a same-site GET (`sign_in_handed_over`), bound to the browser by a cookie of its own."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from consent import oauth_state
from consent.pages import private
from consent.sealing import SealError, seal, unseal
from cpv import clouds
from cpv.config import AppCredential
from cpv.ratelimit import too_many
from microsoft import graph, identity
from partners.registrations import app_in, app_refusal
from tokens.alerts import credential_refusals_alert

logger = logging.getLogger(__name__)

SIGN_IN_MINUTES = 10
HANDOFF_SECONDS = 60


@dataclass(frozen=True)
class SignInKind:
    """One product's Microsoft sign-in: the names its cookie, cache entries and URLs go by."""

    name: str  # prefixes the cache keys and seal purposes: "portal", "staff"
    cookie: str  # the browser-binding cookie (a __Host- cookie, SameSite=None so the form_post carries it)
    callback: str  # URL name of the redirect URI (register CPV_BASE_URL + its path on the app registration)
    welcome: str  # URL name of the same-site hand-over, which takes the one-time key as its argument
    # Whether the Global Administrator role is looked up in Microsoft Graph when no token's `wids` shows it (the
    # portal asks every sign-in for the role, as the consent does; staff sign-ins need no role of Microsoft's).
    role_check: bool = False
    # Whether the person signs in with the app registered in the chosen cloud (the partners' portal) rather than
    # CPV_CLIENT_ID in the deployment's cloud (the vendor's staff).
    per_cloud_app: bool = False


def _app(kind: SignInKind, cloud: clouds.Cloud) -> AppCredential:
    """The app a sign-in of `kind` in `cloud` uses; one with no client id when that cloud has none."""
    if not kind.per_cloud_app:
        staff_app: AppCredential = settings.CPV_APP
        return staff_app
    return app_in(cloud) or AppCredential(client_id="")


@dataclass(frozen=True)
class SignedIn:
    """Who Microsoft signed in, from the verified id_token and the access token that came with it."""

    tenant_id: str
    user_oid: str
    name: str
    username: str
    cloud: str
    # True or False where a token's `wids` lists the user's roles; None where none does (which proves nothing)
    global_admin: bool | None
    # The access token's `amr` (v1.0 tokens carry it; a v2.0 id_token does not): True or False where it can be
    # read, None where the token is opaque or has no `amr` (unknown).
    mfa: bool | None
    # The authentication contexts the verified id_token's `acrs` says the sign-in satisfied.
    auth_contexts: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class SignInFailed(Exception):
    """The sign-in cannot go on. `title` and `message` are for the person in front of the browser."""

    def __init__(self, title: str, message: str, *, status: int = 400) -> None:
        super().__init__(f"{title}: {message}")
        self.title = title
        self.message = message
        self.status = status


def redirect_uri(kind: SignInKind) -> str:
    """The sign-in's redirect URI: CPV_BASE_URL + the callback's path, never built from the Host header."""
    return settings.CPV_BASE_URL + reverse(kind.callback)


def _unsealed(value: Any, *, purpose: str, bound_to: str) -> dict[str, Any] | None:
    if not isinstance(value, bytes):
        return None
    try:
        return unseal(value, purpose=purpose, bound_to=bound_to)
    except SealError:
        return None


def _entry_of_this_browser(request: HttpRequest, kind: SignInKind, key: str, *, purpose: str) -> dict[str, Any] | None:
    """The sealed cache entry at `key` when it is ours and bound to this browser; else None."""
    bound_to = key.partition(":")[2]
    entry = _unsealed(cache.get(key), purpose=purpose, bound_to=bound_to)
    if entry is None or not oauth_state.browser_matches(
        oauth_state.browser_key(request, kind.cookie), entry["browser"]
    ):
        return None
    return entry


def sign_in_start(
    request: HttpRequest,
    kind: SignInKind,
    *,
    cloud_name: str,
    tenant: str,
    login_hint: str | None = None,
    auth_context: str = "",
) -> HttpResponse:
    """The 303 to Microsoft's sign-in in `tenant` (optionally asking for `auth_context` in `acrs`), with the browser's
    binding cookie set; call it from a POST. Raises SignInFailed."""
    try:
        cloud = clouds.resolve(cloud_name)
    except (ValueError, clouds.CloudRetiredError) as exc:
        raise SignInFailed("That cloud is not available", str(exc)) from None
    if kind.per_cloud_app and (refusal := app_refusal(cloud_name)):
        raise SignInFailed("Sign-in is not available for this cloud", refusal, status=503)
    app = _app(kind, cloud)
    if not app.configured:
        raise SignInFailed("Sign-in is not available yet", "The vendor has not finished its setup.", status=503)
    try:
        flow = identity.auth_code_flow_start(
            cloud=cloud,
            app=app,
            tenant=tenant,
            redirect_uri=redirect_uri(kind),
            scopes=[],
            prompt="select_account",
            login_hint=login_hint,
            offline=False,  # a person signs in; nothing here needs a refresh token
            claims={"id_token": {"acrs": {"essential": True, "value": auth_context}}} if auth_context else None,
        )
    except identity.IdentityError as exc:
        logger.warning("%s sign-in could not start: %s", kind.name, exc)
        raise SignInFailed(
            "Microsoft's sign-in could not be reached", "Please try again shortly.", status=503
        ) from None
    browser_key = oauth_state.browser_key(request, kind.cookie) or oauth_state.new_browser_key()
    state_hash = oauth_state.digest(flow["state"])
    entry = {"flow": flow, "browser": oauth_state.digest(browser_key), "cloud": cloud_name, "tenant": tenant}
    cache.set(
        f"{kind.name}-flow:{state_hash}",
        seal(entry, purpose=f"{kind.name}-sign-in", bound_to=state_hash),
        timeout=SIGN_IN_MINUTES * 60,
    )
    response = HttpResponseRedirect(flow["auth_uri"], status=303)
    oauth_state.browser_bind(response, cookie=kind.cookie, key=browser_key, seconds=SIGN_IN_MINUTES * 60 + 120)
    return response


def sign_in_finish(request: HttpRequest, kind: SignInKind) -> HttpResponse:
    """Take Microsoft's form_post (single-use state of this browser, code, id_token checks): the 303 that hands the
    identity to the welcome page. Raises SignInFailed."""
    if request.method != "POST":
        raise SignInFailed("This page only takes Microsoft's answer", "Start the sign-in again.")
    form = {k: v for k, v in request.POST.items() if isinstance(v, str)}
    state_hash = oauth_state.state_digest(form.get("state"))
    key = f"{kind.name}-flow:{state_hash}"
    entry = _entry_of_this_browser(request, kind, key, purpose=f"{kind.name}-sign-in")
    if entry is None:
        raise SignInFailed(
            "This sign-in cannot be completed",
            "It was not started in this browser, was already used, or took too long. Start the sign-in again.",
        )
    # Single use: of two posts of the same answer, only one deletes the entry.
    if not cache.delete(key):
        raise SignInFailed("This sign-in was already used", "Start the sign-in again.")
    if form.get("error"):
        title = "You cancelled the sign-in" if form["error"] == "access_denied" else "Microsoft refused the sign-in"
        raise SignInFailed(title, "Nothing was stored. You can start the sign-in again.")
    try:
        cloud = clouds.resolve(entry["cloud"])
        result = identity.auth_code_flow_finish(
            cloud=cloud,
            app=_app(kind, cloud),
            tenant=entry["tenant"],
            flow=entry["flow"],
            auth_response=form,
            offline=False,
        )
    except identity.MfaRequired:
        raise SignInFailed(
            "Your organisation requires multi-factor authentication",
            "Microsoft asked for a second factor that this sign-in did not give. Sign in again and complete it.",
        ) from None
    except identity.IdentityError as exc:
        logger.info("%s sign-in refused: %s", kind.name, exc.__class__.__name__)
        raise SignInFailed(
            "The sign-in could not be verified", "Microsoft's answer did not pass our checks. Sign in again."
        ) from None
    credential_refusals_alert(result.refused)
    claims = result.id_token_claims
    access_claims = identity.access_token_claims(result.access_token)
    # `wids` is in an id_token only when the app registration asks for directory roles; the access token that
    # came with it (for Microsoft Graph) carries the user's roles as well.
    verdicts = {identity.claims_global_admin(claims), identity.claims_global_admin(access_claims)}
    global_admin = True if True in verdicts else False if False in verdicts else None
    if global_admin is None and kind.role_check and result.access_token:
        global_admin = graph_global_admin(cloud, result.access_token)
    signed_in = SignedIn(
        tenant_id=str(claims["tid"]).lower(),
        user_oid=str(claims["oid"]).lower(),
        name=str(claims.get("name", ""))[:200],
        username=str(claims.get("preferred_username", ""))[:254],
        cloud=entry["cloud"],
        global_admin=global_admin,
        mfa=identity.mfa_verdict(access_claims),
        auth_contexts=[str(c) for c in claims.get("acrs") or [] if isinstance(c, str)],
    )
    handoff = secrets.token_urlsafe(24)
    handoff_hash = oauth_state.digest(handoff)
    cache.set(
        f"{kind.name}-handoff:{handoff_hash}",
        seal(
            {"browser": entry["browser"], "identity": signed_in.as_dict()},
            purpose=f"{kind.name}-handoff",
            bound_to=handoff_hash,
        ),
        timeout=HANDOFF_SECONDS,
    )
    return HttpResponseRedirect(reverse(kind.welcome, args=[handoff]), status=303)


def graph_global_admin(cloud: clouds.Cloud, access_token: str) -> bool | None:
    """The consent's second reading of the role: the user's directory roles in Microsoft Graph, with the sign-in's
    own (Graph) access token. True or False where Graph names the roles, None where it cannot say."""
    try:
        roles = graph.GraphClient(base_url=cloud.graph_url, access_token=access_token).directory_role_templates()
    except graph.GraphError as exc:
        logger.info("the signed-in user's directory roles could not be read: %s", exc)
        return None
    return identity.roles_global_admin(roles)


def callback_view(
    kind: SignInKind, *, page: Callable[[HttpRequest, SignInFailed], HttpResponse]
) -> Callable[[HttpRequest], HttpResponse]:
    """The view at the redirect URI: rate-limited per address, then `sign_in_finish`; `page` renders a refusal."""

    @csrf_exempt  # Microsoft's form_post is cross-site; the single-use state bound to this browser is the check.
    @require_http_methods(["GET", "POST"])
    @never_cache
    def callback(request: HttpRequest) -> HttpResponse:
        if limited := too_many(request, f"{kind.name}-callback"):
            return limited
        try:
            response = sign_in_finish(request, kind)
        except SignInFailed as failed:
            return page(request, failed)
        return private(response)

    return callback


def sign_in_handed_over(request: HttpRequest, kind: SignInKind, handoff: str) -> SignedIn:
    """The verified identity, once, to the browser that started the sign-in; the caller writes it into a fresh session
    and clears the binding cookie. Raises SignInFailed."""
    handoff_hash = oauth_state.digest(handoff)
    key = f"{kind.name}-handoff:{handoff_hash}"
    entry = _entry_of_this_browser(request, kind, key, purpose=f"{kind.name}-handoff")
    if entry is None:
        raise SignInFailed("This sign-in cannot be completed", "Start the sign-in again.")
    if not cache.delete(key):
        raise SignInFailed("This sign-in was already used", "Start the sign-in again.")
    return SignedIn(**entry["identity"])


def sign_in_cookie_clear(response: HttpResponse, kind: SignInKind) -> None:
    response.delete_cookie(kind.cookie, samesite="None")

"""Staff sign-in: with Microsoft against the vendor's own tenant (matched by tenant and object id, MFA from the
access token's `amr`, as a v2.0 id_token carries none), or with a password and its TOTP code."""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Callable
from typing import Any

import django_otp
import segno
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AnonymousUser, User
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_otp.plugins.otp_totp.models import TOTPDevice

from consent import microsoft_sign_in
from consent.pages import form_page, private
from cpv import clouds
from cpv.ratelimit import too_many
from dashboard.forms import SignInForm, TotpCodeForm
from partners.access import (
    MICROSOFT,
    PASSWORD,
    SignInStep,
    password_sign_in_allowed,
    staff_sign_in_method,
    staff_sign_in_record,
    staff_sign_in_step,
    staff_sign_in_unfinished,
    totp_device,
)
from partners.models import SignInFailure
from partners.staff import (
    StaffSignInRefused,
    password_sign_in_frozen,
    sign_in_attempt_begin,
    sign_in_attempt_right,
    sign_in_window,
    staff_microsoft_sign_in,
    staff_sign_in_failed,
    staff_sign_in_succeeded,
    staff_totp_begin,
    staff_totp_confirm,
    staff_wrong_code,
)

logger = logging.getLogger(__name__)

SIGN_IN = microsoft_sign_in.SignInKind(
    name="staff", cookie="__Host-cpv-staff", callback="sign_in_microsoft_callback", welcome="sign_in_microsoft_welcome"
)
NEXT_SESSION_KEY = "staff_sign_in_next"
ENROLL_SESSION_KEY = "staff_totp_setting_up"
# Set once this password sign-in's first wrong code emailed the admins: the next ones of the same sign-in do not.
WRONG_CODE_ALERTED_SESSION_KEY = "staff_wrong_code_alerted"


# What the person is told when their Microsoft sign-in opens no staff session (StaffSignInRefused.reason).
REFUSALS: dict[str, Callable[[microsoft_sign_in.SignedIn], tuple[str, str]]] = {
    "other_tenant": lambda who: (
        "This account is not one of the vendor's",
        f"You signed in as {who.username or who.name}, an account of another organisation. Sign in with your work "
        "account.",
    ),
    "no_mfa": lambda who: (
        "Multi-factor authentication is required",
        "Microsoft's sign-in did not use a second factor. Set up multi-factor authentication for your account (or "
        "ask your administrator to require it) and sign in again.",
    ),
    "no_auth_context": lambda who: (
        "Your sign-in did not meet the vendor's sign-in policy",
        "The control panel asks Microsoft for a sign-in that satisfies the vendor's authentication context "
        f"({settings.CPV_STAFF_AUTH_CONTEXT}), which requires multi-factor authentication, and "
        "this one did not. "
        "Sign in again and complete the second factor; if it keeps happening, an administrator must check the "
        "Conditional Access policy that targets that authentication context.",
    ),
    "mfa_unknown": lambda who: (
        "Multi-factor authentication could not be confirmed",
        "Microsoft's answer did not say whether this sign-in used a second factor. An administrator must set up "
        "Conditional Access requiring MFA for an authentication context and name it in CPV_STAFF_AUTH_CONTEXT.",
    ),
    "not_staff": lambda who: (
        "Your Microsoft account has no staff access here",
        f"You signed in as {who.username or who.name}. Ask an admin of the control panel to bind your account (its "
        "object id is below) to a staff account with a role.",
    ),
}


def staff_cloud() -> str:
    """The vendor tenant's cloud: the deployment's CPV_CLOUD."""
    return settings.CPV_CLOUD if settings.CPV_CLOUD in clouds.CLOUDS else clouds.GLOBAL


def microsoft_sign_in_enabled() -> bool:
    return bool(settings.CPV_STAFF_TENANT_ID) and settings.CPV_APP.configured


def _next_url(request: HttpRequest, candidate: str | None) -> str:
    """`candidate` when it is a path on this site, else the dashboard's home."""
    if (
        candidate
        and candidate.startswith("/")
        and url_has_allowed_host_and_scheme(candidate, allowed_hosts={request.get_host()})
    ):
        return candidate
    return reverse("dashboard:home")


def _refused(request: HttpRequest, title: str, message: str, *, status: int = 403, **extra: Any) -> HttpResponse:
    context = {"title": title, "message": message, **extra}
    return private(render(request, "registration/refused.html", context, status=status))


def _refusal(request: HttpRequest, failed: microsoft_sign_in.SignInFailed) -> HttpResponse:
    return _refused(request, failed.title, failed.message, status=failed.status)


# --- the sign-in page and the password ---------------------------------------------------------------------------


class SignInView(auth_views.LoginView):
    """The sign-in page: "Sign in with Microsoft" where configured, and the locked-out-on-failure password form for
    accounts allowed one, going on to the TOTP code where needed."""

    form_class = SignInForm
    redirect_authenticated_user = True

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.user.is_authenticated and (unfinished := staff_sign_in_unfinished(request)):
            return unfinished
        return super().dispatch(request, *args, **kwargs)

    def render_to_response(self, context: dict[str, Any], **kwargs: Any) -> HttpResponse:
        response = super().render_to_response(context, **kwargs)
        if microsoft_sign_in_enabled():
            # "Sign in with Microsoft" posts here and is redirected to the sign-in authority: the CSP's
            # form-action must allow that redirect's target too.
            host = clouds.resolve(staff_cloud()).authority_host
            response._csp_update = {"form-action": [host]}  # type: ignore[attr-defined]
        return response

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(
            microsoft=microsoft_sign_in_enabled(),
            passwords_for_admins_only=not password_sign_in_allowed(AnonymousUser()),
            refused_password=self.request.GET.get("refused") == "password",
            refused_unbound=self.request.GET.get("refused") == "unbound",
        )
        return context

    def form_valid(self, form: SignInForm) -> HttpResponse:  # type: ignore[override]
        response = super().form_valid(form)
        staff_sign_in_record(self.request, method=PASSWORD)
        self.request.session.pop(WRONG_CODE_ALERTED_SESSION_KEY, None)
        step = staff_sign_in_step(self.request)
        if step == SignInStep.VERIFY and (device := totp_device(self.request.user)) is not None:
            # The lockout counts wrong codes; django-otp's delay only spaces them out within one sign-in, so that
            # someone holding the password cannot grow it into days that lock the admin out of the break-glass.
            device.throttle_reset()
        if step in (SignInStep.VERIFY, SignInStep.ENROLL):
            # The account's failure count stands until the second factor is given too: a right password does not
            # buy another round of code guesses.
            self.request.session[NEXT_SESSION_KEY] = self.get_success_url()
            return HttpResponseRedirect(reverse("sign_in_verify" if step == SignInStep.VERIFY else "sign_in_enroll"))
        staff_sign_in_succeeded(request=self.request, user=form.get_user(), method=PASSWORD)
        return response


def _after_second_factor(request: HttpRequest) -> HttpResponse:
    target = request.session.pop(NEXT_SESSION_KEY, None) or request.GET.get("next")
    return HttpResponseRedirect(_next_url(request, target))


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def verify(request: HttpRequest) -> HttpResponse:
    """The TOTP code after a password: a wrong code counts towards the account's lockout, like a wrong password."""
    if request.GET.get("next") and NEXT_SESSION_KEY not in request.session:
        request.session[NEXT_SESSION_KEY] = _next_url(request, request.GET["next"])
    if staff_sign_in_step(request) != SignInStep.VERIFY:
        return _after_second_factor(request)
    user = request.user
    device = totp_device(user)
    if device is None:  # the step is VERIFY only for an account with one; removed meanwhile
        return HttpResponseRedirect(reverse("login"))
    username = user.get_username()
    form = TotpCodeForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if password_sign_in_frozen(user):
            return _frozen(request, username)
        if not form.is_valid():
            status = 400
        elif not sign_in_attempt_begin(request, username):
            # Counted before the code is checked: codes sent together cannot all pass the limit.
            form.add_error(
                None,
                f"Too many wrong codes for this account or from your network. Wait {sign_in_window() // 60} "
                "minutes and try again, or ask an admin.",
            )
            status = 429
        elif not device.verify_is_allowed()[0]:
            # django-otp's own growing delay after a wrong code: a code given now would be refused unread, so it
            # is not counted as a wrong one either.
            sign_in_attempt_right(request, username)
            form.add_error(None, "Wait a few seconds after a wrong code, then enter the code the app shows.")
            status = 429
        else:
            # django-otp verifies in a transaction (and counts a wrong code towards its delay).
            verified = django_otp.verify_token(user, device.persistent_id, form.cleaned_data["code"])
            if verified is not None:
                sign_in_attempt_right(request, username)
                django_otp.login(request, verified)
                request.session.pop(WRONG_CODE_ALERTED_SESSION_KEY, None)
                staff_sign_in_succeeded(request=request, user=user, method=PASSWORD, right_code=True)  # type: ignore[arg-type]
                logger.info("staff sign-in with a password and a TOTP code")
                return _after_second_factor(request)
            # The first wrong code after this right password emails the admins; every one counts towards the
            # break-glass freeze, which no window ends.
            alert = not request.session.get(WRONG_CODE_ALERTED_SESSION_KEY)
            guard = staff_wrong_code(request=request, user=user, alert=alert)  # type: ignore[arg-type]
            request.session[WRONG_CODE_ALERTED_SESSION_KEY] = True
            logger.warning("sign-in refused: a wrong TOTP code")
            if guard.frozen_at is not None:
                return _frozen(request, username)
            form.add_error("code", "That code is not right, or it has expired. Enter the code the app shows now.")
            status = 400
    return form_page(render(request, "registration/verify.html", {"form": form}, status=status))


def _frozen(request: HttpRequest, username: str) -> HttpResponse:
    """The password sign-in is frozen: the half-finished session ends, and the page says who can release it."""
    logout(request)
    return _refused(
        request,
        "This account's password sign-in is frozen",
        "Too many wrong authenticator codes were given after its password. Another admin can release it on the "
        f"staff page, or someone with access to the server can run `python manage.py staff_unfreeze {username}`. "
        "If the wrong codes were not yours, change the password once it is released.",
        status=403,
    )


def _qr_data_uri(url: str) -> str:
    # A standalone SVG document: inside an <img> an <svg> without its xmlns is not an image at all (blank).
    buffer = io.BytesIO()
    segno.make(url, error="m").save(buffer, kind="svg", scale=4, dark="#111", light="#fff", xmldecl=False)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def enroll(request: HttpRequest) -> HttpResponse:
    """Set up an authenticator app: a fresh secret shown only to this session, kept once a code checks out; replacing
    one needs this session to have proven one (its code, or Microsoft's MFA)."""
    step = staff_sign_in_step(request)
    if step not in (SignInStep.ENROLL, SignInStep.DONE):
        return staff_sign_in_unfinished(request) or HttpResponseRedirect(reverse("login"))
    user = request.user
    if not isinstance(user, User) or not password_sign_in_allowed(user):
        messages.info(request, "Your account signs in with Microsoft only: it needs no authenticator app here.")
        return HttpResponseRedirect(reverse("sign_in_security"))
    proven = user.is_verified() or staff_sign_in_method(request) == MICROSOFT  # type: ignore[attr-defined]
    if step == SignInStep.DONE and totp_device(user) is not None and not proven:
        return HttpResponseRedirect(reverse("sign_in_verify"))
    device = TOTPDevice.objects.filter(
        pk=request.session.get(ENROLL_SESSION_KEY) or 0, user=user, confirmed=False
    ).first()
    if device is None:
        device = staff_totp_begin(user=user)
        request.session[ENROLL_SESSION_KEY] = device.pk
    form = TotpCodeForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid() and device.verify_token(form.cleaned_data["code"]):
            staff_totp_confirm(user=user, device=device)
            request.session.pop(ENROLL_SESSION_KEY, None)
            django_otp.login(request, device)
            staff_sign_in_succeeded(request=request, user=user, method=PASSWORD)
            messages.success(request, "Your authenticator app is set up. Sign-ins with a password will ask its code.")
            return _after_second_factor(request)
        if form.is_valid():
            form.add_error("code", "That code does not match. Check the app's clock and enter the code it shows now.")
        status = 400
    context = {
        "form": form,
        "qr": _qr_data_uri(device.config_url),
        "secret": base64.b32encode(device.bin_key).decode("ascii").rstrip("="),
        "required": step == SignInStep.ENROLL,
    }
    return form_page(render(request, "registration/enroll.html", context, status=status))


@login_required
@never_cache
@require_GET
def security(request: HttpRequest) -> HttpResponse:
    """The signed-in account's sign-in methods: its Microsoft account and its authenticator app."""
    if unfinished := staff_sign_in_unfinished(request):
        return unfinished
    user = request.user
    context = {
        "method": staff_sign_in_method(request),
        "identity": getattr(user, "staff_identity", None),
        "device": totp_device(user),
        "microsoft": microsoft_sign_in_enabled(),
        "password_allowed": password_sign_in_allowed(user),
        "totp_required": settings.CPV_STAFF_TOTP == "required",
    }
    return form_page(render(request, "registration/security.html", context))


# --- Microsoft ---------------------------------------------------------------------------------------------------


@require_POST
@never_cache
def microsoft_start(request: HttpRequest) -> HttpResponse:
    """Start the Microsoft sign-in on the vendor's tenant (a POST from the sign-in page)."""
    if limited := too_many(request, "staff-start"):
        return limited
    if not microsoft_sign_in_enabled():
        return _refused(request, "Microsoft sign-in is not set up", "Sign in with your password.", status=404)
    request.session[NEXT_SESSION_KEY] = _next_url(request, request.POST.get("next"))
    try:
        response = microsoft_sign_in.sign_in_start(
            request,
            SIGN_IN,
            cloud_name=staff_cloud(),
            tenant=settings.CPV_STAFF_TENANT_ID,
            auth_context=settings.CPV_STAFF_AUTH_CONTEXT,
        )
    except microsoft_sign_in.SignInFailed as failed:
        return _refusal(request, failed)
    return private(response)


microsoft_callback = microsoft_sign_in.callback_view(SIGN_IN, page=_refusal)


@require_GET
@never_cache
def microsoft_welcome(request: HttpRequest, handoff: str) -> HttpResponse:
    """The same-site end of the Microsoft sign-in: match the person to a staff account, or say why not."""
    try:
        who = microsoft_sign_in.sign_in_handed_over(request, SIGN_IN, handoff)
    except microsoft_sign_in.SignInFailed as failed:
        return _refusal(request, failed)
    try:
        identity = staff_microsoft_sign_in(
            tenant_id=who.tenant_id,
            object_id=who.user_oid,
            username=who.username,
            mfa=who.mfa,
            auth_contexts=who.auth_contexts,
        )
    except StaffSignInRefused as refused:
        logger.warning("staff sign-in refused: %s", refused)
        staff_sign_in_failed(
            request=request, username="", reason=SignInFailure.MICROSOFT_REFUSED, detail=refused.reason
        )
        return _refused(request, *REFUSALS[refused.reason](who), object_id=who.user_oid)
    next_url = request.session.pop(NEXT_SESSION_KEY, None)
    if request.user.is_authenticated:
        logout(request)
    # login() gives the session a new key: a session id planted before the sign-in is worth nothing after it.
    login(request, identity.user, backend="django.contrib.auth.backends.ModelBackend")
    staff_sign_in_record(request, method=MICROSOFT, identity=identity)
    staff_sign_in_succeeded(request=request, user=identity.user, method=MICROSOFT)
    logger.info("staff sign-in with Microsoft")
    response = HttpResponseRedirect(_next_url(request, next_url), status=303)
    microsoft_sign_in.sign_in_cookie_clear(response, SIGN_IN)
    return private(response)

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import URLPattern, URLResolver, include, path
from django.views.generic import RedirectView

from consent import views as consent_views
from cpv.config import ALL, API
from dashboard import health
from dashboard import sign_in as staff_sign_in

Patterns = list[URLPattern | URLResolver]
PROBES: Patterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
]
# The token API hands out access tokens, which opens the vault: only its own process (and `all`) mounts it; the web
# tier serves its staff pages instead.
TOKEN_API: Patterns = [path("api/v1/", include("api.urls"))]
API_STAFF_PAGES: Patterns = [path("api-clients/", include("api.staff_urls"))]

SITE: Patterns = [
    path("accounts/login/", staff_sign_in.SignInView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/verify/", staff_sign_in.verify, name="sign_in_verify"),
    path("accounts/authenticator/", staff_sign_in.enroll, name="sign_in_enroll"),
    path("accounts/security/", staff_sign_in.security, name="sign_in_security"),
    path("accounts/microsoft/", staff_sign_in.microsoft_start, name="sign_in_microsoft"),
    path("accounts/microsoft/callback/", staff_sign_in.microsoft_callback, name="sign_in_microsoft_callback"),
    path(
        "accounts/microsoft/welcome/<str:handoff>/",
        staff_sign_in.microsoft_welcome,
        name="sign_in_microsoft_welcome",
    ),
    # The admin signs in through the same page as the dashboard (its lockout, Microsoft's MFA or the TOTP code),
    # never Django's own form.
    path("admin/login/", RedirectView.as_view(url="/accounts/login/?next=/admin/", query_string=False)),
    path("admin/", admin.site.urls),
    path("consent/", include("consent.urls")),
    path("onboard/", consent_views.onboard, name="onboard"),
    path("portal/", include("consent.portal_urls")),
    path("", include("dashboard.urls")),
]


def patterns_for(role: str) -> Patterns:
    """What a process of `role` serves: the API process its endpoints and the probes, the web tier everything but
    the token API, `all` everything (a worker, beat or migrate serves nothing; they get the web tier's list)."""
    if role == API:
        return [*PROBES, *TOKEN_API]
    if role == ALL:
        return [*PROBES, *TOKEN_API, *API_STAFF_PAGES, *SITE]
    return [*PROBES, *API_STAFF_PAGES, *SITE]


urlpatterns = patterns_for(settings.CPV_PROCESS_ROLE)

# The 500 page names the vendor and its support address (the 404 gets them from the context processor).
handler500 = "cpv.error_pages.server_error"

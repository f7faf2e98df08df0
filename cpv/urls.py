from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from consent import views as consent_views
from dashboard import health
from dashboard import views as dashboard_views

admin.site.site_header = "Control panel administration"
admin.site.site_title = "Control panel"

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("accounts/login/", dashboard_views.SignInView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # The admin signs in through the same form as the dashboard, with its lockout, never Django's own.
    path("admin/login/", RedirectView.as_view(url="/accounts/login/?next=/admin/", query_string=False)),
    path("admin/", admin.site.urls),
    path("consent/", include("consent.urls")),
    path("onboard/", consent_views.onboard, name="onboard"),
    path("portal/", include("consent.portal_urls")),
    path("", include("dashboard.urls")),
]

# The 500 page names the vendor and its support address (the 404 gets them from the context processor).
handler500 = "cpv.error_pages.server_error"

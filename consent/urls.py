from __future__ import annotations

from django.urls import path

from consent import staff_views, views

app_name = "consent"

urlpatterns = [
    path("i/<str:token>/", views.landing, name="landing"),
    path("i/<str:token>/start", views.start, name="start"),
    path("callback", views.callback, name="callback"),
    path("result/<uuid:code>/", views.result, name="result"),
    path("staff/invite", staff_views.invite, name="staff_invite"),
    path("staff/partners/<uuid:code>/reconsent-link", staff_views.reconsent_link, name="staff_reconsent_link"),
]

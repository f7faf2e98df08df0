from __future__ import annotations

from django.urls import path

from consent import views

app_name = "consent"

urlpatterns = [
    path("i/<str:token>/", views.landing, name="landing"),
    path("i/<str:token>/start", views.start, name="start"),
    path("callback", views.callback, name="callback"),
    path("result/<uuid:code>/", views.result, name="result"),
    path("result/<uuid:code>/retry", views.retry, name="retry"),
    path("fresh-link", views.fresh_link, name="fresh_link"),
]

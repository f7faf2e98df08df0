"""The token API's staff pages, mounted at /api-clients/ by cpv.urls in the web tier (and `all`)."""

from __future__ import annotations

from django.urls import path

from api import staff

app_name = "api_staff"

urlpatterns = [
    path("", staff.clients, name="clients"),
    path("docs", staff.docs, name="docs"),
    path("schema.json", staff.schema, name="schema"),
    path("<uuid:code>/", staff.client, name="client"),
]

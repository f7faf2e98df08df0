"""The token API's URLs, mounted at /api/v1/ by cpv.urls."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver

urlpatterns: list[URLPattern | URLResolver] = []

"""The token API's URLs, mounted at /api/v1/ by cpv.urls in the processes that may open tokens (`api`, `all`)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from api.endpoints import api

urlpatterns: list[URLPattern | URLResolver] = [path("", api.urls)]

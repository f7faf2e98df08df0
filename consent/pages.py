"""Response headers shared by the partner-facing pages (consent and portal)."""

from __future__ import annotations

from django.http import HttpResponse


def private(response: HttpResponse) -> HttpResponse:
    """For pages around a sign-in: nothing about them reaches another site, nothing is cached."""
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "no-store"
    return response


def form_page(response: HttpResponse) -> HttpResponse:
    """For pages whose form POSTs back here: keep the `same-origin` referrer policy (`no-referrer` sends
    `Origin: null`, which CSRF protection refuses)."""
    response["Cache-Control"] = "no-store"
    return response

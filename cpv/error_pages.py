"""The 500 page, rendered without the request's context processors (one of them may be what failed)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseServerError
from django.template import loader
from django.views.decorators.csrf import requires_csrf_token


@requires_csrf_token
def server_error(request: HttpRequest) -> HttpResponse:
    """The styled 500 page in the partner-facing layout, naming the vendor and its support address."""
    template = loader.get_template("500.html")
    return HttpResponseServerError(template.render({"vendor": settings.CPV_VENDOR}))

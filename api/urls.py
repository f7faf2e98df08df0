"""The token API's URLs, mounted at /api/v1/ by cpv.urls in the processes that may open tokens (`api`, `all`)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver, path

from api.endpoints import api
from api.problems import Problem, problem_response


def _method_refused_as_problem(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """ninja answers a method it does not serve with Django's bare 405: say it in a problem document instead."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        if response.status_code == 405 and not response.get("Content-Type", "").startswith("application/"):
            allowed = response.get("Allow", "")
            problem = Problem(
                405, "method-not-allowed", "Method not allowed", f"{request.method} is not served here; use {allowed}."
            )
            problem.headers["Allow"] = allowed
            return problem_response(problem, instance=request.path)
        return response

    return wrapper


ninja_urls = api.urls
for pattern in ninja_urls[0]:
    if isinstance(pattern, URLPattern):
        pattern.callback = _method_refused_as_problem(pattern.callback)

urlpatterns: list[URLPattern | URLResolver] = [path("", ninja_urls)]

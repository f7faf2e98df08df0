"""Refusals as problem documents (RFC 9457, `application/problem+json`): a status, a type naming the refusal, a title
and a detail in words, and for a state refusal the state that caused it."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse

CONTENT_TYPE = "application/problem+json"
# Each refusal's `type`: a URI reference that names the kind of problem (RFC 9457 §3.1.1), relative to the API.
TYPE_BASE = "/api/v1/problems/"


class Problem(Exception):
    """A refusal the API answers with a problem document. `kind` becomes the `type`; `extra` holds members such as
    `state`. The detail is shown to the client: it never carries a secret."""

    def __init__(self, status: int, kind: str, title: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.title = title
        self.detail = detail
        self.extra = extra
        self.headers: dict[str, str] = {}


def problem_response(problem: Problem, *, instance: str = "") -> HttpResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + problem.kind,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        **problem.extra,
    }
    if instance:
        body["instance"] = instance
    response = HttpResponse(json.dumps(body), status=problem.status, content_type=CONTENT_TYPE)
    # A refusal says nothing worth keeping, and the token endpoint's answers are never stored.
    response["Cache-Control"] = "no-store"
    for name, value in problem.headers.items():
        response[name] = value
    return response


def unauthenticated(detail: str) -> Problem:
    problem = Problem(401, "unauthenticated", "Not authenticated", detail)
    problem.headers["WWW-Authenticate"] = 'Bearer realm="cpv-api"'
    return problem


def not_found(detail: str) -> Problem:
    return Problem(404, "not-found", "Not found", detail)


def forbidden(kind: str, detail: str) -> Problem:
    return Problem(403, kind, "Not allowed for this client", detail)


def conflict(kind: str, detail: str, *, state: str) -> Problem:
    return Problem(409, kind, "Not possible in this state", detail, state=state)


def invalid(detail: str, *, errors: list[dict[str, Any]] | None = None) -> Problem:
    extra = {"errors": errors} if errors is not None else {}
    return Problem(422, "invalid-request", "The request is not valid", detail, **extra)

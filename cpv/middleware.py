from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from cpv.logs import client_request_id_var, request_id_var

_VALID_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class RequestIdMiddleware:
    """Gives each request an id of the product's own, for logs, audit rows and the response's X-Request-ID. A client's
    (or a proxy's) X-Request-ID, when well-formed, is recorded beside it as `client_request_id`: never instead of it,
    so that no client can choose, reuse or collide the id an audit row carries."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        client_id = incoming if _VALID_ID.match(incoming) else ""
        request_id = uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        request.client_request_id = client_id  # type: ignore[attr-defined]
        token = request_id_var.set(request_id)
        client_token = client_request_id_var.set(client_id)
        try:
            response = self.get_response(request)
        finally:
            client_request_id_var.reset(client_token)
            request_id_var.reset(token)
        response["X-Request-ID"] = request_id
        return response

"""What the token API's tests share: registered clients and a caller with a credential."""

from __future__ import annotations

import json
from typing import Any

from django.test import Client

from api.models import ApiClient
from api.services import Issued, api_client_create
from partners.models import Partner

ALL_AUDIENCES = list(ApiClient.Audience.values)


def api_client(
    *, name: str = "Billing", partners: list[Partner] | None = None, audiences: list[str] | None = None, **kwargs: Any
) -> Issued:
    """A client registered with an API key, seeing `partners` (default: all)."""
    return api_client_create(
        actor=None,
        name=name,
        audiences=ALL_AUDIENCES if audiences is None else audiences,
        all_partners=partners is None,
        partners=partners or [],
        **kwargs,
    )


def caller(key: str | None) -> Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return Client(headers=headers)


def post_token(http: Client, partner_code: object, body: dict[str, Any] | str, **extra: Any) -> Any:
    data = body if isinstance(body, str) else json.dumps(body)
    return http.post(f"/api/v1/partners/{partner_code}/access-tokens", data, content_type="application/json", **extra)

"""Property-based fuzzing of the token API from its own OpenAPI document (schemathesis): whatever the input, no
answer is a server error, every refusal is a problem document, a rejected request writes nothing, and the answers
conform to the document."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.models import ApiClient, ApiKey
from partners.models import AuditEvent, Customer, Partner
from tests.api.helpers import api_client
from tokens.models import PartnerToken, TokenEvent

schema = schemathesis.openapi.from_wsgi("/api/v1/schema", WSGIHandler())
WRITTEN = (AuditEvent, ApiClient, ApiKey, Partner, Customer, PartnerToken, TokenEvent)


@pytest.fixture
def api_key(db) -> Iterator[str]:  # type: ignore[no-untyped-def]
    # As Django's test client does: the handler must not close the test's connection, which holds its transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    Partner.objects.create(name="Contoso", contact_email="c@example.com", status=Partner.Status.ACTIVE)
    yield str(api_client().key)
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _header(response, name: str) -> str:  # type: ignore[no-untyped-def]
    values = {key.lower(): value for key, value in response.headers.items()}[name.lower()]
    return str(values[0] if isinstance(values, list) else values)


def _rows() -> list[int]:
    return [model.objects.count() for model in WRITTEN]


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_the_api_never_fails_and_writes_nothing_on_rejected_input(case, api_key) -> None:  # type: ignore[no-untyped-def]
    before = _rows()
    # Every check but one: a cursor is opaque, so a schema-valid string the API never gave is refused (422).
    response = case.call_and_validate(
        headers={"Authorization": f"Bearer {api_key}"}, excluded_checks=[positive_data_acceptance]
    )
    assert response.status_code < 500
    if response.status_code >= 400:
        assert _header(response, "Content-Type") == "application/problem+json"
        assert _rows() == before
    if "access-tokens" in case.path:
        assert _header(response, "Cache-Control") == "no-store"


@schema.parametrize()
@settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_without_a_credential_every_operation_is_a_401(case, api_key) -> None:  # type: ignore[no-untyped-def]
    before = _rows()
    response = case.call(headers={"Authorization": ""})
    # 405 for a method the operation does not serve, which the fuzzer tries too.
    assert response.status_code in (401, 405)
    assert _header(response, "Content-Type") == "application/problem+json"
    assert _rows() == before

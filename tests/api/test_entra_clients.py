"""A client system proves itself with a client-credentials token from the vendor's own Entra tenant (the simulator's
client_credentials grant): signature, issuer, audience and app id checked against the registered client."""

from __future__ import annotations

import pytest

from api.services import api_client_create, api_client_revoke
from cpv.config import AppCredential
from microsoft import identity
from partners.models import AuditEvent
from tests.api.helpers import ALL_AUDIENCES, caller
from tests.simulated import sim_cloud

pytestmark = pytest.mark.django_db


@pytest.fixture
def entra(sim_settings, settings):  # type: ignore[no-untyped-def]
    world = sim_settings.world
    assert world.token_api_app is not None
    settings.CPV_API_TENANT_ID = world.vendor.tenant_id
    settings.CPV_API_AUDIENCES = (world.token_api_app.identifier_uris[0],)
    identity.JWKS.clear()
    return sim_settings


def _token(sim, app, scope: str) -> str:  # type: ignore[no-untyped-def]
    client = identity.confidential_client(
        cloud=sim_cloud(sim),
        tenant=sim.world.vendor.tenant_id,
        app=AppCredential(client_id=app.client_id, client_secret=app.secrets[0].value),
    )
    result = client.acquire_token_for_client(scopes=[scope])
    assert "access_token" in result, result
    return str(result["access_token"])


def _api_scope(sim) -> str:  # type: ignore[no-untyped-def]
    return f"{sim.world.token_api_app.identifier_uris[0]}/.default"


def test_a_registered_apps_client_credentials_token_is_accepted(entra) -> None:  # type: ignore[no-untyped-def]
    billing = entra.world.vendor_client_apps[0]
    registered = api_client_create(actor=None, name="Billing", audiences=ALL_AUDIENCES, entra_app_id=billing.client_id)
    response = caller(_token(entra, billing, _api_scope(entra))).get("/api/v1/partners")
    assert response.status_code == 200, response.content
    registered.client.refresh_from_db()
    assert registered.client.last_used_at is not None
    assert AuditEvent.objects.filter(action="api_client.created", detail__entra_app_id=billing.client_id).exists()


def _refusal(response, words: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 401, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert words in response.json()["detail"]


def test_an_app_that_is_not_registered_or_was_revoked_is_refused(entra) -> None:  # type: ignore[no-untyped-def]
    billing, provisioning = entra.world.vendor_client_apps
    registered = api_client_create(actor=None, name="Billing", audiences=ALL_AUDIENCES, entra_app_id=billing.client_id)
    _refusal(caller(_token(entra, provisioning, _api_scope(entra))).get("/api/v1/partners"), "not a registered client")
    api_client_revoke(actor=None, client=registered.client)
    _refusal(caller(_token(entra, billing, _api_scope(entra))).get("/api/v1/partners"), "not a registered client")


def test_a_token_for_another_resource_is_refused(entra) -> None:  # type: ignore[no-untyped-def]
    billing = entra.world.vendor_client_apps[0]
    api_client_create(actor=None, name="Billing", audiences=ALL_AUDIENCES, entra_app_id=billing.client_id)
    graph_token = _token(entra, billing, "https://graph.microsoft.com/.default")
    _refusal(caller(graph_token).get("/api/v1/partners"), "(aud)")


def test_a_token_from_another_tenant_or_with_a_bad_signature_is_refused(entra, settings) -> None:  # type: ignore[no-untyped-def]
    billing = entra.world.vendor_client_apps[0]
    api_client_create(actor=None, name="Billing", audiences=ALL_AUDIENCES, entra_app_id=billing.client_id)
    token = _token(entra, billing, _api_scope(entra))
    head, body, signature = token.split(".")
    forged = ".".join([head, body, signature[:-8] + ("A" * 8 if not signature.endswith("A" * 8) else "B" * 8)])
    _refusal(caller(forged).get("/api/v1/partners"), "signature")
    # The API trusts one tenant: the vendor's. Its own tenant's token does not pass for another's.
    settings.CPV_API_TENANT_ID = entra.world.partners[0].tenant_id
    _refusal(caller(token).get("/api/v1/partners"), "vendor's own Entra tenant")


def test_without_the_api_settings_entra_tokens_are_refused_in_words(entra, settings) -> None:  # type: ignore[no-untyped-def]
    billing = entra.world.vendor_client_apps[0]
    token = _token(entra, billing, _api_scope(entra))
    settings.CPV_API_AUDIENCES = ()
    _refusal(caller(token).get("/api/v1/partners"), "CPV_API_AUDIENCE")

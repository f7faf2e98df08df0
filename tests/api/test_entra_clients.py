"""A client system proves itself with a client-credentials token from the vendor's own Entra tenant (the simulator's
client_credentials grant): signature, issuer, audience and app id checked against the registered client."""

from __future__ import annotations

import jwt
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


def _forged(sim, token: str, **changes: object) -> str:  # type: ignore[no-untyped-def]
    """The claims of a real token with `changes` (None drops a claim), signed with the simulated tenant's key."""
    claims = jwt.decode(token, options={"verify_signature": False})
    claims.update(changes)
    return str(sim._server.sim.signer.sign({k: v for k, v in claims.items() if v is not None}))


@pytest.fixture
def billing_token(entra) -> str:  # type: ignore[no-untyped-def]
    billing = entra.world.vendor_client_apps[0]
    api_client_create(actor=None, name="Billing", audiences=ALL_AUDIENCES, entra_app_id=billing.client_id)
    return _token(entra, billing, _api_scope(entra))


def test_every_documented_form_of_aud_is_accepted(entra, billing_token, settings) -> None:  # type: ignore[no-untyped-def]
    """v1.0: "any appID URI, with or without a trailing slash, and the client ID of the resource"; v2.0: "the
    audience is the client ID of the web API" (azp names the caller). The operator sets the URI only."""
    api, billing = entra.world.token_api_app, entra.world.vendor_client_apps[0]
    tenant = entra.world.vendor.tenant_id
    by_client_id = _token(entra, billing, f"{api.client_id}/.default")
    assert jwt.decode(by_client_id, options={"verify_signature": False})["aud"] == api.client_id
    v2 = _forged(
        entra,
        billing_token,
        ver="2.0",
        aud=api.client_id,
        iss=f"{entra.authority_host}/{tenant}/v2.0",
        azp=billing.client_id,
        azpacr="1",
        appid=None,
        appidacr=None,
    )
    for token in (
        billing_token,
        by_client_id,
        _forged(entra, billing_token, aud=api.identifier_uris[0] + "/"),
        _forged(entra, billing_token, aud=api.client_id.upper()),
        v2,
    ):
        response = caller(token).get("/api/v1/partners")
        assert response.status_code == 200, response.content
    # the client id alone as the setting: the URI forms are then another resource's
    settings.CPV_API_AUDIENCES = (api.client_id,)
    assert caller(by_client_id).get("/api/v1/partners").status_code == 200
    _refusal(caller(billing_token).get("/api/v1/partners"), "(aud)")
    # a look-alike is not the API
    settings.CPV_API_AUDIENCES = (api.identifier_uris[0],)
    _refusal(caller(_forged(entra, billing_token, aud=api.identifier_uris[0] + "/x")).get("/api/v1/partners"), "(aud)")
    _refusal(caller(_forged(entra, billing_token, aud=[api.client_id])).get("/api/v1/partners"), "(aud)")


def test_a_token_that_is_not_app_only_is_refused(entra, billing_token) -> None:  # type: ignore[no-untyped-def]
    """ "Only tokens of type `app` can be authorized this way" (claims-validation.md): idtyp other than app is
    refused; without idtyp (the registration does not configure it), a token with a user's claims is refused."""
    assert jwt.decode(billing_token, options={"verify_signature": False})["idtyp"] == "app"
    _refusal(caller(_forged(entra, billing_token, idtyp="user")).get("/api/v1/partners"), "(idtyp)")
    _refusal(caller(_forged(entra, billing_token, idtyp=None, scp="access")).get("/api/v1/partners"), "(scp)")
    _refusal(caller(_forged(entra, billing_token, idtyp=None, upn="a@b.example")).get("/api/v1/partners"), "(upn)")
    _refusal(caller(_forged(entra, billing_token, scp="access")).get("/api/v1/partners"), "(scp)")


def test_without_the_idtyp_optional_claim_an_app_only_token_is_accepted(entra, billing_token) -> None:  # type: ignore[no-untyped-def]
    api, billing = entra.world.token_api_app, entra.world.vendor_client_apps[0]
    entra.control.update_app(api.client_id, access_token_optional_claims=[])
    try:
        token = _token(entra, billing, _api_scope(entra))
    finally:
        entra.control.reset()
    assert "idtyp" not in jwt.decode(token, options={"verify_signature": False})
    assert caller(token).get("/api/v1/partners").status_code == 200


def test_the_keys_are_read_where_the_discovery_document_says(entra, billing_token, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """ "the signature of the token and the issuer against the values in the OpenID discovery document"."""
    authority = sim_cloud(entra).authority(entra.world.vendor.tenant_id)
    url = f"{authority}/v2.0/.well-known/openid-configuration"
    monkeypatch.setitem(identity._DISCOVERY, url, {"jwks_uri": f"{authority}/discovery/keys"})
    assert caller(billing_token).get("/api/v1/partners").status_code == 200
    identity.JWKS.clear()
    monkeypatch.setitem(identity._DISCOVERY, url, {"jwks_uri": f"{authority}/discovery/nowhere"})
    response = caller(billing_token).get("/api/v1/partners")
    assert response.status_code == 503 and response["Retry-After"] == "30"

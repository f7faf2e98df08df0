"""The control panel's token API as a resource of the vendor's tenant: its Application ID URI (or its client id) in a
client-credentials request, and the app-only v1.0 token a registered system of the vendor gets for it."""

from __future__ import annotations

from typing import Any

import jwt
import requests

from tests.simulator.helpers import token_request


def _token(sim: Any, resource: str) -> dict[str, Any]:
    world = sim.world
    billing = world.vendor_client_apps[0]
    answer = token_request(
        sim,
        world.vendor.tenant_id,
        grant_type="client_credentials",
        client_id=billing.client_id,
        client_secret=billing.secrets[0].value,
        scope=f"{resource}/.default",
    )
    assert answer.status_code == 200, answer.text
    token = answer.json()["access_token"]
    keys = f"{sim.authority_host}/{world.vendor.tenant_id}/discovery/v2.0/keys"
    key = jwt.PyJWKClient(keys).get_signing_key_from_jwt(token)
    claims: dict[str, Any] = jwt.decode(token, key.key, algorithms=["RS256"], options={"verify_aud": False})
    assert requests.get(keys, timeout=10).status_code == 200
    return claims


def test_a_vendor_system_gets_an_app_only_token_for_the_token_apis_application_id_uri(sim):  # type: ignore[no-untyped-def]
    world = sim.world
    api = world.token_api_app
    billing = world.vendor_client_apps[0]
    # "In v1.0 tokens, it can be the client ID or the resource URI used in the request."
    for resource, audience in ((api.identifier_uris[0], api.identifier_uris[0]), (api.client_id, api.client_id)):
        claims = _token(sim, resource)
        assert claims["aud"] == audience
        assert claims["iss"] == f"https://sts.windows.net/{world.vendor.tenant_id}/"
        assert claims["appid"] == billing.client_id and claims["ver"] == "1.0"
        # the token API's registration configures the idtyp optional claim
        assert "scp" not in claims and claims["idtyp"] == "app"


def test_idtyp_only_when_the_resources_registration_configures_it(sim):  # type: ignore[no-untyped-def]
    """ "Like all optional claims that affect the access token, the resource in the request must set this optional
    claim, since resources own the access token." """
    api = sim.world.token_api_app
    sim.control.update_app(api.client_id, access_token_optional_claims=[])
    try:
        claims = _token(sim, api.identifier_uris[0])
    finally:
        sim.control.reset()
    assert "idtyp" not in claims and "scp" not in claims
    assert claims["appid"] == sim.world.vendor_client_apps[0].client_id

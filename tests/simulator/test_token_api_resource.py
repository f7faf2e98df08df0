"""The control panel's token API as a resource of the vendor's tenant: its Application ID URI in a client-credentials
request, and the app-only v1.0 token a registered system of the vendor gets for it."""

from __future__ import annotations

import jwt
import requests

from tests.simulator.helpers import token_request


def test_a_vendor_system_gets_an_app_only_token_for_the_token_apis_application_id_uri(sim):  # type: ignore[no-untyped-def]
    world = sim.world
    api_uri = world.token_api_app.identifier_uris[0]
    billing = world.vendor_client_apps[0]
    answers = [
        token_request(
            sim,
            world.vendor.tenant_id,
            grant_type="client_credentials",
            client_id=billing.client_id,
            client_secret=billing.secrets[0].value,
            scope=f"{resource}/.default",
        )
        for resource in (api_uri, world.token_api_app.client_id)
    ]
    keys = f"{sim.authority_host}/{world.vendor.tenant_id}/discovery/v2.0/keys"
    for answer in answers:
        assert answer.status_code == 200, answer.text
        token = answer.json()["access_token"]
        key = jwt.PyJWKClient(keys).get_signing_key_from_jwt(token)
        claims = jwt.decode(token, key.key, algorithms=["RS256"], audience=api_uri)
        assert claims["iss"] == f"https://sts.windows.net/{world.vendor.tenant_id}/"
        assert claims["appid"] == billing.client_id and claims["ver"] == "1.0"
        assert "scp" not in claims and claims["idtyp"] == "app"
    assert requests.get(keys, timeout=10).status_code == 200

"""The host's managed identity endpoint (App Service's form) and the federated identity credentials Entra checks a
managed identity's token against, as FIDELITY.md lists them."""

from __future__ import annotations

import jwt
import requests

from simulator.managed_identity import LIFETIME
from simulator.world import World
from tests.simulator.helpers import assert_entra_error, token_request

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
EXCHANGE = "api://AzureADTokenExchange"


def _identity_token(sim, created, resource: str = EXCHANGE, **params: str) -> requests.Response:  # type: ignore[no-untyped-def]
    query = {"api-version": "2019-08-01", "resource": resource, "client_id": created["client_id"], **params}
    return requests.get(
        created["identity_endpoint"],
        params=query,
        headers={"X-IDENTITY-HEADER": created["identity_header"]},
        timeout=10,
    )


def _exchange(sim, assertion: str) -> requests.Response:  # type: ignore[no-untyped-def]
    return token_request(
        sim,
        sim.env["CPV_VENDOR_TENANT_ID"],
        grant_type="client_credentials",
        client_id=sim.env["CPV_CLIENT_ID"],
        scope="https://graph.microsoft.com/.default",
        client_assertion_type=JWT_BEARER,
        client_assertion=assertion,
    )


def test_the_endpoint_answers_as_app_service_documents_it(sim) -> None:  # type: ignore[no-untyped-def]
    created = sim.control.create_managed_identity(trust=[sim.env["CPV_CLIENT_ID"]])

    response = _identity_token(sim, created)

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "client_id", "expires_on", "not_before", "resource", "token_type"}
    assert (body["client_id"], body["resource"], body["token_type"]) == (created["client_id"], EXCHANGE, "Bearer")
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["iss"] == f"{sim.authority_host}/{sim.env['CPV_VENDOR_TENANT_ID']}/v2.0"
    assert claims["sub"] == created["principal_id"]
    assert claims["aud"] == EXCHANGE
    assert int(body["expires_on"]) == claims["exp"] and claims["exp"] - claims["nbf"] == LIFETIME


def test_the_endpoint_wants_its_header_its_api_version_and_an_identity_it_holds(sim) -> None:  # type: ignore[no-untyped-def]
    created = sim.control.create_managed_identity()

    wrong_header = requests.get(
        created["identity_endpoint"],
        params={"api-version": "2019-08-01", "resource": EXCHANGE, "client_id": created["client_id"]},
        headers={"X-IDENTITY-HEADER": "not-the-header"},
        timeout=10,
    )
    old_version = _identity_token(sim, created, **{"api-version": "2017-09-01"})
    unknown = _identity_token(sim, created, client_id="99999999-2222-4333-8444-555555555555")

    assert wrong_header.status_code == 401
    assert old_version.status_code == 400
    assert unknown.status_code == 400 and unknown.json()["statusCode"] == 400


def test_a_trusted_identitys_token_is_accepted_as_the_client_assertion(sim) -> None:  # type: ignore[no-untyped-def]
    created = sim.control.create_managed_identity(trust=[sim.env["CPV_CLIENT_ID"]])
    assertion = _identity_token(sim, created).json()["access_token"]

    response = _exchange(sim, assertion)

    assert response.status_code == 200, response.text
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert claims["appid"] == sim.env["CPV_CLIENT_ID"]


def test_no_matching_record_is_70021_naming_the_assertions_issuer_subject_and_audience(sim) -> None:  # type: ignore[no-untyped-def]
    created = sim.control.create_managed_identity(trust=[sim.env["CPV_CLIENT_ID"]], subject="someone-else")
    assertion = _identity_token(sim, created).json()["access_token"]

    body = assert_entra_error(_exchange(sim, assertion), 70021, "invalid_request")

    assert f"Assertion Subject: '{created['principal_id']}'" in body["error_description"]
    assert f"Assertion Audience: '{EXCHANGE}'" in body["error_description"]


def test_an_identity_token_for_another_audience_is_not_matched(sim) -> None:  # type: ignore[no-untyped-def]
    created = sim.control.create_managed_identity(trust=[sim.env["CPV_CLIENT_ID"]])
    assertion = _identity_token(sim, created, resource="https://vault.azure.net").json()["access_token"]

    assert_entra_error(_exchange(sim, assertion), 70021, "invalid_request")


def test_a_forged_signature_is_700027(sim) -> None:  # type: ignore[no-untyped-def]
    created = sim.control.create_managed_identity(trust=[sim.env["CPV_CLIENT_ID"]])
    header, payload, signature = _identity_token(sim, created).json()["access_token"].split(".")
    forged = f"{header}.{payload}.{signature[:-4]}AAAA"

    assert_entra_error(_exchange(sim, forged), 700027, "invalid_client", status=401)


def test_an_expired_identity_token_is_700024(sim) -> None:  # type: ignore[no-untyped-def]
    created = sim.control.create_managed_identity(trust=[sim.env["CPV_CLIENT_ID"]])
    assertion = _identity_token(sim, created).json()["access_token"]
    sim.control.advance_clock(LIFETIME + 60)

    assert_entra_error(_exchange(sim, assertion), 700024, "invalid_client", status=401)


def test_identities_and_federated_credentials_survive_the_worlds_round_trip(sim) -> None:  # type: ignore[no-untyped-def]
    created = sim.control.create_managed_identity(trust=[sim.env["CPV_CLIENT_ID"]])
    world = sim.world

    copy = World.from_dict(world.to_dict())

    assert [m.principal_id for m in copy.managed_identities] == [created["principal_id"]]
    (federated,) = copy.cpv_app.federated_credentials
    assert (federated.subject, federated.audiences) == (created["principal_id"], [EXCHANGE])

"""The host's managed identity endpoint (App Service's form) and the federated identity credentials Entra checks a
managed identity's token against, as FIDELITY.md lists them."""

from __future__ import annotations

import jwt
import pytest
import requests

from simulator.control_client import ControlError
from simulator.managed_identity import LIFETIME
from simulator.world import World
from tests.simulator.helpers import admin_consents, assert_entra_error, redeem, token_request

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


def test_the_endpoint_wants_its_header_its_api_version_a_resource_and_one_identity_it_holds(sim) -> None:  # type: ignore[no-untyped-def]
    created = sim.control.create_managed_identity()

    wrong_header = requests.get(
        created["identity_endpoint"],
        params={"api-version": "2019-08-01", "resource": EXCHANGE, "client_id": created["client_id"]},
        headers={"X-IDENTITY-HEADER": "not-the-header"},
        timeout=10,
    )
    old_version = _identity_token(sim, created, **{"api-version": "2017-09-01"})
    unknown = _identity_token(sim, created, client_id="99999999-2222-4333-8444-555555555555")
    no_resource = _identity_token(sim, created, resource="")
    named_twice = _identity_token(sim, created, principal_id=created["principal_id"])
    by_principal = _identity_token(sim, created, client_id="", principal_id=created["principal_id"])

    assert wrong_header.status_code == 401
    assert old_version.status_code == 400
    assert unknown.status_code == 400 and unknown.json()["statusCode"] == 400
    assert no_resource.status_code == 400
    # client_id "Cannot be used on a request that includes `principal_id`, `mi_res_id`, or `object_id`"
    assert named_twice.status_code == 400 and "client_id, principal_id" in named_twice.json()["message"]
    assert by_principal.status_code == 200, by_principal.text


def test_a_trusted_identitys_token_is_accepted_as_the_client_assertion(sim) -> None:  # type: ignore[no-untyped-def]
    created = sim.control.create_managed_identity(trust=[sim.env["CPV_CLIENT_ID"]])
    assertion = _identity_token(sim, created).json()["access_token"]

    response = _exchange(sim, assertion)

    assert response.status_code == 200, response.text
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert claims["appid"] == sim.env["CPV_CLIENT_ID"]


def test_a_subject_no_record_names_is_700213_naming_it(sim) -> None:  # type: ignore[no-untyped-def]
    created = sim.control.create_managed_identity(trust=[sim.env["CPV_CLIENT_ID"]], subject="someone-else")
    assertion = _identity_token(sim, created).json()["access_token"]

    body = assert_entra_error(_exchange(sim, assertion), 700213, "invalid_request")

    assert (
        "No matching federated identity record found for presented assertion subject "
        f"'{created['principal_id']}'." in body["error_description"]
    )


def test_an_issuer_no_record_names_is_700211(sim) -> None:  # type: ignore[no-untyped-def]
    # the page's example of a mismatch: an issuer without (or with) its trailing slash
    issuer = f"{sim.authority_host}/{sim.env['CPV_VENDOR_TENANT_ID']}/v2.0/"
    created = sim.control.create_managed_identity(trust=[sim.env["CPV_CLIENT_ID"]], issuer=issuer)
    assertion = _identity_token(sim, created).json()["access_token"]

    body = assert_entra_error(_exchange(sim, assertion), 700211, "invalid_request")

    assert f"presented assertion issuer '{issuer[:-1]}'." in body["error_description"]


def test_an_identity_token_for_another_audience_is_700212(sim) -> None:  # type: ignore[no-untyped-def]
    created = sim.control.create_managed_identity(trust=[sim.env["CPV_CLIENT_ID"]])
    assertion = _identity_token(sim, created, resource="https://vault.azure.net").json()["access_token"]

    body = assert_entra_error(_exchange(sim, assertion), 700212, "invalid_request")

    assert "presented assertion audience 'https://vault.azure.net'." in body["error_description"]


def test_an_app_without_any_federated_credential_is_70025(sim) -> None:  # type: ignore[no-untyped-def]
    created = sim.control.create_managed_identity()
    assertion = _identity_token(sim, created).json()["access_token"]

    body = assert_entra_error(_exchange(sim, assertion), 70025, "invalid_request")

    assert "Client application has no configured federated identity credentials." in body["error_description"]


def test_a_delegated_token_of_entra_is_refused_with_700229(sim) -> None:  # type: ignore[no-untyped-def]
    sim.control.create_managed_identity(trust=[sim.env["CPV_CLIENT_ID"]])
    delegated = redeem(sim, admin_consents(sim)).json()["access_token"]
    assert "scp" in jwt.decode(delegated, options={"verify_signature": False})

    body = assert_entra_error(_exchange(sim, delegated), 700229, "invalid_request")

    assert "Only app-only tokens can be used as Federated Identity Credentials" in body["error_description"]


def test_a_federated_credential_has_one_audience_and_a_unique_issuer_and_subject(sim) -> None:  # type: ignore[no-untyped-def]
    app = sim.env["CPV_CLIENT_ID"]

    with pytest.raises(ControlError, match=r"HTTP 400.*must have exactly one audience"):
        sim.control.create_managed_identity(trust=[app], audiences=[EXCHANGE, "api://AzureADTokenExchangeUSGov"])
    created = sim.control.create_managed_identity(trust=[app])
    with pytest.raises(ControlError, match=r"HTTP 400.*Issuer and subject combination already exists"):
        sim.control.create_managed_identity(trust=[app], subject=created["principal_id"])

    assert len(sim.world.cpv_app.federated_credentials) == 1


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

"""The vendor's application objects in Graph (`applications(appId='…')`), the `roles` of the app's own app-only
tokens, certificates used only within their dates, and Partner Center's refusal of an app not enrolled as a CPV
app (FIDELITY.md, "Application objects and the app's own keys")."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import msal
import requests

from microsoft.app_credentials import certificate_der, proof_of_possession
from simulator.applications import key_id
from tests.app_certificates import app_certificate, register
from tests.simulator.helpers import GRAPH_DEFAULT, PC_DEFAULT, admin_consents, assert_entra_error, cpv_app, redeem


def _vendor(sim) -> str:  # type: ignore[no-untyped-def]
    return str(sim.world.vendor.tenant_id)


def _app_token(sim, tenant: str | None = None) -> str:  # type: ignore[no-untyped-def]
    result = cpv_app(sim, tenant or _vendor(sim)).acquire_token_for_client([GRAPH_DEFAULT])
    assert "access_token" in result, result
    return str(result["access_token"])


def _get(sim, path: str, token: str) -> requests.Response:  # type: ignore[no-untyped-def]
    return requests.get(f"{sim.graph_url}/v1.0/{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10)


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def test_the_app_reads_its_own_registration_with_application_read_all(sim, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, certificate = app_certificate(tmp_path, "uploaded")
    register(sim.world.cpv_app, certificate)
    token = _app_token(sim)
    assert _claims(token)["roles"] == ["Application.Read.All"]

    response = _get(sim, f"applications(appId='{sim.env['CPV_CLIENT_ID']}')", token)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["appId"] == sim.env["CPV_CLIENT_ID"] and body["signInAudience"] == "AzureADMultipleOrgs"
    graph = next(r for r in body["requiredResourceAccess"] if r["resourceAppId"].startswith("00000003"))
    assert {"id": "e1fe6dd8-ba31-4d61-89e7-88639da4683d", "type": "Scope"} in graph["resourceAccess"]
    assert "http://127.0.0.1:8000/consent/callback" in body["web"]["redirectUris"]
    uploaded = body["keyCredentials"][-1]
    assert base64.b64decode(uploaded["customKeyIdentifier"]).hex().upper() == certificate.thumbprint
    assert uploaded["key"] is None and uploaded["type"] == "AsymmetricX509Cert"
    (secret,) = body["passwordCredentials"]
    assert secret["hint"] == sim.env["CPV_CLIENT_SECRET"][:3] and secret["secretText"] is None
    assert _get(sim, f"applications/{body['id']}", token).json()["appId"] == body["appId"]


def test_without_the_permission_graph_answers_403(sim) -> None:  # type: ignore[no-untyped-def]
    sim.world.cpv_app.graph_app_roles = []
    token = _app_token(sim)
    assert "roles" not in _claims(token)

    response = _get(sim, f"applications(appId='{sim.env['CPV_CLIENT_ID']}')", token)

    assert response.status_code == 403 and response.json()["error"]["code"] == "Authorization_RequestDenied"


def test_an_unknown_app_id_is_a_404(sim) -> None:  # type: ignore[no-untyped-def]
    response = _get(sim, "applications(appId='11111111-1111-1111-1111-111111111111')", _app_token(sim))

    assert response.status_code == 404 and response.json()["error"]["code"] == "Request_ResourceNotFound"


def test_a_certificate_is_refused_outside_its_dates(sim, tmp_path) -> None:  # type: ignore[no-untyped-def]
    for name, days in (("expired", (-30, -1)), ("future", (1, 30))):
        path, certificate = app_certificate(tmp_path, name, not_before_days=days[0], not_after_days=days[1])
        register(sim.world.cpv_app, certificate)
        pem = Path(path).read_text()
        credential = {"private_key": pem, "public_certificate": certificate.certificate_pem}
        result = cpv_app(sim, _vendor(sim), credential=credential).acquire_token_for_client([GRAPH_DEFAULT])
        assert result["error_codes"] == [700027], result
        assert ("expired" if name == "expired" else "not yet valid") in result["error_description"]
        # Entra's words for a registered key outside its dates, the key's dates shown
        description = result["error_description"]
        assert "Client assertion contains an invalid signature. [Reason - The key used is" in description
        assert any(
            f"Thumbprint of key used by client: '{printed}'" in description
            for printed in (certificate.thumbprint, certificate.thumbprint_sha256)
        )
        assert re.search(r"Found key 'Start=\d\d/\d\d/\d{4} \d\d:\d\d:\d\d, End=\d\d/\d\d/\d{4} ", description)


def test_partner_center_refuses_an_app_not_enrolled_as_a_cpv_app(sim) -> None:  # type: ignore[no-untyped-def]
    token = redeem(sim, admin_consents(sim), scope=PC_DEFAULT).json()["access_token"]
    sim.world.cpv_app.cpv_enrolled = False

    response = requests.get(
        f"{sim.partner_center_url}/v1/profiles/organization", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )

    assert response.status_code == 403


def test_a_wrong_secret_is_still_7000215(sim) -> None:  # type: ignore[no-untyped-def]
    response = requests.post(
        f"{sim.authority_host}/{_vendor(sim)}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": sim.env["CPV_CLIENT_ID"],
            "client_secret": "wrong",
            "scope": GRAPH_DEFAULT,
        },
        timeout=10,
    )
    assert_entra_error(response, 7000215, "invalid_client", 401)


# ----- addKey / removeKey -----
def _object_id(sim, token: str) -> str:  # type: ignore[no-untyped-def]
    return str(_get(sim, f"applications(appId='{sim.env['CPV_CLIENT_ID']}')", token).json()["id"])


def _post(sim, path: str, token: str, body: dict[str, Any]) -> requests.Response:  # type: ignore[no-untyped-def]
    return requests.post(
        f"{sim.graph_url}/v1.0/{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def _add_key(sim, token, object_id, new_path, proof, **dates) -> requests.Response:  # type: ignore[no-untyped-def]
    key = {"type": "AsymmetricX509Cert", "usage": "Verify", "key": base64.b64encode(certificate_der(new_path)).decode()}
    return _post(sim, f"applications/{object_id}/addKey", token, {"keyCredential": key | dates, "proof": proof})


def test_add_key_needs_a_proof_signed_by_a_valid_certificate_of_the_app(sim, tmp_path) -> None:  # type: ignore[no-untyped-def]
    current, certificate = app_certificate(tmp_path, "current")
    register(sim.world.cpv_app, certificate)
    stranger, _ = app_certificate(tmp_path, "stranger")
    new_path, _ = app_certificate(tmp_path, "new")
    token = _app_token(sim)
    object_id = _object_id(sim, token)

    unproved = _add_key(
        sim, token, object_id, new_path, proof_of_possession(certificate_path=stranger, application_object_id=object_id)
    )
    wrong_issuer = _add_key(
        sim,
        token,
        object_id,
        new_path,
        proof_of_possession(certificate_path=current, application_object_id=sim.env["CPV_CLIENT_ID"]),
    )
    for refused in (unproved, wrong_issuer):
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "Authentication_MissingOrMalformed"
    reasons = [e["detail"]["proof"] for e in sim.control.log(service="graph", path="addKey", status=401)]
    assert "not signed by a certificate of the application" in reasons[0]

    added = _add_key(
        sim, token, object_id, new_path, proof_of_possession(certificate_path=current, application_object_id=object_id)
    )

    assert added.status_code == 200, added.text
    assert added.json()["type"] == "AsymmetricX509Cert" and added.json()["keyId"]
    new_pem = Path(new_path).read_text()
    credential = {"private_key": new_pem, "public_certificate": new_pem[new_pem.index("-----BEGIN CERTIFICATE") :]}
    assert "access_token" in cpv_app(sim, _vendor(sim), credential=credential).acquire_token_for_client([GRAPH_DEFAULT])


def _rolling(sim, tmp_path) -> tuple[str, str, str, str]:  # type: ignore[no-untyped-def]
    """A current certificate registered on the app, a new one to add, the app's token and its object id."""
    current, certificate = app_certificate(tmp_path, "current")
    register(sim.world.cpv_app, certificate)
    new_path, _ = app_certificate(tmp_path, "new")
    token = _app_token(sim)
    return current, new_path, token, _object_id(sim, token)


def _stranger_token(sim) -> str:  # type: ignore[no-untyped-def]
    """An app-only Graph token of another app of the vendor's, holding no permission."""
    stranger = sim.world.sandbox_app
    return str(
        msal.ConfidentialClientApplication(
            stranger.client_id,
            client_credential=stranger.secrets[0].value,
            authority=sim.authority(_vendor(sim)),
            instance_discovery=False,
        ).acquire_token_for_client([GRAPH_DEFAULT])["access_token"]
    )


def _padded(token: str) -> str:
    """The same JWT with '=' padding put back on its header and payload segments."""
    header, payload, signature = token.split(".")
    return ".".join([header + "=" * (-len(header) % 4), payload + "=" * (-len(payload) % 4), signature])


def test_a_padded_proof_is_authentication_missing_or_malformed(sim, tmp_path) -> None:  # type: ignore[no-untyped-def]
    current, new_path, token, object_id = _rolling(sim, tmp_path)
    proof = proof_of_possession(certificate_path=current, application_object_id=object_id)
    # its header or payload is of a length base64 pads, so that the padded proof differs
    assert _padded(proof) != proof
    assert all("=" not in segment for segment in proof.split("."))

    refused = _add_key(sim, token, object_id, new_path, _padded(proof))

    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "Authentication_MissingOrMalformed"
    assert len(sim.world.cpv_app.certificates) == 2
    assert _add_key(sim, token, object_id, new_path, proof).status_code == 200


def test_the_apps_delegated_token_may_not_roll_its_keys_without_a_permission(sim, tmp_path) -> None:  # type: ignore[no-untyped-def]
    current, certificate = app_certificate(tmp_path, "current")
    register(sim.world.cpv_app, certificate)
    object_id = _object_id(sim, _app_token(sim))
    staff = sim.world.vendor.users[0]
    refresh = sim.control.issue_refresh_token(staff.upn, scope="https://graph.microsoft.com/User.Read offline_access")
    answer = redeem(sim, refresh, tenant=_vendor(sim), scope=GRAPH_DEFAULT)
    assert answer.status_code == 200, answer.text
    delegated = answer.json()["access_token"]
    claims = _claims(delegated)
    assert claims["appid"] == sim.env["CPV_CLIENT_ID"] and "scp" in claims
    assert not set(claims["scp"].split()) & {"Application.ReadWrite.All", "Directory.ReadWrite.All"}
    proof = proof_of_possession(certificate_path=current, application_object_id=object_id)

    body = {"keyId": key_id(certificate), "proof": proof}
    response = _post(sim, f"applications/{object_id}/removeKey", delegated, body)

    assert response.status_code == 403 and response.json()["error"]["code"] == "Authorization_RequestDenied"
    assert len(sim.world.cpv_app.certificates) == 2


def test_without_a_permission_an_unknown_application_is_403_not_404(sim, tmp_path) -> None:  # type: ignore[no-untyped-def]
    current, _ = app_certificate(tmp_path, "current")
    other = _stranger_token(sim)
    unknown = "11111111-1111-1111-1111-111111111111"
    proof = proof_of_possession(certificate_path=current, application_object_id=unknown)

    response = _post(sim, f"applications/{unknown}/removeKey", other, {"keyId": unknown, "proof": proof})

    assert response.status_code == 403


def test_a_key_added_with_a_start_date_is_refused_before_it(sim, tmp_path) -> None:  # type: ignore[no-untyped-def]
    current, new_path, token, object_id = _rolling(sim, tmp_path)
    proof = proof_of_possession(certificate_path=current, application_object_id=object_id)
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")

    assert _add_key(sim, token, object_id, new_path, proof, startDateTime=tomorrow).status_code == 200

    new_pem = Path(new_path).read_text()
    credential = {"private_key": new_pem, "public_certificate": new_pem[new_pem.index("-----BEGIN CERTIFICATE") :]}
    result = cpv_app(sim, _vendor(sim), credential=credential).acquire_token_for_client([GRAPH_DEFAULT])
    assert result["error_codes"] == [700027] and "not yet valid" in result["error_description"]


def test_another_app_may_not_change_the_keys_without_a_permission(sim, tmp_path) -> None:  # type: ignore[no-untyped-def]
    current, certificate = app_certificate(tmp_path, "current")
    register(sim.world.cpv_app, certificate)
    token = _app_token(sim)
    object_id = _object_id(sim, token)
    sim.world.cpv_app.graph_app_roles = []
    other = _stranger_token(sim)
    proof = proof_of_possession(certificate_path=current, application_object_id=object_id)

    response = _post(sim, f"applications/{object_id}/removeKey", other, {"keyId": key_id(certificate), "proof": proof})

    assert response.status_code == 403


def test_remove_key_takes_the_key_off_with_a_proof(sim, tmp_path) -> None:  # type: ignore[no-untyped-def]
    current, certificate = app_certificate(tmp_path, "current")
    register(sim.world.cpv_app, certificate)
    token = _app_token(sim)
    object_id = _object_id(sim, token)
    seeded = sim.world.cpv_app.certificates[0]
    proof = proof_of_possession(certificate_path=current, application_object_id=object_id)

    removed = _post(sim, f"applications/{object_id}/removeKey", token, {"keyId": key_id(seeded), "proof": proof})
    again = _post(sim, f"applications/{object_id}/removeKey", token, {"keyId": key_id(seeded), "proof": proof})

    assert removed.status_code == 204 and again.status_code == 404
    assert seeded not in sim.world.cpv_app.certificates


def test_the_app_lists_its_federated_identity_credentials_with_application_read_all(sim) -> None:  # type: ignore[no-untyped-def]
    created = sim.control.create_managed_identity(trust=[sim.env["CPV_CLIENT_ID"]], name="hosts-identity")
    token = _app_token(sim)
    by_app_id = _get(sim, f"applications(appId='{sim.env['CPV_CLIENT_ID']}')/federatedIdentityCredentials", token)
    object_id = _get(sim, f"applications(appId='{sim.env['CPV_CLIENT_ID']}')", token).json()["id"]

    by_object_id = _get(sim, f"applications/{object_id}/federatedIdentityCredentials/", token)

    assert by_app_id.status_code == 200, by_app_id.text
    (federated,) = by_app_id.json()["value"]
    assert federated["name"] == "hosts-identity" and federated["subject"] == created["principal_id"]
    assert federated["issuer"] == f"{sim.authority_host}/{_vendor(sim)}/v2.0"
    assert federated["audiences"] == ["api://AzureADTokenExchange"]
    assert by_object_id.json()["value"] == by_app_id.json()["value"]
    sim.world.cpv_app.graph_app_roles = []
    refused = _get(sim, f"applications/{object_id}/federatedIdentityCredentials", _app_token(sim))
    assert refused.status_code == 403

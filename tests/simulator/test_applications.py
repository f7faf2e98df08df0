"""The vendor's application objects in Graph (`applications(appId='…')`), the `roles` of the app's own app-only
tokens, certificates used only within their dates, and Partner Center's refusal of an app not enrolled as a CPV
app (FIDELITY.md, "Application objects and the app's own keys")."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import requests

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

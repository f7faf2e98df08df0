"""Each national cloud has its own Entra ID, Partner Center and Graph listeners, issuers, audiences, signing key and
app registrations; a tenant, an app or a token of one cloud is unknown to another's."""

from __future__ import annotations

from typing import Any

import jwt
import msal
import pytest
import requests

from tests.simulator.helpers import REDIRECT_URI, admin, sign_in

# (cloud, Graph's resource, Partner Center's resource, the v1.0 issuer's host)
CLOUDS = [
    ("usgov", "https://graph.microsoft.us", "https://api.partnercenter.microsoft.com", "https://sts.windows.net"),
    (
        "china",
        "https://microsoftgraph.chinacloudapi.cn",
        "https://partner.partnercenterapi.microsoftonline.cn",
        "https://sts.chinacloudapi.cn",
    ),
]


@pytest.fixture
def national(sim):  # type: ignore[no-untyped-def]
    """The world's partners 1 and 2 live in US Government and 21Vianet (the next test's reset restores it)."""
    sim.world.partners[1].cloud, sim.world.partners[2].cloud = "usgov", "china"
    sim.world.invalidate()
    return sim


def _consent(sim: Any, cloud: str, partner: int, scopes: list[str]) -> dict[str, Any]:
    """A partner's admin consents to the vendor's app registered in `cloud`, at that cloud's authority."""
    prefix = f"CPV_{cloud.upper()}"
    app = msal.ConfidentialClientApplication(
        sim.env[f"{prefix}_CLIENT_ID"],
        client_credential=sim.env[f"{prefix}_CLIENT_SECRET"],
        authority=f"{sim.env[f'{prefix}_AUTHORITY_HOST']}/{sim.world.partners[partner].tenant_id}",
        instance_discovery=False,
    )
    flow = app.initiate_auth_code_flow(scopes, redirect_uri=REDIRECT_URI, response_mode="form_post")
    result = sign_in(flow["auth_uri"], user=admin(sim, partner).upn)
    return app.acquire_token_by_auth_code_flow(flow, result.params)


@pytest.mark.parametrize(("cloud", "graph", "partner_center", "sts"), CLOUDS)
def test_a_national_clouds_tokens_carry_its_issuers_and_audiences_and_only_its_services_take_them(
    national, cloud: str, graph: str, partner_center: str, sts: str
) -> None:  # type: ignore[no-untyped-def]
    sim = national
    index = 1 if cloud == "usgov" else 2
    prefix = f"CPV_{cloud.upper()}"
    authority = sim.env[f"{prefix}_AUTHORITY_HOST"]
    tid = sim.world.partners[index].tenant_id

    result = _consent(sim, cloud, index, [f"{graph}/.default"])

    assert "access_token" in result, result
    assert result["id_token_claims"]["iss"] == f"{authority}/{tid}/v2.0"
    config = requests.get(f"{authority}/{tid}/v2.0/.well-known/openid-configuration", timeout=10).json()
    key = jwt.PyJWKClient(config["jwks_uri"]).get_signing_key_from_jwt(result["access_token"])
    claims = jwt.decode(result["access_token"], key.key, algorithms=["RS256"], audience=graph)
    assert claims["iss"] == f"{sts}/{tid}/" and claims["appid"] == sim.env[f"{prefix}_CLIENT_ID"]
    headers = {"Authorization": f"Bearer {result['access_token']}"}
    here = requests.get(f"{sim.env[f'{prefix}_GRAPH_URL']}/v1.0/me", headers=headers, timeout=10)
    assert here.status_code == 200, here.text
    # The global cloud's Graph knows neither this cloud's signing key nor its audience.
    elsewhere = requests.get(f"{sim.graph_url}/v1.0/me", headers=headers, timeout=10)
    assert elsewhere.status_code == 401
    pc = _consent(sim, cloud, index, [f"{partner_center}/user_impersonation"])
    pc_claims = jwt.decode(pc["access_token"], options={"verify_signature": False})
    assert (pc_claims["aud"], pc_claims["iss"]) == (partner_center, f"{sts}/{tid}/")
    entries = sim.control.log(service="graph")
    assert {(e["cloud"], e["status"]) for e in entries} == {(cloud, 200), ("global", 401)}


def test_another_clouds_app_or_tenant_is_unknown_to_a_clouds_entra_id(national) -> None:  # type: ignore[no-untyped-def]
    sim = national
    usgov_authority = sim.env["CPV_USGOV_AUTHORITY_HOST"]
    usgov_tenant = sim.world.partners[1].tenant_id
    answer = requests.post(
        f"{usgov_authority}/{usgov_tenant}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": sim.env["CPV_CLIENT_ID"],
            "client_secret": sim.env["CPV_CLIENT_SECRET"],
            "scope": "https://graph.microsoft.us/.default",
        },
        timeout=10,
    )
    assert answer.status_code == 400 and "AADSTS700016" in answer.json()["error_description"]
    for authority, tenant in (
        (usgov_authority, sim.world.partners[0].tenant_id),
        (sim.authority_host, usgov_tenant),
    ):
        discovery = requests.get(f"{authority}/{tenant}/v2.0/.well-known/openid-configuration", timeout=10)
        assert discovery.status_code == 400 and "AADSTS90002" in discovery.json()["error_description"]
    mine = requests.get(f"{usgov_authority}/{usgov_tenant}/v2.0/.well-known/openid-configuration", timeout=10).json()
    assert mine["issuer"] == f"{usgov_authority}/{usgov_tenant}/v2.0"
    assert mine["token_endpoint"].startswith(usgov_authority)
    hosts = {e["host"] for e in sim.control.log(service="entra")}
    assert hosts == {usgov_authority.split("//", 1)[1], sim.authority_host.split("//", 1)[1]}

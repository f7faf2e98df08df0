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
    # Partner Center for US Government is the global endpoint; 21Vianet's is its own, and the global one refuses
    # its tokens.
    pc_url = sim.env[f"{prefix}_PARTNER_CENTER_URL"]
    assert (pc_url == sim.partner_center_url) == (cloud == "usgov")
    pc_headers = {"Authorization": f"Bearer {pc['access_token']}"}
    for url in {pc_url, sim.partner_center_url}:
        answer = requests.get(f"{url}/v1/customers?size=1", headers=pc_headers, timeout=10)
        assert answer.status_code == (200 if url == pc_url else 401), (url, answer.text)
    served = {
        (e["cloud"], e["status"], e["detail"].get("token_cloud")) for e in sim.control.log(service="partner_center")
    }
    if cloud == "usgov":
        assert served == {("global", 200, "usgov")}
    else:
        assert served == {("china", 200, "china"), ("global", 401, None)}


def _client_credentials(sim: Any, authority: str, tenant: str, prefix: str, scope: str) -> requests.Response:
    """A client_credentials request of the app registered under `prefix`, at `authority` for `tenant`."""
    return requests.post(
        f"{authority}/{tenant}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": sim.env[f"{prefix}_CLIENT_ID"],
            "client_secret": sim.env[f"{prefix}_CLIENT_SECRET"],
            "scope": scope,
        },
        timeout=10,
    )


def _forged(sim: Any, cloud: str, claims: dict[str, Any]) -> dict[str, str]:
    """A bearer header with `claims` signed by `cloud`'s own Entra ID key (the in-process simulator's)."""
    assert sim._server is not None, "the national fixture needs the in-process simulator"
    return {"Authorization": f"Bearer {sim._server.sim.signer_for(cloud).sign(claims)}"}


def test_a_national_cloud_refuses_the_global_clouds_resource_identifiers(national) -> None:  # type: ignore[no-untyped-def]
    sim = national
    authority = sim.env["CPV_USGOV_AUTHORITY_HOST"]
    tid = sim.world.partners[1].tenant_id
    answer = _client_credentials(sim, authority, tid, "CPV_USGOV", "https://graph.microsoft.com/.default")
    body = answer.json()
    assert answer.status_code == 400 and body["error"] == "invalid_resource", body
    assert "AADSTS500011" in body["error_description"] and "https://graph.microsoft.com" in body["error_description"]
    # Graph's application id is the same in every cloud: the token's aud is this cloud's Graph.
    by_id = _consent(sim, "usgov", 1, ["00000003-0000-0000-c000-000000000000/.default"])
    claims = jwt.decode(by_id["access_token"], options={"verify_signature": False})
    assert claims["aud"] == "https://graph.microsoft.us"
    # A token signed by the cloud's own key is still refused by its Graph when its aud is the global Graph's.
    graph = sim.env["CPV_USGOV_GRAPH_URL"]
    me = f"{graph}/v1.0/organization"
    assert requests.get(me, headers=_forged(sim, "usgov", claims), timeout=10).status_code == 200
    refused = requests.get(
        me, headers=_forged(sim, "usgov", {**claims, "aud": "https://graph.microsoft.com"}), timeout=10
    )
    assert refused.status_code == 401 and "audience" in refused.json()["error"]["message"]
    # 21Vianet's Partner Center refuses the global Partner Center's aud likewise.
    china = {
        **claims,
        "tid": sim.world.partners[2].tenant_id,
        "iss": f"https://sts.chinacloudapi.cn/{sim.world.partners[2].tenant_id}/",
    }
    china["aud"] = "https://api.partnercenter.microsoft.com"
    pc = requests.get(
        f"{sim.env['CPV_CHINA_PARTNER_CENTER_URL']}/v1/customers?size=1",
        headers=_forged(sim, "china", china),
        timeout=10,
    )
    assert pc.status_code == 401 and "audience" in pc.json()["description"]


def test_another_clouds_app_or_tenant_is_unknown_to_a_clouds_entra_id(national) -> None:  # type: ignore[no-untyped-def]
    sim = national
    usgov_authority = sim.env["CPV_USGOV_AUTHORITY_HOST"]
    usgov_tenant = sim.world.partners[1].tenant_id
    answer = _client_credentials(sim, usgov_authority, usgov_tenant, "CPV", "https://graph.microsoft.us/.default")
    assert answer.status_code == 400 and "AADSTS700016" in answer.json()["error_description"]
    china_authority, china_tenant = sim.env["CPV_CHINA_AUTHORITY_HOST"], sim.world.partners[2].tenant_id
    for authority, tenant in (
        (usgov_authority, sim.world.partners[0].tenant_id),
        (sim.authority_host, china_tenant),
        (china_authority, usgov_tenant),
    ):
        discovery = requests.get(f"{authority}/{tenant}/v2.0/.well-known/openid-configuration", timeout=10)
        assert discovery.status_code == 400 and "AADSTS90002" in discovery.json()["error_description"]
    mine = requests.get(f"{usgov_authority}/{usgov_tenant}/v2.0/.well-known/openid-configuration", timeout=10).json()
    assert mine["issuer"] == f"{usgov_authority}/{usgov_tenant}/v2.0"
    assert mine["token_endpoint"].startswith(usgov_authority)
    # The global authority knows a US Government tenant: its discovery document says so, and it refuses a
    # confidential client's token request for it (AADSTS900432) and a sign-in of its users (AADSTS900439).
    there = requests.get(f"{sim.authority_host}/{usgov_tenant}/v2.0/.well-known/openid-configuration", timeout=10)
    assert there.status_code == 200 and there.json()["tenant_region_scope"] == "USGOV"
    assert there.json()["token_endpoint"].startswith(sim.authority_host)
    cross = _client_credentials(sim, sim.authority_host, usgov_tenant, "CPV", "https://graph.microsoft.com/.default")
    assert cross.status_code == 400 and cross.json()["error_codes"] == [900432], cross.text
    sign_in_page = requests.get(
        f"{sim.authority_host}/{usgov_tenant}/oauth2/v2.0/authorize",
        params={
            "client_id": sim.env["CPV_CLIENT_ID"],
            "response_type": "code",
            "redirect_uri": REDIRECT_URI,
            "scope": "openid",
        },
        timeout=10,
    )
    assert "AADSTS900439" in sign_in_page.text
    china_cross = _client_credentials(
        sim, sim.authority_host, china_tenant, "CPV", "https://graph.microsoft.com/.default"
    )
    assert china_cross.status_code == 400 and china_cross.json()["error_codes"] == [90002]


def test_opaque_partner_center_tokens_mean_something_only_to_their_own_clouds_partner_center(national) -> None:  # type: ignore[no-untyped-def]
    sim = national
    sim.control.set_settings(opaque_access_tokens=True)
    usgov = _consent(sim, "usgov", 1, ["https://api.partnercenter.microsoft.com/user_impersonation"])
    china = _consent(sim, "china", 2, ["https://partner.partnercenterapi.microsoftonline.cn/user_impersonation"])
    assert not usgov["access_token"].startswith("eyJ") and not china["access_token"].startswith("eyJ"), "not JWTs"

    def customers(url: str, token: str) -> int:
        headers = {"Authorization": f"Bearer {token}"}
        return requests.get(f"{url}/v1/customers?size=1", headers=headers, timeout=10).status_code

    china_pc = sim.env["CPV_CHINA_PARTNER_CENTER_URL"]
    # US Government's token at the global endpoint, which is its Partner Center; 21Vianet's only at its own.
    assert customers(sim.partner_center_url, usgov["access_token"]) == 200
    assert customers(china_pc, usgov["access_token"]) == 401
    assert customers(china_pc, china["access_token"]) == 200
    assert customers(sim.partner_center_url, china["access_token"]) == 401
    served = [(e["cloud"], e["detail"].get("token_cloud")) for e in sim.control.log(service="partner_center")]
    assert served == [("global", "usgov"), ("china", None), ("china", "china"), ("global", None)]

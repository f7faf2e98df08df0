from __future__ import annotations

import hashlib
import json
from urllib.parse import parse_qs, urlencode, urlparse

import jwt
import msal
import pytest
import requests

from simulator.testing import ControlError
from tests.simulator.helpers import (
    GRAPH_DEFAULT,
    PC_DEFAULT,
    PC_SCOPE,
    REDIRECT_URI,
    admin,
    assert_entra_error,
    consent,
    cpv_app,
    sign_in,
    token_request,
    user_named,
)

GLOBAL_ADMIN = "62e90394-69f5-4237-9190-012177145e10"


def _verify_v1(sim, token: str, audience: str) -> dict:
    """An access token for one of Microsoft's resources: signed with the JWKS key, v1.0 issuer and version."""
    config = requests.get(
        f"{sim.authority_host}/organizations/v2.0/.well-known/openid-configuration", timeout=10
    ).json()
    key = jwt.PyJWKClient(config["jwks_uri"]).get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key.key, algorithms=["RS256"], audience=audience)
    assert claims["iss"] == f"https://sts.windows.net/{claims['tid']}/"
    assert claims["ver"] == "1.0"
    return claims


def _verify(sim, token: str, audience: str) -> dict:
    """Check a token the way the product must: signature via the JWKS from discovery, iss, aud, exp."""
    config = requests.get(
        f"{sim.authority_host}/organizations/v2.0/.well-known/openid-configuration", timeout=10
    ).json()
    jwks = jwt.PyJWKClient(config["jwks_uri"])
    key = jwks.get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key.key, algorithms=["RS256"], audience=audience)
    assert claims["iss"] == config["issuer"].replace("{tenantid}", claims["tid"])
    return claims


@pytest.mark.parametrize("response_mode", ["form_post", "query"])
def test_msal_completes_the_auth_code_flow(sim, response_mode):
    user = admin(sim)
    result = consent(sim, user=user.upn, response_mode=response_mode)

    assert "access_token" in result, result
    assert result["refresh_token"].startswith("0.SIMCANARY-rt.")
    claims = _verify(sim, result["id_token"], sim.env["CPV_CLIENT_ID"])
    assert claims["tid"] == sim.world.partners[0].tenant_id
    assert claims["oid"] == user.oid
    assert claims["preferred_username"] == user.upn
    # a v2.0 id_token carries no amr, and no wids unless the app registration asks for directory roles
    assert "amr" not in claims and "wids" not in claims
    assert claims["nonce"] == result["id_token_claims"]["nonce"]
    # the evidence is in the Partner Center access token (v1.0): amr (no wids unless `access_token_wids`)
    access = _verify_v1(sim, result["access_token"], "https://api.partnercenter.microsoft.com")
    assert access["scp"] == "user_impersonation"
    assert access["appid"] == sim.env["CPV_CLIENT_ID"]
    assert access["amr"] == ["pwd", "mfa"]
    assert "wids" not in access
    # client_info is what msal keys its account on: uid.utid
    info = json.loads(jwt.utils.base64url_decode(result["client_info"]))
    assert info == {"uid": user.oid, "utid": claims["tid"]}
    # the code never appeared in the request log
    assert not sim.control.find_leaks(json.dumps(sim.control.log()))


def test_form_post_page_auto_submits_to_the_redirect_uri(sim):
    app = cpv_app(sim)
    flow = app.initiate_auth_code_flow([PC_SCOPE], redirect_uri=REDIRECT_URI, response_mode="form_post")
    result = sign_in(flow["auth_uri"], user=admin(sim).upn)
    page = result.response.text
    assert f'action="{REDIRECT_URI}"' in page
    assert "Continue" in page
    assert result.params["state"] == flow["state"]
    assert result.response.headers["Referrer-Policy"] == "no-referrer"


def test_sign_in_page_shows_app_permissions_and_the_partner_users(sim):
    app = cpv_app(sim, sim.world.partners[1].tenant_id)
    flow = app.initiate_auth_code_flow([PC_SCOPE], redirect_uri=REDIRECT_URI, response_mode="form_post")
    page = requests.get(flow["auth_uri"], timeout=10)
    assert page.status_code == 200
    assert "Contoso Control Panel" in page.text
    assert "user_impersonation" in page.text and "offline_access" in page.text
    for user in sim.world.partners[1].users:
        assert user.upn in page.text
    assert sim.world.partners[0].users[0].upn not in page.text
    assert "<script" not in page.text


def test_the_vendors_staff_sign_in_on_its_own_tenant_with_the_amr_of_their_sign_in(sim):
    vendor = sim.world.vendor
    app = cpv_app(sim, vendor.tenant_id)
    flow = app.initiate_auth_code_flow([], redirect_uri=REDIRECT_URI, response_mode="form_post")
    page = requests.get(flow["auth_uri"], timeout=10).text
    tokens = {}
    for login in ("staff.admin", "staff.nomfa"):
        flow = app.initiate_auth_code_flow([], redirect_uri=REDIRECT_URI, response_mode="form_post")
        result = sign_in(flow["auth_uri"], user=f"{login}@{vendor.domain}")
        tokens[login] = app.acquire_token_by_auth_code_flow(flow, result.params)

    # The tenant's own accounts only: no partner's user signs in on the vendor's tenant.
    assert all(user.upn in page for user in vendor.users)
    assert sim.world.partners[0].users[0].upn not in page
    for login, amr in (("staff.admin", ["pwd", "mfa"]), ("staff.nomfa", ["pwd"])):
        claims = tokens[login]["id_token_claims"]
        access = jwt.decode(tokens[login]["access_token"], options={"verify_signature": False})
        assert claims["tid"] == vendor.tenant_id and "amr" not in claims  # a v2.0 id_token carries no amr
        assert access["ver"] == "1.0" and access["aud"] == "https://graph.microsoft.com" and access["amr"] == amr


def _staff_sign_in(sim, login: str, claims: dict | None) -> dict:
    """A staff member signs in on the vendor's tenant; the control panel asks `claims` (the OIDC claims request)."""
    vendor = sim.world.vendor
    app = cpv_app(sim, vendor.tenant_id)
    challenge = json.dumps(claims) if claims is not None else None
    flow = app.initiate_auth_code_flow(
        [], redirect_uri=REDIRECT_URI, response_mode="form_post", claims_challenge=challenge
    )
    if challenge is not None:
        assert json.loads(parse_qs(urlparse(flow["auth_uri"]).query)["claims"][0]) == claims
    result = app.acquire_token_by_auth_code_flow(
        flow, sign_in(flow["auth_uri"], user=f"{login}@{vendor.domain}").params
    )
    assert "id_token_claims" in result, result
    return result


def test_an_authentication_context_is_in_the_id_token_of_a_sign_in_that_satisfies_it(sim):
    """`claims={"id_token":{"acrs":{"essential":true,"value":"c1"}}}` on the vendor's tenant, whose c1 asks for
    MFA: a sign-in with MFA gets `acrs: ["c1"]`, one without does not (the context's policy is not satisfied)."""
    asked = {"id_token": {"acrs": {"essential": True, "value": "c1"}}}
    assert sim.control.world()["vendor"]["authentication_contexts"] == {"c1": "mfa"}
    assert _staff_sign_in(sim, "staff.admin", asked)["id_token_claims"]["acrs"] == ["c1"]
    assert "acrs" not in _staff_sign_in(sim, "staff.nomfa", asked)["id_token_claims"]
    assert "acrs" not in _staff_sign_in(sim, "staff.admin", None)["id_token_claims"]
    # the access token gets it only when asked for it
    with_mfa = _staff_sign_in(sim, "staff.admin", {**asked, "access_token": {"acrs": {"values": ["c1"]}}})
    assert jwt.decode(with_mfa["access_token"], options={"verify_signature": False})["acrs"] == ["c1"]
    assert "acrs" not in jwt.decode(
        _staff_sign_in(sim, "staff.admin", asked)["access_token"], options={"verify_signature": False}
    )
    # a context declared without a policy, or not declared, is satisfied by any sign-in
    sim.control.set_authentication_contexts({"c1": "mfa", "c2": None})
    either = {"id_token": {"acrs": {"essential": True, "values": ["c1", "c2", "c3"]}}}
    assert _staff_sign_in(sim, "staff.nomfa", either)["id_token_claims"]["acrs"] == ["c2", "c3"]
    assert _staff_sign_in(sim, "staff.admin", either)["id_token_claims"]["acrs"] == ["c1", "c2", "c3"]
    sim.control.set_authentication_contexts({"C1": None})
    assert _staff_sign_in(sim, "staff.nomfa", asked)["id_token_claims"]["acrs"] == ["c1"]
    with pytest.raises(ControlError, match=r"c1\.\.c25"):
        sim.control.set_authentication_contexts({"c26": "mfa"})
    with pytest.raises(ControlError, match=r"c1\.\.c25"):
        sim.control.set_authentication_contexts({"c1": "block"})
    sim.control.reset()
    assert sim.control.world()["vendor"]["authentication_contexts"] == {"c1": "mfa"}


def test_a_claims_parameter_that_is_not_json_is_refused_on_the_redirect(sim):
    response = requests.get(_authorize_url(sim, claims="{acrs"), allow_redirects=False, timeout=10)
    params = parse_qs(urlparse(response.headers["Location"]).query)
    assert params["error"] == ["invalid_request"] and params["error_description"][0].startswith("AADSTS90100")
    assert params["state"] == ["s-123"]


def test_certificate_credentials_work_with_thumbprint_and_public_certificate(sim):
    pem = open(sim.env["CPV_CLIENT_CERTIFICATE"]).read()
    by_thumbprint = {"private_key": pem, "thumbprint": sim.env["CPV_CLIENT_CERTIFICATE_THUMBPRINT"]}
    result = consent(sim, credential=by_thumbprint)
    assert "access_token" in result, result
    assert jwt.decode(result["access_token"], options={"verify_signature": False})["appidacr"] == "2"

    # public_certificate: msal signs PS256 with x5t#S256
    cert = pem[pem.index("-----BEGIN CERTIFICATE-----") :]
    app = cpv_app(sim, sim.world.partners[0].tenant_id, {"private_key": pem, "public_certificate": cert})
    renewed = app.acquire_token_by_refresh_token(result["refresh_token"], [GRAPH_DEFAULT])
    assert "access_token" in renewed, renewed


def test_refresh_token_redeems_for_partner_center_and_graph_with_a_new_token_each_time(sim):
    first = consent(sim)
    app = cpv_app(sim, sim.world.partners[0].tenant_id)
    pc = app.acquire_token_by_refresh_token(first["refresh_token"], [PC_DEFAULT])
    graph = app.acquire_token_by_refresh_token(pc["refresh_token"], [GRAPH_DEFAULT])
    assert "access_token" in pc and "access_token" in graph
    assert jwt.decode(pc["access_token"], options={"verify_signature": False})["aud"] == (
        "https://api.partnercenter.microsoft.com"
    )
    graph_claims = jwt.decode(graph["access_token"], options={"verify_signature": False})
    assert graph_claims["aud"] == "https://graph.microsoft.com"
    assert "User.Read" in graph_claims["scp"]
    tokens = {first["refresh_token"], pc["refresh_token"], graph["refresh_token"]}
    assert len(tokens) == 3
    # Entra keeps the old one working
    again = cpv_app(sim).acquire_token_by_refresh_token(first["refresh_token"], [PC_DEFAULT])
    assert "access_token" in again
    info = sim.control.refresh_token_info(first["refresh_token"])
    assert info is not None and info["redemptions"] == 2
    assert sim.control.redemptions()[admin(sim).oid] == 3


def test_a_refresh_token_redeemed_at_organizations_is_for_the_home_tenant(sim):
    # A second partner's admin too: the generic authority finds each user's own tenant, never the first one's.
    for partner in (0, 1):
        refresh_token = consent(sim, user=admin(sim, partner).upn)["refresh_token"]
        home = str(sim.world.partners[partner].tenant_id)
        graph = cpv_app(sim).acquire_token_by_refresh_token(refresh_token, [GRAPH_DEFAULT])
        claims = jwt.decode(graph["access_token"], options={"verify_signature": False})
        assert claims["tid"] == home
        assert claims["iss"] == f"https://sts.windows.net/{home}/"


def test_user_impersonation_scope_and_graph_me(sim):
    result = consent(sim, scopes=[GRAPH_DEFAULT])
    me = requests.get(
        f"{sim.graph_url}/v1.0/me", headers={"Authorization": f"Bearer {result['access_token']}"}, timeout=10
    )
    assert me.status_code == 200
    assert me.json()["userPrincipalName"] == admin(sim).upn


def test_user_without_mfa_gets_pwd_only_and_non_global_admin_no_role(sim):
    no_mfa = user_named(sim, "nomfa")
    result = consent(sim, user=no_mfa.upn)
    assert "amr" not in result["id_token_claims"]
    assert jwt.decode(result["access_token"], options={"verify_signature": False})["amr"] == ["pwd"]
    agent = user_named(sim, "agent")
    result = consent(sim, user=agent.upn, scopes=["User.Read"])
    access = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert access["aud"] == "https://graph.microsoft.com"
    assert access["wids"] == ["b79fbf4d-3ef9-4689-8143-76b194e85509"]
    assert GLOBAL_ADMIN not in access["wids"]


def test_refresh_without_offline_access_returns_no_refresh_token(sim):
    refresh = sim.control.issue_refresh_token(admin(sim).upn)
    response = token_request(
        sim,
        "organizations",
        grant_type="refresh_token",
        client_id=sim.env["CPV_CLIENT_ID"],
        client_secret=sim.env["CPV_CLIENT_SECRET"],
        refresh_token=refresh,
        scope=PC_DEFAULT,
    )
    assert response.status_code == 200
    assert "refresh_token" not in response.json()
    assert "id_token" not in response.json()


def test_discovery_documents(sim):
    common = requests.get(f"{sim.authority_host}/common/v2.0/.well-known/openid-configuration", timeout=10).json()
    assert common["issuer"] == f"{sim.authority_host}/{{tenantid}}/v2.0"
    assert common["token_endpoint"] == f"{sim.authority_host}/common/oauth2/v2.0/token"
    tenant = sim.world.partners[0]
    by_domain = requests.get(
        f"{sim.authority_host}/{tenant.domain}/v2.0/.well-known/openid-configuration", timeout=10
    ).json()
    assert by_domain["issuer"] == f"{sim.authority_host}/{tenant.tenant_id}/v2.0"
    keys = requests.get(common["jwks_uri"], timeout=10).json()["keys"]
    assert keys[0]["kty"] == "RSA" and keys[0]["kid"]
    unknown = requests.get(
        f"{sim.authority_host}/nosuchtenant.example/v2.0/.well-known/openid-configuration", timeout=10
    )
    assert_entra_error(unknown, 90002, "invalid_tenant")
    with pytest.raises(ValueError):
        msal.ConfidentialClientApplication(
            sim.env["CPV_CLIENT_ID"],
            client_credential="x",
            authority=sim.authority("nosuchtenant.example"),
            instance_discovery=False,
        )


# ----- authorize errors -----
def _authorize_url(sim, **overrides) -> str:
    params = {
        "client_id": sim.env["CPV_CLIENT_ID"],
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "scope": f"{PC_SCOPE} openid offline_access",
        "state": "s-123",
        "nonce": "n-1",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
        "response_mode": "query",
    }
    params.update(overrides)
    params = {k: v for k, v in params.items() if v is not None}
    return f"{sim.authority_host}/organizations/oauth2/v2.0/authorize?{urlencode(params)}"


def test_a_wrong_redirect_uri_gets_an_error_page_never_a_redirect(sim):
    response = requests.get(
        _authorize_url(sim, redirect_uri="http://127.0.0.1:8000/consent/callback/"),
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "AADSTS50011" in response.text


def test_the_plain_pkce_method_and_a_missing_challenge_are_refused_on_the_redirect(sim):
    for overrides in (
        {"code_challenge_method": "plain"},
        {"code_challenge": None, "code_challenge_method": None},
    ):
        response = requests.get(_authorize_url(sim, **overrides), allow_redirects=False, timeout=10)
        assert response.status_code == 302
        location = urlparse(response.headers["Location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
        params = parse_qs(location.query)
        assert params["error"] == ["invalid_request"]
        assert params["state"] == ["s-123"]


def test_cancel_returns_access_denied_with_the_state(sim):
    result = sign_in(_authorize_url(sim), user=admin(sim).upn, action="cancel")
    assert result.params["error"] == "access_denied"
    assert result.params["state"] == "s-123"
    assert result.params["error_description"].startswith("AADSTS65004")
    assert "code" not in result.params


def test_prompt_none_answers_login_required(sim):
    response = requests.get(_authorize_url(sim, prompt="none"), allow_redirects=False, timeout=10)
    assert parse_qs(urlparse(response.headers["Location"]).query)["error"] == ["login_required"]


# ----- code redemption errors -----
def _code(sim, verifier="v" * 50):
    challenge = jwt.utils.base64url_encode(hashlib.sha256(verifier.encode()).digest()).decode()
    result = sign_in(_authorize_url(sim, code_challenge=challenge), user=admin(sim).upn)
    return result.params["code"], verifier


def _redeem_code(sim, code, verifier, redirect_uri=REDIRECT_URI):
    return token_request(
        sim,
        "organizations",
        grant_type="authorization_code",
        client_id=sim.env["CPV_CLIENT_ID"],
        client_secret=sim.env["CPV_CLIENT_SECRET"],
        code=code,
        code_verifier=verifier,
        redirect_uri=redirect_uri,
        scope=f"{PC_SCOPE} openid offline_access",
    )


def test_a_code_is_single_use(sim):
    code, verifier = _code(sim)
    assert _redeem_code(sim, code, verifier).status_code == 200
    assert_entra_error(_redeem_code(sim, code, verifier), 54005, "invalid_grant")


def test_a_wrong_pkce_verifier_is_refused(sim):
    code, _ = _code(sim)
    assert_entra_error(_redeem_code(sim, code, "w" * 50), 501481, "invalid_grant")


def test_a_different_redirect_uri_at_the_token_endpoint_is_refused(sim):
    code, verifier = _code(sim)
    assert_entra_error(_redeem_code(sim, code, verifier, "http://127.0.0.1:8000/other"), 500112, "invalid_grant")


def test_a_code_expires_after_ten_minutes(sim):
    code, verifier = _code(sim)
    sim.control.advance_clock(601)
    assert_entra_error(_redeem_code(sim, code, verifier), 70008, "invalid_grant")


def test_msal_rejects_a_state_that_does_not_match(sim):
    app = cpv_app(sim)
    flow = app.initiate_auth_code_flow([PC_SCOPE], redirect_uri=REDIRECT_URI, response_mode="form_post")
    result = sign_in(flow["auth_uri"], user=admin(sim).upn)
    with pytest.raises(ValueError):
        app.acquire_token_by_auth_code_flow(flow, {**result.params, "state": "forged"})

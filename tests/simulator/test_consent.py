"""Consent as the v2.0 endpoint grants it: per tenant and app, `.default` for the registration's whole list,
explicit scopes one by one, administrators only for admin-restricted permissions; and `scp` is what was granted.
See simulator/FIDELITY.md, "Consent"."""

from __future__ import annotations

import html
import re

import jwt
import pytest
import requests

from simulator.testing import ControlError
from tests.simulator.helpers import (
    GRAPH_DEFAULT,
    PC_DEFAULT,
    PC_SCOPE,
    REDIRECT_URI,
    STATIC_CONSENT,
    admin,
    admin_consents,
    assert_entra_error,
    consent,
    cpv_app,
    form_fields,
    redeem,
    sign_in,
    user_named,
)

PC = "https://api.partnercenter.microsoft.com"
GRAPH = "https://graph.microsoft.com"
VAULT = "https://vault.azure.net"
REGISTERED_GRAPH = {
    "User.Read",
    "RoleManagement.Read.Directory",
    "DelegatedAdminRelationship.Read.All",
    "GroupMember.Read.All",
}


def _scp(token: str) -> set[str]:
    return set(jwt.decode(token, options={"verify_signature": False})["scp"].split())


def _graph_scp(sim, refresh_token: str) -> set[str]:
    response = redeem(sim, refresh_token, scope=GRAPH_DEFAULT)
    assert response.status_code == 200, response.text
    return _scp(response.json()["access_token"])


def _permissions_on_the_page(sim, scopes: list[str], partner: int = 0, **flow: str) -> list[str]:
    app = cpv_app(sim, sim.world.partners[partner].tenant_id)
    started = app.initiate_auth_code_flow(scopes, redirect_uri=REDIRECT_URI, response_mode="form_post", **flow)
    page = requests.get(started["auth_uri"], timeout=10).text
    listed = re.search(r'<ul id="permissions">(.*?)</ul>', page)
    assert listed is not None, page
    return [html.unescape(item) for item in re.findall(r"<li>(.*?)</li>", listed.group(1))]


def test_a_default_first_consent_grants_the_registration_for_every_api(sim):
    tenant = sim.world.partners[0].tenant_id
    client_id = sim.env["CPV_CLIENT_ID"]
    shown = _permissions_on_the_page(sim, [PC_DEFAULT])
    for permission in ("user_impersonation", *REGISTERED_GRAPH, "offline_access"):
        assert any(f"{permission})" in line for line in shown), (permission, shown)
    assert any("RoleManagement.Read.Directory" in line and "administrator" in line for line in shown)

    result = consent(sim, scopes=[PC_DEFAULT])
    assert "access_token" in result, result
    assert _scp(result["access_token"]) == {"user_impersonation"}
    assert result["scope"] == f"{PC}/user_impersonation"
    # the same refresh token, for Graph: every Graph permission of the registration, consented with the sign-in
    graph = cpv_app(sim, tenant).acquire_token_by_refresh_token(result["refresh_token"], [GRAPH_DEFAULT])
    assert REGISTERED_GRAPH <= _scp(graph["access_token"])
    assert "offline_access" not in _scp(graph["access_token"])
    assert REGISTERED_GRAPH <= set(graph["scope"].split())
    granted = sim.control.grants(tenant)[client_id]
    assert granted[PC] == ["user_impersonation"]
    assert set(granted[GRAPH]) == REGISTERED_GRAPH | {"openid", "profile", "offline_access"}
    # the grant is the tenant's: it is in the state the control surface shows, and nowhere else
    assert sim.control.grants(sim.world.partners[1].tenant_id) == {}


def test_a_dynamic_request_grants_only_what_it_asks(sim):
    result = consent(sim, scopes=[PC_SCOPE])
    assert _scp(result["access_token"]) == {"user_impersonation"}
    # Graph: only the OIDC scopes asked and the initial consent's User.Read; no role-reading permission
    graph_token = redeem(sim, result["refresh_token"], scope=GRAPH_DEFAULT).json()["access_token"]
    assert _scp(graph_token) == {"openid", "profile", "User.Read"}
    # with User.Read the memberships list, and the directory role comes back with limited information
    response = requests.get(
        f"{sim.graph_url}/v1.0/me/transitiveMemberOf", headers={"Authorization": f"Bearer {graph_token}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    role = response.json()["value"][0]
    assert role["@odata.type"] == "#microsoft.graph.directoryRole" and role["id"]
    assert role["roleTemplateId"] is None and role["displayName"] is None
    # a permission never consented: the token endpoint cannot ask, so the client must sign the user in again
    body = assert_entra_error(
        redeem(sim, result["refresh_token"], scope=f"{GRAPH}/RoleManagement.Read.Directory"), 65001, "invalid_grant"
    )
    assert body["suberror"] == "consent_required"


def test_default_adds_nothing_once_the_resource_has_a_grant_until_prompt_consent(sim):
    tenant = sim.world.partners[0].tenant_id
    consent(sim, scopes=[PC_SCOPE])
    # Graph already has a grant (User.Read...): `.default` shows no prompt and grants nothing more
    assert _permissions_on_the_page(sim, [GRAPH_DEFAULT]) == [
        "Sign you in (openid)",
        "View your basic profile (profile)",
        "Maintain access to data you have given it access to (offline_access)",
    ]
    again = consent(sim, scopes=[GRAPH_DEFAULT])
    assert _scp(again["access_token"]) == {"openid", "profile", "User.Read"}
    # prompt=consent asks for the registration's list again
    app = cpv_app(sim)
    flow = app.initiate_auth_code_flow(
        [GRAPH_DEFAULT], redirect_uri=REDIRECT_URI, response_mode="form_post", prompt="consent"
    )
    forced = app.acquire_token_by_auth_code_flow(flow, sign_in(flow["auth_uri"], user=admin(sim).upn).params)
    assert REGISTERED_GRAPH <= _scp(forced["access_token"])
    assert set(sim.control.grants(tenant)[sim.env["CPV_CLIENT_ID"]][PC]) == {"user_impersonation"}


def test_default_for_a_resource_without_a_grant_consents_the_whole_list(sim):
    """A grant on Graph does not stop `.default` for Partner Center, which has none: the prompt is for the
    registration's whole list, Graph's permissions included."""
    first = consent(sim, scopes=["User.Read"])["refresh_token"]
    assert _graph_scp(sim, first) == {"openid", "profile", "User.Read"}
    refresh = consent(sim, scopes=[PC_DEFAULT])["refresh_token"]
    assert REGISTERED_GRAPH <= _graph_scp(sim, refresh)


def test_consent_accumulates_across_sign_ins(sim):
    consent(sim, scopes=[PC_SCOPE])
    consent(sim, scopes=[f"{GRAPH}/RoleManagement.Read.Directory"])
    refresh = consent(sim, scopes=[PC_SCOPE])["refresh_token"]
    scp = _graph_scp(sim, refresh)
    assert {"User.Read", "RoleManagement.Read.Directory"} <= scp
    assert "DelegatedAdminRelationship.Read.All" not in scp


def test_only_an_administrator_consents_to_admin_restricted_permissions(sim):
    partner = sim.world.partners[0]
    agent = user_named(sim, "agent")  # Admin Agent, not Global Administrator
    app = cpv_app(sim, partner.tenant_id)
    flow = app.initiate_auth_code_flow([PC_DEFAULT], redirect_uri=REDIRECT_URI, response_mode="form_post")
    refused = sign_in(flow["auth_uri"], user=agent.upn)
    assert refused.response.status_code == 400
    page = refused.response.text
    assert "AADSTS90094" in page and "only an admin can grant" in page and "RoleManagement.Read.Directory" in page
    assert 'name="code"' not in page and "code" not in refused.params
    assert sim.control.grants(partner.tenant_id) == {}
    with pytest.raises(ControlError, match="AADSTS90094"):
        sim.control.issue_refresh_token(agent.upn, scope=f"{GRAPH}/DelegatedAdminRelationship.Read.All")
    # what a user may consent to alone stays open to them
    assert "access_token" in consent(sim, user=agent.upn, scopes=[PC_SCOPE])
    # Partner Center has a grant now, so the administrator's `.default` asks again only with prompt=consent; once
    # they consented for the organisation, `.default` asks nothing new of the others
    admin_consents(sim)
    assert "RoleManagement.Read.Directory" not in sim.control.grants(partner.tenant_id)[app.client_id][GRAPH]
    sim.control.issue_refresh_token(admin(sim).upn, scope=STATIC_CONSENT, prompt="consent")
    later = consent(sim, user=agent.upn, scopes=[PC_DEFAULT])
    assert REGISTERED_GRAPH <= _graph_scp(sim, later["refresh_token"])
    # but prompt=consent asks them to consent to all of it again, which only an administrator may
    with pytest.raises(ControlError, match="AADSTS90094"):
        sim.control.issue_refresh_token(agent.upn, scope=STATIC_CONSENT, prompt="consent")


def test_a_permission_outside_the_registration_may_be_asked_dynamically(sim):
    assert VAULT not in sim.control.world()["cpv_app"]["delegated_permissions"]
    refresh = admin_consents(sim, scope=f"{VAULT}/user_impersonation openid offline_access")
    response = redeem(sim, refresh, scope=f"{VAULT}/user_impersonation")
    assert response.status_code == 200, response.text
    assert _scp(response.json()["access_token"]) == {"user_impersonation"}
    # `.default` for a resource the registration does not list and nothing granted: Entra refuses
    app = cpv_app(sim, sim.world.partners[1].tenant_id)
    flow = app.initiate_auth_code_flow([f"{VAULT}/.default"], redirect_uri=REDIRECT_URI, response_mode="form_post")
    refused = sign_in(flow["auth_uri"], user=admin(sim, 1).upn)
    assert refused.response.status_code == 400 and "AADSTS650057" in refused.response.text


def test_static_and_dynamic_scopes_do_not_mix(sim):
    app = cpv_app(sim)
    flow = app.initiate_auth_code_flow(
        [GRAPH_DEFAULT, "Mail.Read"], redirect_uri=REDIRECT_URI, response_mode="form_post"
    )
    answer = form_fields(requests.get(flow["auth_uri"], timeout=10).text)
    assert answer["error"] == "invalid_scope" and answer["error_description"].startswith("AADSTS70011")
    assert answer["state"] == flow["state"]


def test_a_resource_without_consent_answers_65001(sim):
    refresh = sim.control.issue_refresh_token(admin(sim).upn)  # Partner Center's user_impersonation only
    body = assert_entra_error(redeem(sim, refresh, scope=f"{VAULT}/.default"), 65001, "invalid_grant")
    assert body["suberror"] == "consent_required"
    assert redeem(sim, refresh, scope=PC_DEFAULT).status_code == 200


def test_the_grants_are_per_tenant_and_go_with_revoke_grants(sim):
    client_id = sim.env["CPV_CLIENT_ID"]
    first, second = sim.world.partners[0].tenant_id, sim.world.partners[1].tenant_id
    admin_consents(sim, 0)
    admin_consents(sim, 1, scope=f"{PC_SCOPE} openid")
    everything = sim.control.grants()
    assert set(everything) == {f"{first}/{client_id}", f"{second}/{client_id}"}
    assert "RoleManagement.Read.Directory" not in everything[f"{second}/{client_id}"][GRAPH]
    assert sim.control.revoke_grants(first) == 1
    assert sim.control.grants(first) == {}
    refresh = sim.control.issue_refresh_token(admin(sim).upn, scope=PC_SCOPE)
    assert _graph_scp(sim, refresh) == {"User.Read"}

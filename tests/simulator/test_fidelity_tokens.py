"""The tokens the simulated Entra ID issues, claim by claim, against Microsoft's claims references.

id_tokens are v2.0 (no `amr`; `wids` only when the app registration's groupMembershipClaims asks for directory
roles); access tokens for Partner Center, Graph and Key Vault are v1.0 (`sts.windows.net` issuer, `appid`,
`amr`, `upn`; `wids` in Graph's, in the others only with `access_token_wids`). See simulator/FIDELITY.md.
"""

from __future__ import annotations

import json

import jwt
import pytest
import requests

from simulator.testing import ControlError
from simulator.world import World
from tests.simulator.helpers import (
    GRAPH_DEFAULT,
    PC_DEFAULT,
    STATIC_CONSENT,
    admin,
    admin_consents,
    consent,
    redeem,
    token_request,
    user_named,
)

GLOBAL_ADMIN = "62e90394-69f5-4237-9190-012177145e10"
MEMBER = "b79fbf4d-3ef9-4689-8143-76b194e85509"
PC = "https://api.partnercenter.microsoft.com"
GRAPH = "https://graph.microsoft.com"
VAULT = "https://vault.azure.net"
V2_ONLY = {"azp", "azpacr", "preferred_username"}


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _tokens(
    sim,
    login: str = "admin",
    tenant: str = "organizations",
    scope: str = PC_DEFAULT,
    consented: str | None = None,
    **extra,
) -> dict:
    """Tokens for `scope`, redeemed from a refresh token of a sign-in that asked `consented` (the control's
    default: Partner Center's user_impersonation and the OIDC scopes)."""
    refresh = sim.control.issue_refresh_token(user_named(sim, login).upn, scope=consented)
    response = redeem(sim, refresh, tenant, scope, **extra)
    assert response.status_code == 200, response.text
    return response.json()


# ----- id_tokens (v2.0) -----
def test_id_tokens_carry_no_amr(sim):
    by_code = consent(sim)  # authorization code, msal
    assert "amr" not in by_code["id_token_claims"]
    by_refresh = _tokens(sim)
    header = jwt.get_unverified_header(by_refresh["id_token"])
    assert header["typ"] == "JWT" and header["alg"] == "RS256" and header["kid"]
    id_claims = _claims(by_refresh["id_token"])
    assert id_claims["ver"] == "2.0"
    assert id_claims["iss"] == f"{sim.authority_host}/{id_claims['tid']}/v2.0"
    assert id_claims["aud"] == sim.env["CPV_CLIENT_ID"]
    assert id_claims["exp"] - id_claims["iat"] == 3600 and id_claims["nbf"] == id_claims["iat"]
    assert id_claims["uti"] and id_claims["sub"]
    assert "amr" not in id_claims
    assert {"c_hash", "at_hash", "azp", "appid", "scp"}.isdisjoint(id_claims)
    # the user's MFA is still there, in the access token
    assert _claims(by_refresh["access_token"])["amr"] == ["pwd", "mfa"]


@pytest.mark.parametrize("claims_setting", [None, "None", "SecurityGroup", "ApplicationGroup"])
def test_no_wids_in_id_tokens_unless_the_app_asks_for_directory_roles(sim, claims_setting):
    sim.control.update_app(sim.env["CPV_CLIENT_ID"], group_membership_claims=claims_setting)
    assert "wids" not in consent(sim)["id_token_claims"]
    assert "wids" not in _claims(_tokens(sim)["id_token"])


@pytest.mark.parametrize("claims_setting", ["DirectoryRole", "All"])
def test_wids_in_id_tokens_with_directory_roles_asked(sim, claims_setting):
    sim.control.update_app(sim.env["CPV_CLIENT_ID"], group_membership_claims=claims_setting)
    assert consent(sim)["id_token_claims"]["wids"] == [GLOBAL_ADMIN, MEMBER]
    expected = {
        "admin": [GLOBAL_ADMIN, MEMBER],
        "globaladmin": [GLOBAL_ADMIN, MEMBER],
        "agent": [MEMBER],
        "nomfa": [GLOBAL_ADMIN, MEMBER],
        "user": [MEMBER],
    }
    for login, wids in expected.items():
        assert _claims(_tokens(sim, login)["id_token"])["wids"] == wids, login


def test_id_token_wids_only_in_the_home_tenant(sim):
    sim.control.update_app(sim.env["CPV_CLIENT_ID"], group_membership_claims="All")
    customer = sim.world.partners[0].customers[0].tenant_id
    sim.control.add_consent(customer)
    id_claims = _claims(_tokens(sim, tenant=customer, scope=GRAPH_DEFAULT)["id_token"])
    assert id_claims["tid"] == customer
    assert "wids" not in id_claims
    assert id_claims["idp"] == f"https://sts.windows.net/{sim.world.partners[0].tenant_id}/"


def test_the_id_token_reuse_follows_the_app_registration(sim):
    refresh = sim.control.issue_refresh_token(admin(sim).upn)
    first = redeem(sim, refresh).json()["id_token"]
    assert redeem(sim, refresh).json()["id_token"] == first  # reused within a minute
    sim.control.update_app(sim.env["CPV_CLIENT_ID"], group_membership_claims="DirectoryRole")
    second = redeem(sim, refresh).json()["id_token"]
    assert second != first
    assert _claims(second)["wids"] == [GLOBAL_ADMIN, MEMBER]
    sim.control.update_user(admin(sim).oid, global_admin=False)
    assert _claims(redeem(sim, refresh).json()["id_token"])["wids"] == [MEMBER]


def test_name_preferred_username_and_oid_need_the_profile_scope(sim):
    refresh = sim.control.issue_refresh_token(admin(sim).upn)
    response = token_request(
        sim,
        "organizations",
        grant_type="refresh_token",
        client_id=sim.env["CPV_CLIENT_ID"],
        client_secret=sim.env["CPV_CLIENT_SECRET"],
        refresh_token=refresh,
        scope=f"{PC_DEFAULT} openid",
    )
    id_claims = _claims(response.json()["id_token"])
    assert {"name", "preferred_username", "oid"}.isdisjoint(id_claims)
    assert {"sub", "tid", "aud", "iss"} <= set(id_claims)
    with_profile = _claims(_tokens(sim)["id_token"])
    assert with_profile["oid"] == admin(sim).oid
    assert with_profile["preferred_username"] == admin(sim).upn


# ----- access tokens (v1.0) -----
def test_partner_center_access_token_has_the_v1_shape(sim):
    user = admin(sim)
    partner = sim.world.partners[0]
    token = _tokens(sim)["access_token"]
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256" and header["kid"] and header["x5t"] == header["kid"]
    claims = _claims(token)
    assert claims["ver"] == "1.0"
    assert claims["iss"] == f"https://sts.windows.net/{partner.tenant_id}/"
    assert claims["aud"] == PC
    assert claims["tid"] == partner.tenant_id
    assert claims["amr"] == ["pwd", "mfa"]
    assert claims["acr"] == "1"
    assert claims["appid"] == sim.env["CPV_CLIENT_ID"]
    assert claims["appidacr"] == "1"
    assert claims["scp"] == "user_impersonation"
    assert claims["oid"] == user.oid
    assert claims["upn"] == claims["unique_name"] == user.upn
    assert claims["name"] == user.display_name
    assert "wids" not in claims  # not in Partner Center's tokens unless `access_token_wids` is on
    assert claims["sub"] and claims["uti"] and claims["exp"] > claims["iat"] == claims["nbf"]
    assert "idtyp" not in claims and "idp" not in claims
    assert not V2_ONLY & set(claims)
    assert claims["xms_sim"] == "SIMCANARY"


def test_access_token_amr_and_wids_follow_the_user(sim):
    assert _claims(_tokens(sim, "nomfa")["access_token"])["amr"] == ["pwd"]
    assert _claims(_tokens(sim, "admin", scope=GRAPH_DEFAULT)["access_token"])["wids"] == [GLOBAL_ADMIN, MEMBER]
    assert _claims(_tokens(sim, "agent", scope=GRAPH_DEFAULT)["access_token"])["wids"] == [MEMBER]
    assert _claims(_tokens(sim, "user", scope=GRAPH_DEFAULT)["access_token"])["wids"] == [MEMBER]


def test_graph_and_vault_access_tokens_are_v1_too(sim):
    graph = _claims(_tokens(sim, scope=GRAPH_DEFAULT)["access_token"])
    assert graph["ver"] == "1.0" and graph["aud"] == GRAPH and graph["idtyp"] == "user"
    # what the sign-in consented on Graph: the OIDC scopes and the initial consent's User.Read
    assert graph["scp"] == "openid profile User.Read"
    assert graph["iss"] == f"https://sts.windows.net/{graph['tid']}/"
    vault_scope = f"{VAULT}/user_impersonation"
    vault = _claims(_tokens(sim, scope=vault_scope, consented=f"{vault_scope} openid profile")["access_token"])
    assert vault["ver"] == "1.0" and vault["aud"] == VAULT and vault["scp"] == "user_impersonation"
    assert not V2_ONLY & (set(graph) | set(vault))


def test_partner_center_tokens_carry_wids_only_with_the_switch(sim):
    vault_scope = f"{VAULT}/user_impersonation"
    assert sim.control.settings()["access_token_wids"] is False
    assert "wids" not in _claims(_tokens(sim, scope=PC_DEFAULT)["access_token"])
    assert "wids" not in _claims(_tokens(sim, scope=vault_scope, consented=vault_scope)["access_token"])
    assert _claims(_tokens(sim, scope=GRAPH_DEFAULT)["access_token"])["wids"] == [GLOBAL_ADMIN, MEMBER]
    sim.control.set_settings(access_token_wids=True)
    for scope in (PC_DEFAULT, vault_scope):
        claims = _claims(_tokens(sim, scope=scope, consented=scope)["access_token"])
        assert claims["wids"] == [GLOBAL_ADMIN, MEMBER]
        assert claims["amr"] == ["pwd", "mfa"]
    assert _claims(_tokens(sim, "agent", scope=PC_DEFAULT)["access_token"])["wids"] == [MEMBER]


def test_a_partner_user_in_a_customer_tenant_gets_idp_and_no_wids(sim):
    partner = sim.world.partners[0]
    customer = partner.customers[0].tenant_id
    sim.control.add_consent(customer)
    claims = _claims(_tokens(sim, tenant=customer, scope=GRAPH_DEFAULT)["access_token"])
    assert claims["tid"] == customer
    assert claims["iss"] == f"https://sts.windows.net/{customer}/"
    assert claims["idp"] == f"https://sts.windows.net/{partner.tenant_id}/"
    assert "wids" not in claims


def test_app_only_tokens_have_the_v1_shape_without_user_claims(sim):
    env = sim.env
    response = token_request(
        sim,
        env["AZURE_TENANT_ID"],
        grant_type="client_credentials",
        client_id=env["AZURE_CLIENT_ID"],
        client_secret=env["AZURE_CLIENT_SECRET"],
        scope=f"{VAULT}/.default",
    )
    assert response.status_code == 200, response.text
    claims = _claims(response.json()["access_token"])
    assert claims["ver"] == "1.0"
    assert claims["iss"] == f"https://sts.windows.net/{env['AZURE_TENANT_ID']}/"
    assert claims["aud"] == VAULT
    assert claims["appid"] == env["AZURE_CLIENT_ID"] and claims["appidacr"] == "1"
    # Key Vault's registration is Microsoft's: GUESS that it configures the idtyp optional claim
    assert claims["idtyp"] == "app"
    assert claims["oid"] == claims["sub"]
    assert {"scp", "amr", "acr", "upn", "unique_name", "name", "wids", "idp"}.isdisjoint(claims)
    assert not V2_ONLY & set(claims)


def test_resources_refuse_a_token_with_another_issuer(simulator):
    """Partner Center, Graph and Key Vault check the v1.0 issuer (a v2.0 one is refused)."""
    if simulator._server is None:
        pytest.skip("needs the in-process simulator's signer")
    simulator.control.reset()
    signer = simulator._server.sim.signer
    partner = simulator.world.partners[0]
    claims = _claims(_tokens(simulator)["access_token"])
    claims["iss"] = f"{simulator.authority_host}/{partner.tenant_id}/v2.0"
    forged = signer.sign(claims)
    headers = {"Authorization": f"Bearer {forged}"}
    pc = requests.get(f"{simulator.partner_center_url}/v1/customers?size=1", headers=headers, timeout=10)
    assert pc.status_code == 401 and "issuer" in pc.json()["description"]
    claims["aud"] = GRAPH
    graph = requests.get(
        f"{simulator.graph_url}/v1.0/me", headers={"Authorization": f"Bearer {signer.sign(claims)}"}, timeout=10
    )
    assert graph.status_code == 401 and "issuer" in graph.json()["error"]["message"]


# ----- the app registration -----
def test_update_app_changes_the_registration_until_reset(sim):
    client_id = sim.env["CPV_CLIENT_ID"]
    changed = sim.control.update_app(
        client_id,
        group_membership_claims="All",
        delegated_permissions={PC: ["user_impersonation"], GRAPH: ["User.Read"]},
    )
    assert changed == {
        "client_id": client_id,
        "group_membership_claims": "All",
        "delegated_permissions": {PC: ["user_impersonation"], GRAPH: ["User.Read"]},
        "access_token_optional_claims": [],
    }
    assert sim.control.world()["cpv_app"]["group_membership_claims"] == "All"
    # a `.default` consent from now on grants the registration's new list
    graph = _claims(_tokens(sim, scope=GRAPH_DEFAULT, consented=STATIC_CONSENT)["access_token"])
    assert graph["scp"] == "openid profile User.Read"
    # left out, group_membership_claims is not changed
    assert (
        sim.control.update_app(client_id, delegated_permissions={PC: ["user_impersonation"]})["group_membership_claims"]
        == "All"
    )
    sim.control.reset()
    app = sim.control.world()["cpv_app"]
    assert app["group_membership_claims"] is None
    assert app["delegated_permissions"] == {
        PC: ["user_impersonation"],
        GRAPH: [
            "User.Read",
            "RoleManagement.Read.Directory",
            "DelegatedAdminRelationship.Read.All",
            "GroupMember.Read.All",
        ],
    }


def test_taking_a_permission_out_of_the_registration_keeps_what_was_granted(sim):
    """The registration says what a `.default` consent asks; a tenant's grant stays what it consented to."""
    client_id = sim.env["CPV_CLIENT_ID"]
    first = sim.world.partners[0]
    before = admin_consents(sim, 0)
    sim.control.update_app(client_id, delegated_permissions={PC: ["user_impersonation"], GRAPH: ["User.Read"]})
    after = admin_consents(sim, 1)
    assert (
        "RoleManagement.Read.Directory"
        in _claims(redeem(sim, before, scope=GRAPH_DEFAULT).json()["access_token"])["scp"].split()
    )
    assert _claims(redeem(sim, after, scope=GRAPH_DEFAULT).json()["access_token"])["scp"] == "openid profile User.Read"
    assert "RoleManagement.Read.Directory" in sim.control.grants(first.tenant_id)[client_id][GRAPH]


def test_update_app_refuses_what_entra_would_not_store(sim):
    client_id = sim.env["CPV_CLIENT_ID"]
    with pytest.raises(ControlError, match="group_membership_claims"):
        sim.control.update_app(client_id, group_membership_claims="Everything")
    with pytest.raises(ControlError, match="delegated_permissions"):
        sim.control.update_app(client_id, delegated_permissions={PC: "user_impersonation"})  # type: ignore[dict-item]
    with pytest.raises(ControlError, match="access_token_optional_claims"):
        sim.control.update_app(client_id, access_token_optional_claims="idtyp")  # type: ignore[arg-type]
    with pytest.raises(ControlError, match="404"):
        sim.control.update_app("00000000-0000-0000-0000-000000000000", group_membership_claims="All")
    response = requests.patch(
        f"{sim.control_url}/apps/{client_id}", json={"redirect_uris": []}, verify=str(sim.ca_bundle), timeout=10
    )
    assert response.status_code == 400


def test_group_membership_claims_round_trips_in_the_world_json():
    world = World.generate(seed=4)
    assert world.cpv_app.group_membership_claims is None
    world.cpv_app.group_membership_claims = "DirectoryRole"
    copy = World.from_json(world.to_json())
    assert copy.cpv_app.group_membership_claims == "DirectoryRole"
    assert copy.cpv_app.wants_directory_roles and not copy.sandbox_app.wants_directory_roles
    # a world file written before the field existed still loads
    data = json.loads(world.to_json())
    del data["cpv_app"]["group_membership_claims"]
    assert World.from_dict(data).cpv_app.group_membership_claims is None


def test_partner_center_tokens_can_be_opaque_and_partner_center_still_takes_them(sim):
    """access-tokens.md: Microsoft's own APIs' tokens "might not always be a JWT that can be decoded" by a client."""
    assert sim.control.settings()["opaque_access_tokens"] is False
    sim.control.set_settings(opaque_access_tokens=True)
    pc_token = _tokens(sim, scope=PC_DEFAULT)["access_token"]
    with pytest.raises(jwt.DecodeError):
        jwt.decode(pc_token, options={"verify_signature": False})
    # Only Partner Center's: a Graph token stays a JWT.
    assert _claims(_tokens(sim, scope=GRAPH_DEFAULT, consented=STATIC_CONSENT)["access_token"])["aud"] == GRAPH
    profile = requests.get(
        f"{sim.env['CPV_PARTNER_CENTER_URL']}/v1/profiles/organization",
        headers={"Authorization": f"Bearer {pc_token}", "Accept": "application/json"},
        timeout=10,
    )
    assert profile.status_code == 200
    assert sim.control.find_leaks(pc_token) != []

"""Every row of REFERENCE.md's refresh-token error table answers with Entra's error shape."""

from __future__ import annotations

import datetime as dt

import msal
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.simulator.helpers import (
    GRAPH_DEFAULT,
    PC_DEFAULT,
    PC_SCOPE,
    admin,
    assert_entra_error,
    cpv_app,
    redeem,
    token_request,
    user_named,
)

ARM_APP = "797f4846-ba00-4fd7-ba43-dac1f8f63013"
# (code, error, suberror or None) for the rows made to happen by injection
INJECTED = [
    (700082, "invalid_grant", "bad_token"),
    (70008, "invalid_grant", "bad_token"),
    (70043, "invalid_grant", "bad_token"),
    (50173, "invalid_grant", "bad_token"),
    (50132, "invalid_grant", "bad_token"),
    (50133, "invalid_grant", "bad_token"),
    (50076, "interaction_required", "basic_action"),
    (50078, "interaction_required", "basic_action"),
    (50079, "interaction_required", "basic_action"),
    (53003, "invalid_grant", "message_only"),
    (65001, "invalid_grant", "consent_required"),
    (90099, "invalid_grant", None),
    (700016, "unauthorized_client", None),
    (7000215, "invalid_client", None),
    (7000222, "invalid_client", None),
    (700027, "invalid_client", None),
    (70021, "invalid_request", None),
    (50020, "invalid_grant", None),
    (90072, "invalid_grant", None),
]


@pytest.mark.parametrize(("code", "error", "suberror"), INJECTED)
def test_an_injected_entra_error_has_entras_shape(sim, code, error, suberror):
    user = admin(sim)
    refresh = sim.control.issue_refresh_token(user.upn)
    sim.control.inject_entra_error(code, user=user.oid, grant_type="refresh_token")
    status = 401 if error == "invalid_client" else 400
    body = assert_entra_error(redeem(sim, refresh), code, error, status=status)
    assert body.get("suberror") == suberror
    # once only: the next redemption succeeds
    assert redeem(sim, refresh).status_code == 200
    assert sim.control.log(service="entra", error_code=code)


def test_msal_returns_the_error_as_a_dict(sim):
    refresh = sim.control.issue_refresh_token(admin(sim).upn)
    sim.control.inject_entra_error(50076)
    result = cpv_app(sim).acquire_token_by_refresh_token(refresh, [PC_DEFAULT])
    assert result["error"] == "interaction_required"
    assert result["error_codes"] == [50076]
    assert result["suberror"] == "basic_action"
    assert result["correlation_id"]


def test_injected_errors_can_target_a_tenant_and_repeat(sim):
    partner_a, partner_b = sim.world.partners[0], sim.world.partners[1]
    refresh_a = sim.control.issue_refresh_token(partner_a.users[0].upn)
    refresh_b = sim.control.issue_refresh_token(partner_b.users[0].upn)
    sim.control.inject_entra_error(50078, tenant=partner_a.tenant_id, times=2)
    assert redeem(sim, refresh_b, partner_b.tenant_id).status_code == 200
    assert redeem(sim, refresh_a, partner_a.tenant_id).status_code == 400
    assert redeem(sim, refresh_a, partner_a.tenant_id).status_code == 400
    assert redeem(sim, refresh_a, partner_a.tenant_id).status_code == 200


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (429, 50196, "temporarily_unavailable"),
        (503, 90033, "temporarily_unavailable"),
        (500, 50000, "server_error"),
    ],
)
def test_throttling_and_server_errors(sim, status, code, error):
    refresh = sim.control.issue_refresh_token(admin(sim).upn)
    sim.control.inject_entra_error(code, retry_after=7)
    response = redeem(sim, refresh)
    assert_entra_error(response, code, error, status=status)
    assert response.headers["Retry-After"] == "7"


def test_a_plain_fault_on_the_token_endpoint(sim):
    refresh = sim.control.issue_refresh_token(admin(sim).upn)
    sim.control.inject_fault("entra", status=503, path="/oauth2/v2.0/token", headers={"Retry-After": "3"}, times=2)
    assert redeem(sim, refresh).status_code == 503
    assert redeem(sim, refresh).headers["Retry-After"] == "3"
    assert redeem(sim, refresh).status_code == 200
    entries = sim.control.log(service="entra", path="token")
    assert [e["status"] for e in entries] == [503, 503, 200]
    assert entries[0]["response_headers"]["Retry-After"] == "3"


# ----- the same rows, happening for real -----
def test_inactivity_expiry_after_91_days(sim):
    refresh = sim.control.issue_refresh_token(admin(sim).upn)
    renewed = redeem(sim, refresh).json()["refresh_token"]
    sim.control.advance_days(89)
    renewed_later = redeem(sim, renewed).json()["refresh_token"]
    sim.control.advance_days(2)  # 91 days after the first two, 2 days after the last one
    body = assert_entra_error(redeem(sim, refresh), 700082, "invalid_grant")
    assert body["suberror"] == "bad_token"
    assert_entra_error(redeem(sim, renewed), 700082, "invalid_grant")
    assert redeem(sim, renewed_later).status_code == 200


def test_an_admin_reset_revokes_earlier_refresh_tokens(sim):
    user = admin(sim)
    refresh = sim.control.issue_refresh_token(user.upn)
    sim.control.revoke_user(user.oid)
    assert_entra_error(redeem(sim, refresh), 50173, "invalid_grant")
    assert redeem(sim, sim.control.issue_refresh_token(user.upn)).status_code == 200


def test_conditional_access_requiring_mfa_and_blocking(sim):
    partner = sim.world.partners[0]
    no_mfa = sim.control.issue_refresh_token(user_named(sim, "nomfa").upn)
    with_mfa = sim.control.issue_refresh_token(admin(sim).upn)
    sim.control.set_conditional_access(partner.tenant_id, "mfa_required")
    assert_entra_error(redeem(sim, no_mfa), 50076, "interaction_required")
    assert redeem(sim, with_mfa).status_code == 200
    sim.control.set_conditional_access(partner.tenant_id, "block")
    assert_entra_error(redeem(sim, with_mfa), 53003, "invalid_grant")


def test_customer_tenant_needs_an_application_consent(sim):
    partner = sim.world.partners[0]
    customer = partner.customers[0].tenant_id
    refresh = sim.control.issue_refresh_token(admin(sim).upn)
    # no ApplicationConsent there: "execute the appropriate Partner Center API to authorize the application"
    body = assert_entra_error(redeem(sim, refresh, customer, GRAPH_DEFAULT), 90099, "invalid_grant")
    assert "suberror" not in body and "Partner Center API" in body["error_description"]
    assert sim.env["CPV_CLIENT_ID"] in body["error_description"] and customer in body["error_description"]
    # a consent there that grants nothing on Graph: the app is authorized, the resource is not consented
    sim.control.add_consent(customer, grants=[{"enterpriseApplicationId": ARM_APP, "scope": "user_impersonation"}])
    body = assert_entra_error(redeem(sim, refresh, customer, GRAPH_DEFAULT), 65001, "invalid_grant")
    assert body["suberror"] == "consent_required"
    sim.control.add_consent(customer)
    response = redeem(sim, refresh, customer, GRAPH_DEFAULT)
    assert response.status_code == 200
    claims = msal.oauth2cli.oidc.decode_part(response.json()["access_token"].split(".")[1])
    assert '"tid":"' + customer in claims
    assert "Directory.Read.All" in claims


def test_partner_user_without_a_gdap_role_has_no_access_to_customers(sim):
    """globaladmin@ is in no group that the customer's relationship assigns a role to."""
    customer = sim.world.partners[0].customers[0].tenant_id
    sim.control.add_consent(customer)
    refresh = sim.control.issue_refresh_token(user_named(sim, "globaladmin").upn)
    assert_entra_error(redeem(sim, refresh, customer, GRAPH_DEFAULT), 50020, "invalid_grant")


def test_another_partners_customer_is_neither_home_nor_customer(sim):
    other_customer = sim.world.partners[1].customers[0].tenant_id
    refresh = sim.control.issue_refresh_token(admin(sim).upn)
    assert_entra_error(redeem(sim, refresh, other_customer, GRAPH_DEFAULT), 90072, "invalid_grant")


def test_unknown_client_id(sim):
    refresh = sim.control.issue_refresh_token(admin(sim).upn)
    response = redeem(sim, refresh, client_id="00000000-0000-0000-0000-000000000001")
    assert_entra_error(response, 700016, "unauthorized_client")


def test_wrong_and_expired_client_secrets(sim):
    refresh = sim.control.issue_refresh_token(admin(sim).upn)
    assert_entra_error(redeem(sim, refresh, client_secret="wrong"), 7000215, "invalid_client", status=401)
    sim.control.advance_days(365 * 20)  # the world's secrets expire on 2045-01-01
    fresh = sim.control.issue_refresh_token(admin(sim).upn)
    assert_entra_error(redeem(sim, fresh), 7000222, "invalid_client", status=401)


def test_an_unregistered_certificate_is_refused(sim):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rogue")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    thumbprint = cert.fingerprint(hashes.SHA1()).hex()  # noqa: S303 - the x5t thumbprint is SHA-1
    refresh = sim.control.issue_refresh_token(admin(sim).upn)
    result = cpv_app(sim, credential={"private_key": pem, "thumbprint": thumbprint}).acquire_token_by_refresh_token(
        refresh, [PC_DEFAULT]
    )
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [700027]


def test_refresh_token_of_another_client_and_garbage(sim):
    refresh = sim.control.issue_refresh_token(admin(sim).upn, client_id=sim.env["CPV_SANDBOX_CLIENT_ID"])
    assert_entra_error(redeem(sim, refresh), 70000, "invalid_grant")
    assert_entra_error(redeem(sim, "not-a-token"), 9002313, "invalid_grant")


def test_client_credentials_for_the_vault_and_its_errors(sim):
    env = sim.env
    ok = token_request(
        sim,
        env["AZURE_TENANT_ID"],
        grant_type="client_credentials",
        client_id=env["AZURE_CLIENT_ID"],
        client_secret=env["AZURE_CLIENT_SECRET"],
        scope="https://vault.azure.net/.default",
    )
    assert ok.status_code == 200 and "refresh_token" not in ok.json()
    wrong_scope = token_request(
        sim,
        env["AZURE_TENANT_ID"],
        grant_type="client_credentials",
        client_id=env["AZURE_CLIENT_ID"],
        client_secret=env["AZURE_CLIENT_SECRET"],
        scope="https://vault.azure.net/user_impersonation",
    )
    assert_entra_error(wrong_scope, 1002012, "invalid_scope")
    common = token_request(
        sim,
        "common",
        grant_type="client_credentials",
        client_id=env["AZURE_CLIENT_ID"],
        client_secret=env["AZURE_CLIENT_SECRET"],
        scope="https://vault.azure.net/.default",
    )
    assert_entra_error(common, 50059, "invalid_request")


def test_one_resource_per_token_request(sim):
    refresh = sim.control.issue_refresh_token(admin(sim).upn)
    response = redeem(sim, refresh, scope=f"{PC_DEFAULT} {GRAPH_DEFAULT}")
    body = assert_entra_error(response, 700022, "invalid_scope")
    assert "more than one resource" in body["error_description"]
    # msal too: the refresh token is never redeemed for two resources at once
    result = cpv_app(sim).acquire_token_by_refresh_token(refresh, [PC_SCOPE, "https://graph.microsoft.com/User.Read"])
    assert result["error"] == "invalid_scope" and result["error_codes"] == [700022]


def test_client_secret_by_http_basic_authentication(sim):
    refresh = sim.control.issue_refresh_token(admin(sim).upn)
    response = requests.post(
        f"{sim.authority_host}/organizations/oauth2/v2.0/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh, "scope": PC_DEFAULT},
        auth=(sim.env["CPV_CLIENT_ID"], sim.env["CPV_CLIENT_SECRET"]),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    wrong = requests.post(
        f"{sim.authority_host}/organizations/oauth2/v2.0/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh, "scope": PC_DEFAULT},
        auth=(sim.env["CPV_CLIENT_ID"], "nope"),
        timeout=10,
    )
    assert_entra_error(wrong, 7000215, "invalid_client", status=401)

"""microsoft/identity.py against the simulator with the real msal client: sign-in, id_token checks,
refresh-token redemption, and every error class of REFERENCE.md's table."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from microsoft import identity
from tests.simulated import partner_user, sign_in, sim_app, sim_cloud

PC_SCOPE = "https://api.partnercenter.microsoft.com/user_impersonation"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
REDIRECT_URI = "http://127.0.0.1:8000/consent/callback"


@pytest.fixture
def admin(sim) -> Any:  # type: ignore[no-untyped-def]
    return partner_user(sim, global_admin=True, admin_agent=True, mfa_registered=True)


@pytest.fixture
def partner_tenant(sim) -> str:  # type: ignore[no-untyped-def]
    return str(sim.world.partners[0].tenant_id)


def consent_as(
    sim, user, *, certificate: bool = False, action: str = "accept"
) -> tuple[dict[str, Any], dict[str, str]]:  # type: ignore[no-untyped-def]
    flow = identity.auth_code_flow_start(
        cloud=sim_cloud(sim),
        app=sim_app(sim, certificate=certificate),
        tenant="organizations",
        redirect_uri=REDIRECT_URI,
        scopes=[PC_SCOPE],
        prompt="consent",
    )
    target, fields = sign_in(flow["auth_uri"], user_oid=user.oid, action=action)
    assert target == REDIRECT_URI
    return flow, fields


@pytest.mark.parametrize("certificate", [False, True], ids=["secret", "certificate"])
def test_a_partner_admin_consents_and_the_id_token_is_verified(sim, admin, partner_tenant, certificate) -> None:  # type: ignore[no-untyped-def]
    flow, fields = consent_as(sim, admin, certificate=certificate)

    result = identity.auth_code_flow_finish(
        cloud=sim_cloud(sim),
        app=sim_app(sim, certificate=certificate),
        tenant="organizations",
        flow=flow,
        auth_response=fields,
    )

    assert result.refresh_token and result.access_token
    claims = result.id_token_claims
    assert claims["tid"] == partner_tenant
    assert claims["oid"] == admin.oid
    assert claims["nonce"] == hashlib.sha256(flow["nonce"].encode()).hexdigest()
    # A v2.0 id_token carries no `amr`: the sign-in's MFA is in the Partner Center token. No page says a Partner
    # Center token carries `wids`, and the simulator's do not by default: the role is read elsewhere.
    assert "amr" not in claims
    pc_claims = identity.access_token_claims(result.access_token)
    assert identity.claims_have_mfa(pc_claims)
    assert identity.claims_global_admin(pc_claims) is None
    assert result.refresh_token not in repr(result)


def test_the_flow_asks_for_s256_pkce_form_post_and_a_fresh_state_and_nonce(sim) -> None:  # type: ignore[no-untyped-def]
    def start() -> dict[str, Any]:
        return identity.auth_code_flow_start(
            cloud=sim_cloud(sim),
            app=sim_app(sim),
            tenant="organizations",
            redirect_uri=REDIRECT_URI,
            scopes=[PC_SCOPE],
        )

    first, second = start(), start()

    assert "code_challenge_method=S256" in first["auth_uri"]
    assert "response_mode=form_post" in first["auth_uri"]
    assert first["state"] != second["state"] and first["nonce"] != second["nonce"]
    assert first["code_verifier"] != second["code_verifier"]


def test_a_declined_sign_in_comes_back_as_access_denied(sim, admin) -> None:  # type: ignore[no-untyped-def]
    flow, fields = consent_as(sim, admin, action="cancel")

    assert fields["error"] == "access_denied"
    assert fields["state"] == flow["state"]
    assert "code" not in fields


def test_an_answer_for_another_flow_is_refused(sim, admin) -> None:  # type: ignore[no-untyped-def]
    _, fields = consent_as(sim, admin)
    other, _ = consent_as(sim, admin)

    with pytest.raises(identity.IdTokenInvalid, match="state mismatch"):
        identity.auth_code_flow_finish(
            cloud=sim_cloud(sim), app=sim_app(sim), tenant="organizations", flow=other, auth_response=fields
        )


def test_a_replayed_code_is_refused_by_microsoft(sim, admin) -> None:  # type: ignore[no-untyped-def]
    flow, fields = consent_as(sim, admin)
    kwargs = {
        "cloud": sim_cloud(sim),
        "app": sim_app(sim),
        "tenant": "organizations",
        "auth_response": fields,
    }
    identity.auth_code_flow_finish(flow=dict(flow), **kwargs)

    with pytest.raises(identity.ReconsentRequired) as caught:
        identity.auth_code_flow_finish(flow=dict(flow), **kwargs)

    assert caught.value.error == "invalid_grant"


@pytest.mark.parametrize("scope", [PC_SCOPE, GRAPH_SCOPE])
def test_a_refresh_token_redeems_for_a_new_one(sim, admin, partner_tenant, scope) -> None:  # type: ignore[no-untyped-def]
    refresh_token = sim.control.issue_refresh_token(admin.upn, client_id=sim.env["CPV_CLIENT_ID"])

    result = identity.refresh_token_redeem(
        cloud=sim_cloud(sim),
        app=sim_app(sim),
        tenant=partner_tenant,
        refresh_token=refresh_token,
        scopes=[scope],
    )

    assert result.refresh_token and result.refresh_token != refresh_token
    audience = jwt.decode(result.access_token, options={"verify_signature": False})["aud"]
    assert scope.startswith(audience)
    assert result.expires_at > time.time() + 60


def test_each_client_starts_with_an_empty_token_cache(sim, admin, partner_tenant) -> None:  # type: ignore[no-untyped-def]
    refresh_token = sim.control.issue_refresh_token(admin.upn, client_id=sim.env["CPV_CLIENT_ID"])
    identity.refresh_token_redeem(
        cloud=sim_cloud(sim),
        app=sim_app(sim),
        tenant=partner_tenant,
        refresh_token=refresh_token,
        scopes=[PC_SCOPE],
    )

    client = identity.confidential_client(cloud=sim_cloud(sim), tenant=partner_tenant, app=sim_app(sim))

    assert client.get_accounts() == []


ERROR_TABLE = [
    (700082, identity.ReconsentRequired),
    (70008, identity.ReconsentRequired),
    (70043, identity.ReconsentRequired),
    (50173, identity.ReconsentRequired),
    (50132, identity.ReconsentRequired),
    (50133, identity.ReconsentRequired),
    (50076, identity.MfaRequired),
    (50078, identity.MfaRequired),
    (50079, identity.MfaRequired),
    (53003, identity.ConditionalAccessBlocked),
    # In the partner's own tenant, an app that is not consented means the consent is gone.
    (65001, identity.ReconsentRequired),
    (90099, identity.ReconsentRequired),
    (700016, identity.AppNotFound),
    (7000215, identity.InvalidClient),
    (7000222, identity.InvalidClient),
    (700027, identity.InvalidClient),
    (50020, identity.NoAccessToTenant),
    (90072, identity.NoAccessToTenant),
]


@pytest.mark.parametrize(("code", "expected"), ERROR_TABLE, ids=[str(c) for c, _ in ERROR_TABLE])
def test_each_entra_error_becomes_its_typed_error(sim, admin, partner_tenant, code, expected) -> None:  # type: ignore[no-untyped-def]
    refresh_token = sim.control.issue_refresh_token(admin.upn, client_id=sim.env["CPV_CLIENT_ID"])
    sim.control.inject_entra_error(code, grant_type="refresh_token")

    with pytest.raises(identity.IdentityError) as caught:
        identity.refresh_token_redeem(
            cloud=sim_cloud(sim),
            app=sim_app(sim),
            tenant=partner_tenant,
            refresh_token=refresh_token,
            scopes=[PC_SCOPE],
        )

    assert type(caught.value) is expected
    assert code in caught.value.codes
    assert caught.value.permanent
    assert refresh_token not in str(caught.value)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_throttling_and_server_errors_are_transient(sim, admin, partner_tenant, status) -> None:  # type: ignore[no-untyped-def]
    refresh_token = sim.control.issue_refresh_token(admin.upn, client_id=sim.env["CPV_CLIENT_ID"])
    sim.control.inject_fault("entra", status=status, path=r".*/oauth2/v2.0/token", headers={"Retry-After": "3"})

    with pytest.raises(identity.Transient) as caught:
        identity.refresh_token_redeem(
            cloud=sim_cloud(sim),
            app=sim_app(sim),
            tenant=partner_tenant,
            refresh_token=refresh_token,
            scopes=[PC_SCOPE],
        )

    assert not caught.value.permanent
    assert caught.value.retry_after == 3


def test_a_token_unused_for_91_days_needs_a_new_consent(sim, admin, partner_tenant) -> None:  # type: ignore[no-untyped-def]
    refresh_token = sim.control.issue_refresh_token(admin.upn, client_id=sim.env["CPV_CLIENT_ID"])
    sim.control.advance_days(91)

    with pytest.raises(identity.ReconsentRequired) as caught:
        identity.refresh_token_redeem(
            cloud=sim_cloud(sim),
            app=sim_app(sim),
            tenant=partner_tenant,
            refresh_token=refresh_token,
            scopes=[PC_SCOPE],
        )

    assert 700082 in caught.value.codes


def test_an_admin_reset_revokes_the_token(sim, admin, partner_tenant) -> None:  # type: ignore[no-untyped-def]
    refresh_token = sim.control.issue_refresh_token(admin.upn, client_id=sim.env["CPV_CLIENT_ID"])
    sim.control.revoke_user(admin.upn)

    with pytest.raises(identity.ReconsentRequired):
        identity.refresh_token_redeem(
            cloud=sim_cloud(sim),
            app=sim_app(sim),
            tenant=partner_tenant,
            refresh_token=refresh_token,
            scopes=[PC_SCOPE],
        )


def test_a_customer_tenant_without_the_app_says_to_run_application_consent(sim, admin) -> None:  # type: ignore[no-untyped-def]
    refresh_token = sim.control.issue_refresh_token(admin.upn, client_id=sim.env["CPV_CLIENT_ID"])
    customer = sim.world.partners[0].customers[0]

    with pytest.raises(identity.AppNotConsentedInTenant):
        identity.refresh_token_redeem(
            cloud=sim_cloud(sim),
            app=sim_app(sim),
            home_tenant=False,
            tenant=str(customer.tenant_id),
            refresh_token=refresh_token,
            scopes=[GRAPH_SCOPE],
        )


def test_a_wrong_client_secret_is_an_operator_problem(sim, admin, partner_tenant) -> None:  # type: ignore[no-untyped-def]
    refresh_token = sim.control.issue_refresh_token(admin.upn, client_id=sim.env["CPV_CLIENT_ID"])
    wrong = identity.AppCredential(client_id=sim.env["CPV_CLIENT_ID"], client_secret="not-the-secret")

    with pytest.raises(identity.InvalidClient):
        identity.refresh_token_redeem(
            cloud=sim_cloud(sim),
            app=wrong,
            tenant=partner_tenant,
            refresh_token=refresh_token,
            scopes=[PC_SCOPE],
        )


def test_a_tenant_of_another_cloud_is_a_configuration_error_in_words(sim) -> None:  # type: ignore[no-untyped-def]
    world = sim.world  # the live world of the in-process simulator; the next test's reset restores it
    world.partners[1].cloud = "usgov"
    world.invalidate()

    with pytest.raises(identity.WrongCloud, match="in another cloud than the one it was invited for") as caught:
        identity.refresh_token_redeem(
            cloud=sim_cloud(sim),
            app=sim_app(sim),
            tenant=world.partners[1].tenant_id,
            refresh_token="0.a-refresh-token-of-the-other-cloud",
            scopes=[PC_SCOPE],
        )

    assert caught.value.codes == (900432,) and caught.value.permanent
    assert "0.a-refresh-token" not in str(caught.value)


def test_a_missing_credential_is_a_configuration_error(sim) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(identity.IdentityMisconfigured, match="CPV_CLIENT_CERTIFICATE or CPV_CLIENT_SECRET"):
        identity.confidential_client(
            cloud=sim_cloud(sim),
            tenant="organizations",
            app=identity.AppCredential(client_id=str(uuid.uuid4())),
        )


# --- id_token checks with tokens of our own making ---------------------------------------------------


@pytest.fixture
def forger(sim) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """Sign id_tokens with a key the JWKS cache trusts under kid `forged`, as if the authority published it"""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cloud = sim_cloud(sim)
    jwks_uri = identity._discovery(cloud)["jwks_uri"]
    identity.JWKS.key(jwks_uri, jwt.get_unverified_header(_real_id_token(sim))["kid"])
    fetched_at, keys = identity.JWKS._keys[jwks_uri]
    identity.JWKS._keys[jwks_uri] = (fetched_at, {**keys, "forged": key.public_key()})
    tenant = str(sim.world.partners[0].tenant_id)

    def forge(**overrides: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": f"{cloud.authority_host}/{tenant}/v2.0",
            "aud": sim.env["CPV_CLIENT_ID"],
            "tid": tenant,
            "oid": str(uuid.uuid4()),
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "nonce": "n-1",
        }
        claims.update(overrides)
        return jwt.encode(
            {k: v for k, v in claims.items() if v is not None},
            key,
            algorithm="RS256",
            headers={"kid": "forged"},
        )

    yield forge
    identity.JWKS.clear()


def _real_id_token(sim) -> str:  # type: ignore[no-untyped-def]
    admin = partner_user(sim, global_admin=True, admin_agent=True, mfa_registered=True)
    flow, fields = consent_as(sim, admin)
    return identity.auth_code_flow_finish(
        cloud=sim_cloud(sim), app=sim_app(sim), tenant="organizations", flow=flow, auth_response=fields
    ).id_token


def _verify(sim, token: str, nonce: str | None = "n-1") -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return identity.id_token_verify(
        cloud=sim_cloud(sim), client_id=sim.env["CPV_CLIENT_ID"], id_token=token, nonce=nonce
    )


def test_a_well_formed_token_passes(sim, forger) -> None:  # type: ignore[no-untyped-def]
    assert _verify(sim, forger())["nonce"] == "n-1"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"aud": "00000000-0000-0000-0000-000000000001"}, "another application"),
        ({"iss": "https://login.example.com/common/v2.0"}, r"issuer \(iss\)"),
        ({"tid": "00000000-0000-0000-0000-0000000000aa"}, r"issuer \(iss\)"),
        ({"tid": "contoso"}, "not a GUID"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"nonce": "n-2"}, "nonce"),
        ({"oid": None}, "failed a check"),
    ],
)
def test_a_token_failing_a_check_is_refused(sim, forger, overrides, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(identity.IdTokenInvalid, match=message):
        _verify(sim, forger(**overrides))


def test_a_token_with_a_bad_signature_is_refused(sim, forger) -> None:  # type: ignore[no-untyped-def]
    header, payload, signature = forger().split(".")
    tampered = f"{header}.{payload}.{signature[:-6]}AAAAAA"

    with pytest.raises(identity.IdTokenInvalid, match="signature"):
        _verify(sim, tampered)


def test_a_token_signed_with_an_unpublished_key_is_refused(sim) -> None:  # type: ignore[no-untyped-def]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode({"iss": "x", "aud": "y"}, key, algorithm="RS256", headers={"kid": "nobody-published-this"})

    with pytest.raises(identity.IdTokenInvalid, match="does not publish"):
        _verify(sim, token)


def test_an_unsigned_token_is_refused(sim) -> None:  # type: ignore[no-untyped-def]
    token = jwt.encode({"iss": "x"}, key=None, algorithm="none")  # type: ignore[arg-type]

    with pytest.raises(identity.IdTokenInvalid, match="RS256"):
        _verify(sim, token)


@pytest.mark.parametrize(
    ("code", "error", "home", "expected"),
    [
        (65001, "invalid_grant", False, identity.AppNotConsentedInTenant),
        (700016, "unauthorized_client", False, identity.AppNotConsentedInTenant),
        (700016, "unauthorized_client", True, identity.AppNotFound),
        (53003, "access_denied", False, identity.NoAccessToTenant),
        (53003, "access_denied", True, identity.ConditionalAccessBlocked),
        (50076, "interaction_required", False, identity.NoAccessToTenant),
        (50076, "interaction_required", True, identity.MfaRequired),
        (700082, "invalid_grant", False, identity.ReconsentRequired),
        (7000222, "invalid_client", False, identity.InvalidClient),
        (None, "unauthorized_client", True, identity.InvalidClient),
        # a managed identity's token the app does not take: `invalid_request`, still the app's credential refused
        (70021, "invalid_request", True, identity.InvalidClient),
        (700211, "invalid_request", True, identity.InvalidClient),
        (700212, "invalid_request", False, identity.InvalidClient),
        (700213, "invalid_request", True, identity.InvalidClient),
        (70025, "invalid_request", False, identity.InvalidClient),
        (700229, "invalid_request", True, identity.InvalidClient),
        (900432, "invalid_request", True, identity.WrongCloud),
        (900439, "invalid_request", False, identity.WrongCloud),
        (90038, "invalid_request", True, identity.WrongCloud),
    ],
)
def test_errors_are_read_for_the_tenant_that_was_asked(code, error, home, expected) -> None:  # type: ignore[no-untyped-def]
    body = {"error": error, "error_codes": [code] if code else [], "correlation_id": "c"}

    assert type(identity.error_from_response(body, home_tenant=home)) is expected


def test_every_request_to_entra_carries_a_timeout(sim, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    admin = partner_user(sim, global_admin=True, admin_agent=True, mfa_registered=True)
    refresh_token = sim.control.issue_refresh_token(admin.upn, client_id=sim.env["CPV_CLIENT_ID"])
    seen: list[object] = []
    original = identity.requests.Session.request

    def spy(self, method, url, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs.get("timeout"))
        return original(self, method, url, *args, **kwargs)

    monkeypatch.setattr(identity.requests.Session, "request", spy)
    identity._local.__dict__.clear()  # a fresh session and discovery cache: discovery is asked for again

    identity.refresh_token_redeem(
        cloud=sim_cloud(sim),
        app=sim_app(sim),
        tenant=str(sim.world.partners[0].tenant_id),
        refresh_token=refresh_token,
        scopes=[PC_SCOPE],
    )

    assert seen and all(timeout == identity.HTTP_TIMEOUT for timeout in seen)


def test_unknown_key_ids_refetch_the_keys_at_most_once_a_minute(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Tokens with made-up key ids do not make the product fetch the keys for each one."""
    fetched: list[str] = []
    clock = [1000.0]
    monkeypatch.setattr(identity.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(identity._JwksCache, "_fetch", staticmethod(lambda uri: fetched.append(uri) or {"k1": "key"}))
    cache = identity._JwksCache()
    assert cache.key("https://keys.example/", "k1") == "key"
    for forged in ("x1", "x2", "x3"):
        with pytest.raises(identity.IdTokenInvalid):
            cache.key("https://keys.example/", forged)
    assert len(fetched) == 1
    clock[0] += 61
    with pytest.raises(identity.IdTokenInvalid):
        cache.key("https://keys.example/", "x4")
    assert len(fetched) == 2
    # a known key id is served from the cache until its hour is up, then fetched again
    assert cache.key("https://keys.example/", "k1") == "key" and len(fetched) == 2
    clock[0] += 3601
    assert cache.key("https://keys.example/", "k1") == "key" and len(fetched) == 3


def test_a_tenants_keys_are_where_its_discovery_document_says(sim, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cloud, tenant = sim_cloud(sim), sim.world.vendor.tenant_id
    assert identity.tenant_jwks_uri(cloud=cloud, tenant=tenant) == f"{cloud.authority(tenant)}/discovery/v2.0/keys"
    url = f"{cloud.authority(tenant)}/v2.0/.well-known/openid-configuration"
    monkeypatch.setitem(identity._DISCOVERY, url, {"jwks_uri": f"{cloud.authority(tenant)}/discovery/keys"})
    assert identity.tenant_jwks_uri(cloud=cloud, tenant=tenant) == f"{cloud.authority(tenant)}/discovery/keys"

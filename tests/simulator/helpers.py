"""Helpers for the simulator's acceptance tests: drive msal and the sign-in page like the product."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

import msal
import requests
from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient

from simulator.testing import RunningSimulator

PC_SCOPE = "https://api.partnercenter.microsoft.com/user_impersonation"
PC_DEFAULT = "https://api.partnercenter.microsoft.com/.default"
GRAPH_DEFAULT = "https://graph.microsoft.com/.default"
REDIRECT_URI = "http://127.0.0.1:8000/consent/callback"
SIGN_IN = "openid profile offline_access"
# a sign-in that consents to the app registration's whole list, as the control panel's consent asks it
STATIC_CONSENT = f"{PC_DEFAULT} {SIGN_IN}"


def cpv_app(sim: RunningSimulator, tenant: str = "organizations", credential: Any = None) -> Any:
    """The real msal client the product uses, configured only with the authority host and the CA."""
    return msal.ConfidentialClientApplication(
        sim.env["CPV_CLIENT_ID"],
        client_credential=credential if credential is not None else sim.env["CPV_CLIENT_SECRET"],
        authority=sim.authority(tenant),
        instance_discovery=False,
    )


def vault_client(sim: RunningSimulator, **kwargs: Any) -> SecretClient:
    """The real Key Vault SDK as the vault's service principal, configured only with the simulator's hosts."""
    return SecretClient(sim.env["VAULT_URL"], vault_credential(sim), verify_challenge_resource=False, **kwargs)


def vault_credential(sim: RunningSimulator) -> ClientSecretCredential:
    """The vault's service principal as azure-identity signs it in, configured only with the simulator's hosts."""
    env = sim.env
    return ClientSecretCredential(
        env["AZURE_TENANT_ID"],
        env["AZURE_CLIENT_ID"],
        env["AZURE_CLIENT_SECRET"],
        authority=env["AZURE_AUTHORITY_HOST"],
        disable_instance_discovery=True,
    )


def form_fields(page: str) -> dict[str, str]:
    return {
        html.unescape(k): html.unescape(v)
        for k, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page)
    }


@dataclass
class SignIn:
    """What the browser saw: the redirect (query mode) or auto-submitted form (form_post mode)."""

    response: requests.Response
    params: dict[str, str]


def sign_in(
    auth_uri: str, *, user: str | None = None, action: str = "accept", session: requests.Session | None = None
) -> SignIn:
    """Drive the simulated sign-in page like a browser: GET the authorize URL, pick a user, submit."""
    session = session or requests.Session()
    page = session.get(auth_uri, allow_redirects=False, timeout=10)
    assert page.status_code == 200, page.text
    fields = form_fields(page.text)
    data = {"txn": fields["txn"], "action": action}
    if user is not None:
        data["username"] = user
    action_url = re.search(r'<form method="post" action="([^"]+)"', page.text)
    assert action_url is not None
    base = auth_uri.split("/", 3)
    response = session.post(
        f"{base[0]}//{base[2]}{html.unescape(action_url.group(1))}",
        data=data,
        allow_redirects=False,
        timeout=10,
    )
    if response.status_code == 302:
        location = response.headers["Location"]
        query = location.split("?", 1)[1] if "?" in location else location.split("#", 1)[1]
        from urllib.parse import parse_qsl

        return SignIn(response, dict(parse_qsl(query)))
    return SignIn(response, form_fields(response.text))


def consent(
    sim: RunningSimulator,
    *,
    user: str | None = None,
    response_mode: str = "form_post",
    scopes: list[str] | None = None,
    credential: Any = None,
    tenant: str = "organizations",
) -> dict[str, Any]:
    """A whole consent: msal starts the flow, the 'browser' signs in, msal redeems the code."""
    app = cpv_app(sim, tenant, credential)
    flow = app.initiate_auth_code_flow(scopes or [PC_SCOPE], redirect_uri=REDIRECT_URI, response_mode=response_mode)
    result = sign_in(flow["auth_uri"], user=user or admin(sim).upn)
    return app.acquire_token_by_auth_code_flow(flow, result.params)


def admin(sim: RunningSimulator, partner: int = 0) -> Any:
    return sim.world.partners[partner].users[0]


def user_named(sim: RunningSimulator, login: str, partner: int = 0) -> Any:
    return next(u for u in sim.world.partners[partner].users if u.upn.startswith(f"{login}@"))


def admin_consents(sim: RunningSimulator, partner: int = 0, scope: str = STATIC_CONSENT) -> str:
    """The partner's Global Administrator signs in with `scope` and accepts (by default: the registration's whole
    list, for the organisation); returns their refresh token."""
    return sim.control.issue_refresh_token(admin(sim, partner).upn, scope=scope)


def token_request(sim: RunningSimulator, tenant: str, **data: str) -> requests.Response:
    """A raw POST to the token endpoint (for asserting on the exact error body)."""
    return requests.post(f"{sim.authority_host}/{tenant}/oauth2/v2.0/token", data=data, timeout=10)


def redeem(
    sim: RunningSimulator,
    refresh_token: str,
    tenant: str = "organizations",
    scope: str = PC_DEFAULT,
    **extra: str,
) -> requests.Response:
    data = {
        "grant_type": "refresh_token",
        "client_id": sim.env["CPV_CLIENT_ID"],
        "client_secret": sim.env["CPV_CLIENT_SECRET"],
        "refresh_token": refresh_token,
        "scope": f"{scope} openid profile offline_access",
        "client_info": "1",
    }
    data.update(extra)
    return token_request(sim, tenant, **data)


def assert_entra_error(response: requests.Response, code: int, error: str, status: int = 400) -> dict[str, Any]:
    """The body has every field Entra sends, with this AADSTS code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert body["error_codes"] == [code]
    description = body["error_description"]
    assert description.startswith(f"AADSTS{code}: ")
    for part in ("Trace ID: ", "Correlation ID: ", "Timestamp: "):
        assert part in description
    for key in ("timestamp", "trace_id", "correlation_id", "error_uri"):
        assert body[key]
    assert body["trace_id"] in description and body["correlation_id"] in description
    return body

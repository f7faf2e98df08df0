"""Entra ID's error answers, shaped as Entra sends them from the token endpoint."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EntraError:
    code: int
    error: str
    status: int
    message: str
    suberror: str | None = None


# The messages follow Entra's wording; `{...}` fields are filled from the request when known.
CATALOG: dict[int, EntraError] = {
    e.code: e
    for e in [
        # refresh token no longer usable: re-consent needed
        EntraError(
            700082,
            "invalid_grant",
            400,
            "The refresh token has expired due to inactivity. The token was issued on {issued} and was "
            "inactive for 90.00:00:00.",
            "bad_token",
        ),
        EntraError(
            70008,
            "invalid_grant",
            400,
            "The provided authorization code or refresh token has expired due to inactivity. Send a new "
            "interactive authorization request for this user and resource.",
            "bad_token",
        ),
        EntraError(
            70043,
            "invalid_grant",
            400,
            "The refresh token has expired or is invalid due to sign-in frequency checks by conditional "
            "access. The token was issued on {issued} and the maximum allowed lifetime for this request "
            "is 3600.",
            "bad_token",
        ),
        EntraError(
            50173,
            "invalid_grant",
            400,
            "The provided grant has expired due to it being revoked, a fresh auth token is needed. The "
            "user might have changed or reset their password. The grant was issued on '{issued}' and the "
            "TokensValidFrom date (before which tokens are not valid) for this user is '{valid_from}'.",
            "bad_token",
        ),
        EntraError(
            50132,
            "invalid_grant",
            400,
            "The session has been revoked due to a password change or reset, or the user has been disabled.",
            "bad_token",
        ),
        EntraError(
            50133,
            "invalid_grant",
            400,
            "Session is invalid due to expiration or recent password change.",
            "bad_token",
        ),
        # MFA needed
        EntraError(
            50076,
            "interaction_required",
            400,
            "Due to a configuration change made by your administrator, or because you moved to a new "
            "location, you must use multi-factor authentication to access '{resource}'.",
            "basic_action",
        ),
        EntraError(
            50078,
            "interaction_required",
            400,
            "Presented multi-factor authentication has expired due to policies configured by your "
            "administrator, you must refresh your multi-factor authentication to access '{resource}'.",
            "basic_action",
        ),
        EntraError(
            50079,
            "interaction_required",
            400,
            "Due to a configuration change made by your administrator, or because you moved to a new "
            "location, you must enroll in multi-factor authentication to access '{resource}'.",
            "basic_action",
        ),
        # Conditional Access
        EntraError(
            53003,
            "invalid_grant",
            400,
            "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.",
            "message_only",
        ),
        # the app is not consented in that tenant
        EntraError(
            65001,
            "invalid_grant",
            400,
            "The user or administrator has not consented to use the application with ID '{client_id}' "
            "named '{app_name}'. Send an interactive authorization request for this user and resource.",
            "consent_required",
        ),
        # the resource's service principal is not in the tenant (errors reference: "AADSTS500011 |
        # InvalidResourceServicePrincipalNotFound"); `invalid_resource` is what Entra sends with it (observed)
        EntraError(
            500011,
            "invalid_resource",
            400,
            "The resource principal named {resource} was not found in the tenant named {tenant}. This can "
            "happen if the application has not been installed by the administrator of the tenant or consented to "
            "by any user in the tenant. You might have sent your authentication request to the wrong tenant.",
        ),
        EntraError(
            90099,
            "invalid_grant",
            400,
            "The application '{client_id}' ({app_name}) has not been authorized in the tenant "
            "'{tenant}'. Applications must be authorized to access the customer tenant before partner "
            "delegated administrators can use them. Provide pre-consent or execute the appropriate "
            "Partner Center API to authorize the application.",
        ),
        # consent refused on the sign-in page (shown there, never sent to the app: the `error` is for the log)
        EntraError(
            90094,
            "access_denied",
            400,
            "{app_name} needs permission to access resources in your organization that only an admin can grant. "
            "Ask an admin to grant permission to this app before you can use it. ({permissions})",
        ),
        EntraError(
            650057,
            "invalid_client",
            400,
            "Invalid resource. The client has requested access to a resource which is not listed in the requested "
            "permissions in the client's application registration. Client app ID: {client_id}({app_name}). "
            "Resource value from request: {resource}. Resource app ID: {resource_app_id}. List of valid resources "
            "from app registration: {registered}.",
        ),
        EntraError(
            700016,
            "unauthorized_client",
            400,
            "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This "
            "can happen if the application has not been installed by the administrator of the tenant or "
            "consented to by any user in the tenant. You may have sent your authentication request to "
            "the wrong tenant.",
        ),
        # the CPV's own credential
        EntraError(
            7000215,
            "invalid_client",
            401,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client "
            "secret value, not the client secret ID, for a secret added to app '{client_id}'.",
        ),
        EntraError(
            7000222,
            "invalid_client",
            401,
            "The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal to "
            "create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate "
            "credentials for added security: https://aka.ms/certCreds.",
        ),
        EntraError(
            700027,
            "invalid_client",
            401,
            "The certificate with identifier used to sign the client assertion is not registered on "
            "application. [Reason - {reason}, Thumbprint of key used by client: '{thumbprint}', Please "
            "visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for "
            "app Id '{client_id}'.]",
        ),
        EntraError(700024, "invalid_client", 401, "Client assertion is not within its valid time range."),
        # workload-identity-federation-considerations.md gives the words; Azure/azure-workload-identity's
        # troubleshooting page the error (invalid_request), the status (400) and the assertion's three values
        EntraError(
            70021,
            "invalid_request",
            400,
            "No matching federated identity record found for presented assertion. Assertion Issuer: '{issuer}'. "
            "Assertion Subject: '{subject}'. Assertion Audience: '{audience}'.",
        ),
        EntraError(
            7000218,
            "invalid_client",
            401,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        ),
        # the partner user has no access to that tenant
        EntraError(
            50020,
            "invalid_grant",
            400,
            "User account '{upn}' from identity provider 'https://sts.windows.net/{home_tenant}/' does "
            "not exist in tenant '{tenant_name}' and cannot access the application '{client_id}'"
            "({app_name}) in that tenant. The account needs to be added as an external user in the "
            "tenant first. Sign out and sign in again with a different Azure Active Directory user "
            "account.",
        ),
        EntraError(
            90072,
            "invalid_grant",
            400,
            "User account '{upn}' from identity provider 'https://sts.windows.net/{home_tenant}/' does "
            "not exist in tenant '{tenant_name}' and cannot access the application '{client_id}'"
            "({app_name}) in that tenant. The account needs to be added as an external user in the "
            "tenant first. Sign out and sign in again with a different Azure Active Directory user "
            "account.",
        ),
        # throttled / transient
        EntraError(
            50196,
            "temporarily_unavailable",
            429,
            "The server terminated an operation because it encountered a client request loop. Please "
            "contact your app vendor.",
        ),
        EntraError(90033, "temporarily_unavailable", 503, "A transient error has occurred. Please try again."),
        EntraError(
            50000,
            "server_error",
            500,
            "There was an error issuing a token or an issue with our sign-in service.",
        ),
        # request shape and codes
        EntraError(
            900144,
            "invalid_request",
            400,
            "The request body must contain the following parameter: '{param}'.",
        ),
        EntraError(
            90002,
            "invalid_tenant",
            400,
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are "
            "signing into the correct cloud. Check with your subscription administrator, this may happen "
            "if there are no active subscriptions for the tenant.",
        ),
        # a US Government tenant at the global authority (reference-error-codes.md "AADSTS900432 | Confidential
        # Client isn't supported in Cross Cloud request."; reference-breaking-changes.md "Impacted apps will begin
        # seeing an error AADSTS900439 - USGClientNotSupportedOnPublicEndpoint"); the error names are a GUESS
        EntraError(
            900432,
            "invalid_request",
            400,
            "Confidential Client is not supported in Cross Cloud request.",
        ),
        EntraError(
            900439,
            "invalid_request",
            400,
            "USGClientNotSupportedOnPublicEndpoint - the app is attempting to sign in a US Government user on the "
            "public cloud endpoint.",
        ),
        EntraError(
            70003,
            "unsupported_grant_type",
            400,
            "The app requested an unsupported grant type '{grant_type}'.",
        ),
        EntraError(9002313, "invalid_grant", 400, "Invalid request. Request is malformed or invalid."),
        EntraError(
            54005,
            "invalid_grant",
            400,
            "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an "
            "existing refresh token.",
        ),
        EntraError(
            501481,
            "invalid_grant",
            400,
            "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
        ),
        EntraError(
            500112,
            "invalid_grant",
            400,
            "The reply address '{redirect_uri}' does not match the reply address provided when requesting "
            "Authorization code.",
        ),
        EntraError(
            70000,
            "invalid_grant",
            400,
            "The request was denied because one or more scopes requested are unauthorized or expired. The "
            "user must first sign in and grant the client application access to the requested scope.",
        ),
        EntraError(
            70011,
            "invalid_scope",
            400,
            "The provided request must include a 'scope' input parameter. The provided value for the "
            "input parameter 'scope' is not valid. The scope {scope} is not valid.",
        ),
        EntraError(
            700022,
            "invalid_scope",
            400,
            "The provided value for the input parameter scope is not valid because it contains more than one "
            "resource. Scope {scope} is not valid.",
        ),
        EntraError(90100, "invalid_request", 400, "The parameter '{param}' is empty or not valid."),
        EntraError(
            1002012,
            "invalid_scope",
            400,
            "The provided value for scope {scope} is not valid. Client credential flows must have a "
            "scope value with /.default suffixed to the resource identifier (application ID URI).",
        ),
        EntraError(
            50011,
            "invalid_request",
            400,
            "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs "
            "configured for the application '{client_id}'. Make sure the redirect URI sent in the request "
            "matches one added to your application in the Azure portal. Navigate to "
            "https://aka.ms/redirectUriMismatchError to learn more about how to fix this.",
        ),
        EntraError(65004, "access_denied", 400, "User declined to consent to access the app."),
        EntraError(
            50059,
            "invalid_request",
            400,
            "No tenant-identifying information found in either the request or implied by any provided credentials.",
        ),
        EntraError(50057, "invalid_grant", 400, "The user account is disabled."),
        EntraError(
            700005,
            "invalid_grant",
            400,
            "Provided Authorization Code is intended to use against other tenant, thus rejected.",
        ),
        EntraError(
            700021,
            "invalid_client",
            401,
            "Client assertion application identifier doesn't match 'client_id' parameter. Review the "
            "documentation at https://aka.ms/certCreds .",
        ),
        EntraError(50058, "login_required", 400, "A silent sign-in request was sent but no user is signed in."),
    ]
}


# Codes whose words depend on the cause: (code, variant) -> the message used instead of the catalog's.
VARIANTS: dict[tuple[int, str], str] = {
    # A registered key outside its dates, as Entra words it (MicrosoftDocs/azure-stack-docs
    # azure-stack/hci/deploy/troubleshoot-hci-registration.md): "AADSTS700027: Client assertion contains an invalid
    # signature. [Reason - The key used is expired. Thumbprint of key used by client: '{SomeThumbprint}', Found key
    # 'Start=06/29/2021 21:13:15, End=06/29/2023 21:13:15'"
    (700027, "key_dates"): (
        "Client assertion contains an invalid signature. [Reason - {reason} Thumbprint of key used by client: "
        "'{thumbprint}', Found key 'Start={start}, End={end}']"
    ),
}


class _Defaults(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "unknown"


def error_body(
    code: int, *, now: float, correlation_id: str | None = None, **fields: Any
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) of Entra's answer for AADSTS `code`."""
    entry = CATALOG.get(code) or EntraError(code, "invalid_request", 400, "Simulated error.")
    trace_id = str(uuid.uuid4())
    correlation = correlation_id or str(uuid.uuid4())
    when = dt.datetime.fromtimestamp(now, dt.UTC)
    stamp = when.strftime("%Y-%m-%d %H:%M:%SZ")
    template = VARIANTS.get((code, str(fields.get("variant", ""))), entry.message)
    message = template.format_map(_Defaults(fields))
    body: dict[str, Any] = {
        "error": entry.error,
        "error_description": (
            f"AADSTS{code}: {message} Trace ID: {trace_id} Correlation ID: {correlation} Timestamp: "
            f"{when.strftime('%Y-%m-%d %H:%M:%S')}Z"
        ),
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": trace_id,
        "correlation_id": correlation,
        "error_uri": f"{fields.get('authority', 'https://login.microsoftonline.com')}/error?code={code}",
    }
    if entry.suberror:
        body["suberror"] = entry.suberror
    if entry.error == "interaction_required":
        body["claims"] = '{"access_token":{"capolids":{"essential":true,"values":["sim"]}}}'
    return entry.status, body

"""Microsoft identity through msal: sign-in, id_token checks and refresh-token redemption, with msal's answers
turned into typed errors that say what a person must do."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import jwt
import msal
import requests

from cpv.clouds import Cloud
from cpv.config import AppCredential, Credential
from microsoft import app_credentials, http
from microsoft.app_credentials import Refusal
from microsoft.errors import MicrosoftError, retry_after
from microsoft.http import TimeoutSession

logger = logging.getLogger(__name__)

T = TypeVar("T")
HTTP_TIMEOUT = (5.0, 20.0)  # seconds to connect, seconds to read
GLOBAL_ADMIN_ROLE = "62e90394-69f5-4237-9190-012177145e10"


class _DiscoveryOnlyCache(dict[Any, Any]):
    """msal's `http_cache`, keeping discovery documents (GETs) only."""

    def __setitem__(self, key: Any, value: Any) -> None:
        # msal replays a cached error answer to a token POST without calling Entra, and its key for a code redemption
        # omits the code: one partner's 429 would block every partner's sign-in. Retrying is this project's job.
        if isinstance(key, str) and key.startswith("POST "):
            return
        super().__setitem__(key, value)


class _RecordingSession(TimeoutSession):
    """A per-thread keep-alive session that remembers the last answer's status and Retry-After."""

    last_status: int = 0
    last_retry_after: float | None = None
    timeout = HTTP_TIMEOUT

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        self.last_status, self.last_retry_after = 0, None
        # msal applies its `timeout` only to a session of its own: the session's own default applies instead.
        response = super().request(method, url, *args, **kwargs)
        self.last_status = response.status_code
        self.last_retry_after = retry_after(response.headers)
        return response


_local = threading.local()


def _session() -> _RecordingSession:
    return http.session(_RecordingSession)


def _http_cache() -> _DiscoveryOnlyCache:
    # Per thread: msal's index inside the mapping is not safe to share between threads.
    cache: _DiscoveryOnlyCache | None = getattr(_local, "http_cache", None)
    if cache is None:
        cache = _local.http_cache = _DiscoveryOnlyCache()
    return cache


# --- typed errors ---------------------------------------------------------------------------------


class IdentityError(MicrosoftError):
    """A token operation failed; `permanent` says whether retrying can help. The message never holds a token."""

    kind = "identity_error"

    def __init__(
        self,
        message: str,
        *,
        error: str = "",
        codes: tuple[int, ...] = (),
        correlation_id: str = "",
        retry_after: float | None = None,
    ):
        super().__init__(message, retry_after=retry_after)
        self.error = error
        self.codes = codes
        self.correlation_id = correlation_id


class ReconsentRequired(IdentityError):
    """The refresh token is expired, revoked or invalidated: the partner must consent again."""

    kind = "reconsent_required"


class MfaRequired(IdentityError):
    """The user must complete multi-factor authentication: consent again with MFA."""

    kind = "mfa_required"


class ConditionalAccessBlocked(IdentityError):
    """A Conditional Access policy of the partner blocks the sign-in."""

    kind = "conditional_access"


class AppNotConsentedInTenant(IdentityError):
    """The vendor's app has no service principal in that (customer) tenant: run ApplicationConsent there."""

    kind = "app_not_consented"


class AppNotFound(IdentityError):
    """AADSTS700016 in the partner's tenant: the partner removed the app (consent again), or, for many partners at
    once, the vendor's registration is at fault."""

    kind = "app_not_found"


class PermissionNotGranted(IdentityError):
    """The consent lacks a resource other than Partner Center (AADSTS65001 for Graph): consent again to use it."""

    kind = "permission_not_granted"


class NoAccessToTenant(IdentityError):
    """The partner's user has no access to that customer tenant."""

    kind = "no_access"


class InvalidClient(IdentityError):
    """The vendor's own credential is wrong or expired: an operator must rotate it."""

    kind = "invalid_client"


class Transient(IdentityError):
    """Throttled, a server error or a timeout: retry later, after `retry_after` seconds when known."""

    transient = True
    kind = "transient"


class IdTokenInvalid(IdentityError):
    """The id_token failed a check (signature, issuer, audience, lifetime, nonce, tenant)."""

    kind = "id_token_invalid"


class WrongCloud(IdentityError):
    """The partner's tenant lives in another national cloud than the one it was invited for (AADSTS900432,
    900439, 90038): an operator must correct the partner's cloud."""

    kind = "wrong_cloud"


class IdentityMisconfigured(IdentityError):
    """The control panel cannot sign in as its app: a credential is missing or unreadable."""

    kind = "misconfigured"


# The refresh token itself is dead (expired, revoked, a password reset, a sign-in frequency policy): wherever it
# was redeemed, the partner must consent again.
_RECONSENT_CODES = {700082, 70008, 70043, 50173, 50132, 50133, 70000}
_MFA_CODES = {50076, 50078, 50079, 50074}
# Conditional Access (the errors reference): 50097 DeviceAuthenticationRequired, 53000 DeviceNotCompliant, 53001
# DeviceNotDomainJoined, 53002 ApplicationUsedIsNotAnApprovedApp, 530003, 53003 BlockedByConditionalAccess.
_CONDITIONAL_ACCESS_CODES = {50097, 53000, 53001, 53002, 530003, 53003}
# 90099: "the application has not been authorized in the tenant ... execute the appropriate Partner Center API";
# 65001: no consent for that resource.
_NOT_CONSENTED_CODES = {65001, 90099}
# 700016: the application "wasn't found in the directory": the partner removed the vendor's app from its tenant,
# or (seen for several partners at once) the vendor's own registration is gone or in another cloud.
_APP_NOT_FOUND = 700016
_NO_ACCESS_CODES = {50020, 90072}
# 70021: no federated identity credential of the app matches the managed identity's token.
_INVALID_CLIENT_CODES = {7000215, 7000222, 700027, 7000218, 700024, 70021}
# The tenant is in another cloud (errors reference): 900432 "Confidential Client isn't supported in Cross Cloud
# request", 900439 USGClientNotSupportedOnPublicEndpoint, 90038 NationalCloudTenantRedirection.
_WRONG_CLOUD_CODES = {900432, 900439, 90038}


def error_from_response(
    result: dict[str, Any], *, home_tenant: bool = True, partner_center: bool = True
) -> IdentityError:
    """Classify msal's error dict into a typed error; `home_tenant` is False for a token asked in a customer's
    tenant, `partner_center` False for a resource other than Partner Center."""
    error = str(result.get("error", "unknown_error"))
    codes = tuple(int(c) for c in result.get("error_codes") or [] if str(c).isdigit())
    correlation_id = str(result.get("correlation_id", ""))
    code_set = set(codes)
    label = f"{error} (AADSTS{codes[0]})" if codes else error
    kwargs: dict[str, Any] = {"error": error, "codes": codes, "correlation_id": correlation_id}
    # Branch on the codes Microsoft documents first, then on `error`: the numbers are the specific part.
    if code_set & _WRONG_CLOUD_CODES:
        return WrongCloud(
            f"The partner's tenant is in another cloud than the one it was invited for (correct the partner's "
            f"cloud): {label}",
            **kwargs,
        )
    if code_set & _INVALID_CLIENT_CODES or error == "invalid_client":
        return InvalidClient(f"Microsoft rejected the control panel's own app credential: {label}", **kwargs)
    if error in {"temporarily_unavailable", "server_error", "request_timeout"}:
        return Transient(f"Microsoft's sign-in service is unavailable: {label}", **kwargs)
    # 70043 is a sign-in frequency policy: the partner's in its own tenant, one customer's in that customer's.
    if code_set & _RECONSENT_CODES and (home_tenant or code_set - {70043}):
        return ReconsentRequired(f"The partner's consent is no longer valid: {label}", **kwargs)
    if not home_tenant:
        if code_set & _NOT_CONSENTED_CODES or _APP_NOT_FOUND in code_set:
            return AppNotConsentedInTenant(f"The app is not consented in that tenant: {label}", **kwargs)
        if code_set & _NO_ACCESS_CODES:
            return NoAccessToTenant(f"The partner's user has no access to that tenant: {label}", **kwargs)
        if error in {"invalid_grant", "interaction_required"} or code_set:
            return NoAccessToTenant(f"That customer's tenant refused the sign-in: {label}", **kwargs)
    elif _APP_NOT_FOUND in code_set:
        return AppNotFound(
            f"Microsoft does not find the control panel's app in the partner's tenant: {label}", **kwargs
        )
    elif code_set & _NOT_CONSENTED_CODES:
        if partner_center:
            return ReconsentRequired(f"The app is no longer consented in the partner's tenant: {label}", **kwargs)
        return PermissionNotGranted(f"The partner's consent does not include that resource: {label}", **kwargs)
    if code_set & _CONDITIONAL_ACCESS_CODES:
        return ConditionalAccessBlocked(
            f"A Conditional Access policy in the partner's tenant blocks the sign-in: {label}", **kwargs
        )
    if code_set & _NO_ACCESS_CODES:
        return NoAccessToTenant(f"The partner's user has no access to that tenant: {label}", **kwargs)
    if code_set & _MFA_CODES:
        return MfaRequired(f"Multi-factor authentication is required: {label}", **kwargs)
    if error == "interaction_required":
        return MfaRequired(f"Microsoft requires the user to sign in again: {label}", **kwargs)
    if error == "invalid_grant":
        return ReconsentRequired(f"The partner's consent is no longer valid: {label}", **kwargs)
    if error == "unauthorized_client":
        return InvalidClient(f"Microsoft does not let the control panel's app do this: {label}", **kwargs)
    return IdentityError(f"Microsoft refused the token request: {label}", **kwargs)


# --- the app's credential -------------------------------------------------------------------------
NO_CREDENTIAL = (
    "No app credential is configured: set CPV_CLIENT_MANAGED_IDENTITY, CPV_CLIENT_CERTIFICATE or CPV_CLIENT_SECRET"
)


def client_credential(
    app: AppCredential, credential: Credential | None = None, *, cloud: Cloud | None = None
) -> str | dict[str, Any]:
    """msal's `client_credential` for `credential` (by default the first to try of the app's): the PEM certificate
    and key, the secret, or a managed identity's client assertion for `cloud`. Raises IdentityMisconfigured."""
    chosen = credential or next(iter(app_credentials.in_order(app)), None)
    if chosen is None:
        raise IdentityMisconfigured(NO_CREDENTIAL)
    try:
        return app_credentials.msal_credential(chosen, cloud=cloud)
    except app_credentials.CredentialUnreadable as exc:
        raise IdentityMisconfigured(str(exc)) from None


def with_credentials(app: AppCredential, attempt: Callable[[Credential], T]) -> tuple[T, tuple[Refusal, ...]]:
    """Run `attempt` with the app's credentials in turn (newest first, those refused lately last) until Entra
    accepts one: its answer and the refusals on the way (AADSTS700027, 7000215, 7000222), which the caller turns
    into an operator alert. Raises the last credential's error, or IdentityMisconfigured when there is none."""
    ordered = app_credentials.in_order(app)
    if not ordered:
        raise IdentityMisconfigured(NO_CREDENTIAL)
    refused: list[Refusal] = []
    for index, credential in enumerate(ordered):
        try:
            answer = attempt(credential)
        except InvalidClient as exc:
            code = next((c for c in exc.codes if c in app_credentials.FALLBACK_CODES), None)
            if code is None:
                raise
            app_credentials.refusal_note(app, credential)
            refused.append(Refusal(credential=credential.label, code=code))
            if index == len(ordered) - 1:
                raise
            logger.warning("Entra refused %s (AADSTS%s): trying the next credential", credential.label, code)
            continue
        app_credentials.acceptance_note(app, credential)
        return answer, tuple(refused)
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def confidential_client(
    *, cloud: Cloud, tenant: str, app: AppCredential, offline: bool = True, credential: Credential | None = None
) -> msal.ConfidentialClientApplication:
    """A fresh msal client with an empty token cache, signing in with `credential` (by default the app's first to
    try); `offline=False` asks for no refresh token. Raises IdentityMisconfigured, or Transient when discovery
    fails."""
    if not app.client_id:
        raise IdentityMisconfigured("CPV_CLIENT_ID is not set")
    try:
        return msal.ConfidentialClientApplication(
            app.client_id,
            client_credential=client_credential(app, credential, cloud=cloud),
            authority=cloud.authority(tenant),
            # Outside Microsoft's hosts, msal would ask login.microsoftonline.com to vouch for the authority.
            instance_discovery=cloud.is_microsoft,
            timeout=HTTP_TIMEOUT,
            http_client=_session(),
            http_cache=_http_cache(),
            exclude_scopes=None if offline else ["offline_access"],
        )
    except (requests.RequestException, msal.exceptions.MsalServiceError) as exc:
        raise Transient(f"The sign-in authority could not be reached ({exc.__class__.__name__})") from None
    except ValueError as exc:
        # msal raises ValueError for an unknown tenant ("Unable to get authority configuration").
        raise IdentityError(f"The sign-in authority refused tenant {tenant!r}: {exc.__class__.__name__}") from None


# --- tokens ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenResult:
    """What a token redemption returned. The tokens never appear in a repr."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: float
    scopes: tuple[str, ...]
    id_token: str = field(default="", repr=False)
    id_token_claims: dict[str, Any] = field(default_factory=dict)
    # The app's credentials Entra refused before one was accepted (newest first): an operator must look.
    refused: tuple[Refusal, ...] = ()


def _token_result(result: dict[str, Any], refused: tuple[Refusal, ...] = ()) -> TokenResult:
    return TokenResult(
        refused=refused,
        access_token=str(result.get("access_token", "")),
        refresh_token=str(result.get("refresh_token", "")),
        expires_at=time.time() + float(result.get("expires_in", 0) or 0),
        scopes=tuple(str(result.get("scope", "")).split()),
        id_token=str(result.get("id_token", "")),
        id_token_claims=dict(result.get("id_token_claims") or {}),
    )


def _call(
    operation: str, func: Any, *args: Any, home_tenant: bool = True, partner_center: bool = True, **kwargs: Any
) -> dict[str, Any]:
    session = _session()
    try:
        result = func(*args, **kwargs)
    except app_credentials.CredentialUnreadable as exc:
        # A managed identity's client assertion is fetched while msal sends the request; an endpoint that cannot be
        # reached now may answer later.
        if exc.transient:
            raise Transient(f"{operation}: {exc}") from None
        raise IdentityMisconfigured(f"{operation}: {exc}") from None
    except json.JSONDecodeError:
        raise Transient(
            f"{operation}: Microsoft's token endpoint gave an unreadable answer (HTTP {session.last_status})",
            retry_after=session.last_retry_after,
        ) from None
    except requests.Timeout:
        raise Transient(f"{operation}: Microsoft's token endpoint did not answer in time") from None
    except requests.RequestException as exc:
        raise Transient(
            f"{operation}: Microsoft's token endpoint could not be reached ({exc.__class__.__name__})"
        ) from None
    except msal.exceptions.MsalServiceError as exc:
        # msal raises this for 5xx answers.
        raise Transient(
            f"{operation}: Microsoft's token endpoint failed ({exc.__class__.__name__})",
            retry_after=session.last_retry_after,
        ) from None
    if not isinstance(result, dict):
        raise IdentityError(f"{operation}: msal returned no answer")
    if "error" in result and (session.last_status == 429 or session.last_status >= 500):
        raise Transient(
            f"{operation}: Microsoft's token endpoint is throttling or failing (HTTP {session.last_status})",
            retry_after=session.last_retry_after,
            error=str(result.get("error", "")),
            correlation_id=str(result.get("correlation_id", "")),
        )
    if "error" in result:
        error = error_from_response(result, home_tenant=home_tenant, partner_center=partner_center)
        logger.info(
            "%s failed: %s error=%s codes=%s correlation_id=%s",
            operation,
            error.kind,
            error.error,
            list(error.codes),
            error.correlation_id,
        )
        raise error
    return result


def auth_code_flow_start(
    *,
    cloud: Cloud,
    app: AppCredential,
    tenant: str,
    redirect_uri: str,
    scopes: list[str],
    prompt: str | None = None,
    login_hint: str | None = None,
    offline: bool = True,
    claims: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Begin an authorization-code flow (PKCE, form_post, optional `claims`): msal's flow dict, to keep server-side.
    Raises IdentityMisconfigured or Transient."""
    client = confidential_client(cloud=cloud, tenant=tenant, app=app, offline=offline)
    return dict(
        client.initiate_auth_code_flow(
            scopes,
            redirect_uri=redirect_uri,
            response_mode="form_post",
            prompt=prompt,
            login_hint=login_hint,
            claims_challenge=json.dumps(claims, separators=(",", ":")) if claims else None,
        )
    )


def auth_code_flow_finish(
    *,
    cloud: Cloud,
    app: AppCredential,
    tenant: str,
    flow: dict[str, Any],
    auth_response: dict[str, str],
    offline: bool = True,
) -> TokenResult:
    """Redeem a finished sign-in's code: the TokenResult with verified `id_token_claims`.
    Raises IdTokenInvalid, a typed error for Microsoft's answer, or Transient."""

    def redeem(credential: Credential) -> dict[str, Any]:
        client = confidential_client(cloud=cloud, tenant=tenant, app=app, offline=offline, credential=credential)
        # msal's flow is a dict it reads; a copy for each credential keeps a refused attempt from touching the next.
        return _call(
            "redeeming the authorization code", client.acquire_token_by_auth_code_flow, dict(flow), auth_response
        )

    try:
        result, refused = with_credentials(app, redeem)
    except ValueError:
        raise IdTokenInvalid("The sign-in answer does not belong to this flow (state mismatch)") from None
    except RuntimeError:
        # msal checks the nonce and raises RuntimeError when it differs.
        raise IdTokenInvalid("The id_token's nonce does not match this flow") from None
    token = _token_result(result, refused)
    # msal sends the SHA-256 of the flow's nonce, so that is what the id_token carries.
    nonce = hashlib.sha256(str(flow.get("nonce", "")).encode("ascii")).hexdigest()
    claims = id_token_verify(cloud=cloud, client_id=app.client_id, id_token=token.id_token, nonce=nonce)
    return TokenResult(
        access_token=token.access_token,
        refresh_token=token.refresh_token,
        expires_at=token.expires_at,
        scopes=token.scopes,
        id_token=token.id_token,
        id_token_claims=claims,
        refused=refused,
    )


def refresh_token_redeem(
    *,
    cloud: Cloud,
    app: AppCredential,
    tenant: str,
    refresh_token: str,
    scopes: list[str],
    home_tenant: bool = True,
) -> TokenResult:
    """Redeem a refresh token for `scopes` in `tenant`: the TokenResult, whose new `refresh_token` the caller must
    keep (Entra rotates it), with the credentials refused on the way (`refused`). Raises a typed error."""

    def redeem(credential: Credential) -> dict[str, Any]:
        # Entra authenticates the client before it reads the refresh token: a refused credential spends no token.
        client = confidential_client(cloud=cloud, tenant=tenant, app=app, credential=credential)
        return _call(
            "redeeming the refresh token",
            client.acquire_token_by_refresh_token,
            refresh_token,
            scopes,
            home_tenant=home_tenant,
            partner_center=any(s.startswith(cloud.partner_center_resource + "/") for s in scopes),
        )

    result, refused = with_credentials(app, redeem)
    return _token_result(result, refused)


def client_credentials_token(*, cloud: Cloud, app: AppCredential, credential: Credential, resource: str) -> str:
    """An app-only access token for `resource` (its `/.default`) in the app's own tenant, signed in with exactly
    `credential` (no fallback: this is the probe of one credential). Raises IdentityMisconfigured (no tenant, an
    unreadable credential) or a typed error for Microsoft's answer."""
    if not app.tenant_id:
        raise IdentityMisconfigured(
            "The tenant the app is registered in is not known: set CPV_TENANT_ID (or CPV_STAFF_TENANT_ID)"
        )
    client = confidential_client(cloud=cloud, tenant=app.tenant_id, app=app, offline=False, credential=credential)
    result = _call(
        "asking for an app-only token",
        client.acquire_token_for_client,
        [f"{resource.rstrip('/')}/.default"],
        partner_center=False,
    )
    return str(result.get("access_token", ""))


# --- id_token verification ------------------------------------------------------------------------


class _JwksCache:
    """Signing keys per JWKS URI, refreshed when a token names a key id we have not seen, but at most once every
    `refetch_every` seconds per URI: tokens with made-up key ids cannot make the product hammer the keys endpoint."""

    def __init__(self, ttl: float = 3600, refetch_every: float = 60) -> None:
        self.ttl = ttl
        self.refetch_every = refetch_every
        self._lock = threading.Lock()
        self._keys: dict[str, tuple[float, dict[str, Any]]] = {}

    def key(self, jwks_uri: str, kid: str) -> Any:
        with self._lock:
            cached = self._keys.get(jwks_uri)
        fetched_at, keys = cached or (0.0, {})
        age = time.monotonic() - fetched_at
        if cached is None or (kid not in keys and age > self.refetch_every) or age > self.ttl:
            keys = self._fetch(jwks_uri)
            with self._lock:
                self._keys[jwks_uri] = (time.monotonic(), keys)
        if kid not in keys:
            raise IdTokenInvalid("The token is signed with a key the authority does not publish")
        return keys[kid]

    @staticmethod
    def _fetch(jwks_uri: str) -> dict[str, Any]:
        try:
            response: requests.Response = http.session().get(jwks_uri, timeout=HTTP_TIMEOUT)
            response.raise_for_status()
            data = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise Transient(f"The authority's signing keys could not be read ({exc.__class__.__name__})") from None
        keys = {}
        for jwk in data.get("keys", []):
            if jwk.get("kid") and jwk.get("kty") == "RSA":
                keys[jwk["kid"]] = jwt.PyJWK(jwk, algorithm="RS256").key
        return keys

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()


JWKS = _JwksCache()
_DISCOVERY: dict[str, dict[str, Any]] = {}


def _discovery(cloud: Cloud, tenant: str = "common") -> dict[str, Any]:
    url = f"{cloud.authority(tenant)}/v2.0/.well-known/openid-configuration"
    cached = _DISCOVERY.get(url)
    if cached:
        return dict(cached)
    try:
        response: requests.Response = http.session().get(url, timeout=HTTP_TIMEOUT)
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise Transient(f"The authority's discovery document could not be read ({exc.__class__.__name__})") from None
    if not isinstance(document, dict) or not isinstance(document.get("jwks_uri"), str):
        raise Transient("The authority's discovery document names no jwks_uri")
    _DISCOVERY[url] = document
    return dict(document)


def tenant_jwks_uri(*, cloud: Cloud, tenant: str) -> str:
    """Where `tenant` publishes its signing keys: the `jwks_uri` of its OpenID discovery document (cached).
    Raises Transient."""
    return str(_discovery(cloud, tenant)["jwks_uri"])


def signing_key(token: str, *, jwks_uri: str, what: str = "The token") -> Any:
    """The published key that signed `token`, as Entra signs (RS256 with a key id), from the keys at `jwks_uri`; the
    claims are still to be checked. Raises IdTokenInvalid (its message starts with `what`) or Transient."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise IdTokenInvalid(f"{what} is not a JWT") from None
    if header.get("alg") != "RS256" or not header.get("kid"):
        raise IdTokenInvalid(f"{what} is not signed with RS256 and a key id, as Entra's tokens are")
    return JWKS.key(jwks_uri, str(header["kid"]))


def id_token_verify(*, cloud: Cloud, client_id: str, id_token: str, nonce: str | None) -> dict[str, Any]:
    """The claims of an id_token after checking signature, `iss`, `aud`, lifetime, `nonce` and `tid`.
    Raises IdTokenInvalid or Transient."""
    if not id_token:
        raise IdTokenInvalid("Microsoft returned no id_token")
    key = signing_key(id_token, jwks_uri=_discovery(cloud)["jwks_uri"], what="The id_token")
    try:
        claims: dict[str, Any] = jwt.decode(
            id_token,
            key=key,
            algorithms=["RS256"],
            audience=client_id,
            options={"require": ["iss", "aud", "exp", "iat", "tid", "oid"], "verify_iss": False},
            leeway=120,
        )
    except jwt.InvalidAudienceError:
        raise IdTokenInvalid("The id_token was issued for another application (aud)") from None
    except jwt.ExpiredSignatureError:
        raise IdTokenInvalid("The id_token has expired (exp)") from None
    except jwt.InvalidSignatureError:
        raise IdTokenInvalid("The id_token's signature does not verify") from None
    except jwt.PyJWTError as exc:
        raise IdTokenInvalid(f"The id_token failed a check ({exc.__class__.__name__})") from None
    try:
        tenant = str(uuid.UUID(str(claims["tid"])))
    except ValueError:
        raise IdTokenInvalid("The id_token's tenant (tid) is not a GUID") from None
    # Multi-tenant tokens: the issuer must name the very tenant the token claims to come from.
    if claims["iss"] != f"{cloud.authority_host}/{tenant}/v2.0":
        raise IdTokenInvalid("The id_token's issuer (iss) does not match its tenant and authority")
    if nonce is not None and claims.get("nonce") != nonce:
        raise IdTokenInvalid("The id_token's nonce does not match this flow")
    return claims


def access_token_claims(access_token: str) -> dict[str, Any]:
    """An access token's claims, unverified (only its resource validates it); {} when unreadable."""
    # It came straight from the token endpoint over TLS; Microsoft's Test-PartnerSecurityRequirement reads `amr` so.
    try:
        claims = jwt.decode(access_token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    return claims if isinstance(claims, dict) else {}


# `amr` values that prove a second factor: `mfa`, and `ngcmfa`, "equivalent to `mfa`" (the access token claims
# reference). `wiaormfa` does not say which of the two happened.
MFA_METHODS = frozenset({"mfa", "ngcmfa"})


def mfa_verdict(claims: dict[str, Any]) -> bool | None:
    """`amr`'s verdict on MFA: True (`mfa`/`ngcmfa`), False (other methods), None when there is no `amr`."""
    amr = claims.get("amr")
    if not isinstance(amr, list) or not amr:
        return None
    return bool(MFA_METHODS & {str(method).lower() for method in amr})


def claims_have_mfa(claims: dict[str, Any]) -> bool:
    """Whether `amr` proves multi-factor authentication (False when it does not, or cannot be read)."""
    return mfa_verdict(claims) is True


def roles_global_admin(role_templates: list[str | None]) -> bool | None:
    """The user's directory role templates' verdict on Global Administrator (as Graph lists them): True or False,
    None when a role came without its template id and Global Administrator is not among the others."""
    if GLOBAL_ADMIN_ROLE in role_templates:
        return True
    return None if None in role_templates else False


def claims_global_admin(claims: dict[str, Any]) -> bool | None:
    """`wids`'s verdict on Global Administrator: True or False, None when the token has no `wids`."""
    wids = claims.get("wids")
    if not isinstance(wids, list):
        return None
    return GLOBAL_ADMIN_ROLE in wids

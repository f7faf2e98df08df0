"""Who is calling: an API key of a registered client, or a client-credentials access token from the vendor's own Entra
tenant issued to a registered client's app; and whether it calls from one of its networks. Every refusal is a
problem document (401, or 403 for a network the client may not call from)."""

from __future__ import annotations

import ipaddress
import logging
import uuid
from datetime import timedelta
from typing import Any

import jwt
from django.conf import settings
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from api.models import ApiClient, ApiKey
from api.problems import Problem, forbidden, unauthenticated
from api.services import KEY_MARK, key_digest
from cpv.ratelimit import client_address
from microsoft import identity

logger = logging.getLogger(__name__)

# A client's and a key's last use is written at most this often: a busy client costs one write a minute, not one
# a request.
LAST_USE_EVERY = timedelta(minutes=1)
CLOCK_SKEW = 120
# Without the idtyp claim (the API's registration did not configure it), a token carrying any of these was issued
# for a signed-in user: the product's own rule, since Microsoft documents idtyp as the way to tell.
USER_CLAIMS = ("scp", "upn", "unique_name", "preferred_username", "amr")


def client_authenticate(request: HttpRequest) -> ApiClient:
    """The registered, unrevoked client behind the request's bearer credential, calling from one of its networks.
    Raises Problem (401 without a usable credential, 403 from another network, 503 when Entra's keys cannot be
    read). The credential itself never reaches a log line or a message."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise unauthenticated(
            "Send the client's API key, or an access token from the vendor's Entra tenant, as "
            "'Authorization: Bearer <credential>'."
        )
    if credential.startswith(KEY_MARK):
        client, key = _by_api_key(credential)
    elif credential.count(".") == 2:
        client, key = _by_entra_token(credential), None
    else:
        raise unauthenticated("The credential is neither an API key of this control panel nor a JWT.")
    _network_check(client, request)
    request.api_key = key  # type: ignore[attr-defined]
    return client


def _by_api_key(credential: str) -> tuple[ApiClient, ApiKey]:
    now = timezone.now()
    key = ApiKey.objects.select_related("client").filter(digest=key_digest(credential)).first()
    if key is None:
        raise unauthenticated("The API key is not one this control panel issued.")
    if key.revoked_at is not None or key.client.revoked_at is not None:
        raise unauthenticated(f"The API key {key.prefix}… is revoked.")
    if key.expires_at is not None and key.expires_at <= now:
        raise unauthenticated(f"The API key {key.prefix}… was replaced and its overlap has ended: use the new key.")
    return key.client, key


def _entra_expected() -> tuple[str, tuple[str, ...]]:
    tenant, audiences = settings.CPV_API_TENANT_ID, settings.CPV_API_AUDIENCES
    if not tenant or not audiences:
        raise unauthenticated(
            "This control panel accepts no Entra tokens: its operator has not set CPV_API_TENANT_ID and "
            "CPV_API_AUDIENCE. Use the client's API key."
        )
    return tenant, audiences


def _by_entra_token(token: str) -> ApiClient:
    """Validation as Microsoft's access-token documentation asks of a web API
    (https://learn.microsoft.com/entra/identity-platform/access-tokens#validate-tokens and
    https://learn.microsoft.com/entra/identity-platform/claims-validation): the signature against the keys named by
    the tenant's OpenID discovery document, the issuer (the vendor's own tenant: `iss` and `tid`), the audience (this
    API, `aud`, in each form Entra emits), the lifetime, that the token is app-only (`idtyp` "app" when the claim is
    present; without it, no claim of a signed-in user), and which application asked (`appid` in v1.0 tokens, `azp`
    in v2.0) against the registered client."""
    tenant, audiences = _entra_expected()
    cloud = settings.CPV_CLOUD_CONFIG
    try:
        key = identity.signing_key(
            token, jwks_uri=identity.tenant_jwks_uri(cloud=cloud, tenant=tenant), what="The bearer token"
        )
    except identity.IdTokenInvalid as exc:
        raise unauthenticated(f"{exc}.") from None
    except identity.Transient:
        problem = Problem(503, "keys-unavailable", "Try again", "Entra's signing keys could not be read just now.")
        problem.headers["Retry-After"] = "30"
        raise problem from None
    claims = _decode(token, key)
    if _audience_form(claims.get("aud")) not in audience_forms(audiences):
        raise unauthenticated("The token was issued for another resource (aud), not this API.")
    issuers = {f"{cloud.authority_host}/{tenant}/v2.0", f"{cloud.v1_issuer_host}/{tenant}/"}
    if str(claims.get("tid", "")).lower() != tenant or claims.get("iss") not in issuers:
        raise unauthenticated("The token was not issued by the vendor's own Entra tenant (iss, tid).")
    if "idtyp" in claims and claims["idtyp"] != "app":
        raise unauthenticated("The token is not app-only (idtyp): a client system uses its own token, not a user's.")
    user_claim = next((claim for claim in USER_CLAIMS if claim in claims), None)
    if user_claim is not None:
        raise unauthenticated(f"The token was issued for a signed-in user ({user_claim}); a system uses its own.")
    app_id = str(claims.get("appid") or claims.get("azp") or "")
    try:
        parsed = uuid.UUID(app_id)
    except ValueError:
        raise unauthenticated("The token names no application (appid, azp).") from None
    client = ApiClient.objects.filter(entra_app_id=parsed, revoked_at__isnull=True).first()
    if client is None:
        raise unauthenticated(f"The application {parsed} is not a registered client, or it was revoked.")
    return client


def _audience_form(value: object) -> str | None:
    """One `aud` value compared as Entra means it: a client id in any case, a URI with or without a trailing slash."""
    if not isinstance(value, str):
        return None
    try:
        return str(uuid.UUID(value)) if len(value) == 36 else value.rstrip("/")
    except ValueError:
        return value.rstrip("/")


def audience_forms(audiences: tuple[str, ...]) -> set[str | None]:
    """Each form of `aud` Entra may put in a token for this API: every configured Application ID URI (with or without
    a trailing slash) and client id, and the client id inside an `api://{client id}` URI (optional-claims-reference:
    "any appID URI, with or without a trailing slash, and the client ID of the resource")."""
    forms = {_audience_form(a) for a in audiences}
    for audience in audiences:
        if audience.lower().startswith("api://"):
            forms.add(_audience_form(audience[len("api://") :].rstrip("/")))
    forms.discard(None)
    return forms


def _decode(token: str, key: Any) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key=key,
            algorithms=["RS256"],
            options={"require": ["iss", "aud", "exp", "tid"], "verify_iss": False, "verify_aud": False},
            leeway=CLOCK_SKEW,
        )
    except jwt.ExpiredSignatureError:
        raise unauthenticated("The token has expired (exp).") from None
    except jwt.InvalidSignatureError:
        raise unauthenticated("The token's signature does not verify.") from None
    except jwt.PyJWTError as exc:
        raise unauthenticated(f"The token failed a check ({exc.__class__.__name__}).") from None
    return claims


def _network_check(client: ApiClient, request: HttpRequest) -> None:
    if not client.networks:
        return
    address = client_address(request)
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        ip = None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip is None or not any(ip in ipaddress.ip_network(net) for net in client.networks):
        raise forbidden("network-refused", f"This client may not call from {address}: it is not in its networks.")


def client_used(request: HttpRequest, client: ApiClient) -> None:
    """Record the client's (and its key's) last use after an answered request, at most once a minute each: a
    conditional UPDATE, so that two processes do not both write."""
    now = timezone.now()
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USE_EVERY)
    if client.last_used_at is None or client.last_used_at < now - LAST_USE_EVERY:
        ApiClient.objects.filter(stale, pk=client.pk).update(last_used_at=now)
    key: ApiKey | None = getattr(request, "api_key", None)
    if key is not None and (key.last_used_at is None or key.last_used_at < now - LAST_USE_EVERY):
        ApiKey.objects.filter(stale, pk=key.pk).update(last_used_at=now)

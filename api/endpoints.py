"""The token API's endpoints (django-ninja: pydantic schemas in, OpenAPI 3.1 out). Served only by the `api` and `all`
process roles (cpv/urls.py): handing out a token opens the vault, which the web tier may not do."""

from __future__ import annotations

import enum
import logging
import time
import uuid
from datetime import datetime
from typing import Any, Literal

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from ninja import Field, NinjaAPI, Query, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.security import HttpBearer

from api import selectors
from api.authentication import client_authenticate, client_used
from api.models import ApiClient
from api.problems import Problem, conflict, forbidden, invalid, not_found, problem_response, unauthenticated
from api.services import access_token_handed_out
from cpv.ratelimit import allow
from microsoft import identity
from partners.models import Partner
from tokens import access_tokens
from tokens.vault import OpeningRefused, VaultError

logger = logging.getLogger(__name__)

RATE_WINDOW = 60


class ClientAuth(HttpBearer):
    """A registered client's API key or Entra token (api/authentication.py), then the client's rate limit."""

    def __call__(self, request: HttpRequest) -> ApiClient:
        client = client_authenticate(request)
        limit = settings.CPV_API_RATE_LIMIT
        if not allow(scope="api-client", key=str(client.code), limit=limit, window=RATE_WINDOW):
            problem = Problem(
                429, "rate-limited", "Too many requests", f"This client may make {limit} requests a minute."
            )
            problem.headers["Retry-After"] = str(RATE_WINDOW - int(time.time()) % RATE_WINDOW)
            raise problem
        return client

    def authenticate(self, request: HttpRequest, token: str) -> ApiClient | None:  # pragma: no cover - see __call__
        return None


api = NinjaAPI(
    title="Control panel token API",
    version="1",
    description=(
        "Short-lived access tokens for the vendor's own systems, per partner, audience and tenant, and reads of the "
        "partners and customers they serve. Refusals are problem documents (RFC 9457). The API never returns a "
        "refresh token."
    ),
    openapi_url="/schema",
    docs_url=None,
    auth=ClientAuth(),
    urls_namespace="api",
)


class ProblemOut(Schema):
    type: str
    title: str
    status: int
    detail: str
    state: str | None = None


def _problems(*codes: int) -> dict[str, Any]:
    """The refusals an operation may answer, each a problem document."""
    schema = ProblemOut.model_json_schema()
    return {
        "responses": {
            code: {
                "description": "A refusal, said in a problem document (RFC 9457)",
                "content": {"application/problem+json": {"schema": schema}},
            }
            for code in (401, 429, *codes)
        }
    }


@api.exception_handler(Problem)
def _problem(request: HttpRequest, exc: Problem) -> HttpResponse:
    return problem_response(exc, instance=request.path)


@api.exception_handler(ValidationError)
def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    errors = [
        {"where": ".".join(str(part) for part in error.get("loc", ())), "message": str(error.get("msg", ""))}
        for error in exc.errors
    ]
    where = ", ".join(e["where"] for e in errors) or "the request"
    return problem_response(invalid(f"Check {where}.", errors=errors), instance=request.path)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return problem_response(unauthenticated("Send a credential."), instance=request.path)


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    # ninja's own refusals: a body that is not JSON, a method it does not serve.
    status = exc.status_code
    return problem_response(
        Problem(status, "bad-request" if status == 400 else "refused", "The request was refused", str(exc)),
        instance=request.path,
    )


# ----- access tokens ------------------------------------------------------------------------------------------------


class AccessTokenIn(Schema):
    audience: Literal["partner_center", "graph"]
    tenant: uuid.UUID | None = Field(
        None, description="The partner's tenant (the default) or one of its customers' tenants (Graph only)."
    )


class AccessTokenOut(Schema):
    access_token: str
    expires_on: int = Field(description="When the token expires, in seconds since 1970-01-01 UTC.")
    tenant: str
    audience: str
    scopes: list[str]


def _audience_check(client: ApiClient, partner: Partner, body: AccessTokenIn) -> tuple[str, str | None]:
    """The token service's audience and tenant (None: the partner's own) for the request, or a refusal."""
    own = body.tenant is None or body.tenant == partner.tenant_id
    if body.audience == "partner_center":
        if not own:
            raise invalid("Partner Center tokens are issued in the partner's own tenant: leave out `tenant`.")
        needed, audience = ApiClient.Audience.PARTNER_CENTER, access_tokens.PARTNER_CENTER
    else:
        needed = ApiClient.Audience.GRAPH_PARTNER if own else ApiClient.Audience.GRAPH_CUSTOMERS
        audience = access_tokens.GRAPH
    if needed not in client.audiences:
        raise forbidden("audience-not-allowed", f"This client may not ask for {needed.label}.")
    return audience, None if own else str(body.tenant)


def _partner_check(partner: Partner) -> None:
    if partner.status != Partner.Status.ACTIVE:
        kind = "consent-needs-renewing" if partner.status == Partner.Status.RECONSENT_NEEDED else "partner-not-active"
        raise conflict(kind, f"Partner {partner.code} is {partner.get_status_display().lower()}.", state=partner.status)
    if partner.mfa_compliant is False:
        raise conflict(
            "mfa-not-compliant",
            f"Partner Center's last verdict on partner {partner.code}'s MFA was false: no token until it holds.",
            state="mfa_not_compliant",
        )


def _customer_check(partner: Partner, tenant: str) -> None:
    customer = selectors.customer_in_tenant(partner, tenant)
    if customer is None:
        raise not_found(f"No present customer {tenant} of partner {partner.code}.")
    refusal = selectors.customer_refusal(customer)
    if refusal is not None:
        kind, state, detail = refusal
        raise conflict(kind, detail, state=state)


def _token_get(partner: Partner, audience: str, tenant: str | None) -> access_tokens.AccessToken:
    """The token service's answer, or its failure as a refusal."""
    try:
        return access_tokens.access_token_get(partner=partner, audience=audience, tenant=tenant)
    except access_tokens.PermissionMissing:
        raise conflict(
            "permission-missing",
            f"Partner {partner.code}'s consent grants nothing for {audience}: it must consent again.",
            state="permission_missing",
        ) from None
    except access_tokens.TokenUnavailable as exc:
        partner.refresh_from_db(fields=["status"])
        raise conflict("token-unavailable", str(exc), state=partner.status) from None
    except (identity.ReconsentRequired, identity.MfaRequired, identity.ConditionalAccessBlocked) as exc:
        raise conflict(
            "consent-needs-renewing",
            f"Partner {partner.code}'s consent no longer works ({exc.kind}): it must consent again.",
            state=Partner.Status.RECONSENT_NEEDED,
        ) from None
    except (identity.NoAccessToTenant, identity.AppNotConsentedInTenant) as exc:
        raise conflict(
            "no-tenant-access", f"Microsoft refused a token in tenant {tenant} ({exc.kind}).", state=exc.kind
        ) from None
    except (identity.IdentityError, VaultError, OpeningRefused) as exc:
        kind = getattr(exc, "kind", exc.__class__.__name__)
        logger.warning("no access token for partner %s: %s", partner.code, kind)
        problem = Problem(503, "unavailable", "Try again later", f"No token could be obtained just now ({kind}).")
        problem.headers["Retry-After"] = str(int(getattr(exc, "retry_after", None) or 30))
        raise problem from None


def _scopes(token: access_tokens.AccessToken, partner: Partner, audience: str) -> list[str]:
    """What the token grants (`scp`, read from the token the service just obtained), else the scope asked for."""
    scp = identity.access_token_claims(token.token).get("scp")
    if isinstance(scp, str) and scp.strip():
        return scp.split()
    return [access_tokens.scope_for(partner, audience)]


@api.post(
    "/partners/{code}/access-tokens",
    response={200: AccessTokenOut},
    openapi_extra=_problems(400, 403, 404, 409, 422, 503),
    summary="Hand out an access token for a partner",
    operation_id="access_token_create",
)
def access_token_create(request: HttpRequest, code: uuid.UUID, body: AccessTokenIn) -> HttpResponse:
    """An access token to Partner Center or Microsoft Graph in the partner's tenant, or to Graph in one of its
    customers' tenants, from the control panel's cached, locked token service. Never a refresh token."""
    client: ApiClient = request.auth  # type: ignore[attr-defined]
    partner = selectors.partner_for_client(client, code)
    audience, tenant = _audience_check(client, partner, body)
    _partner_check(partner)
    if tenant is not None:
        _customer_check(partner, tenant)
    token = _token_get(partner, audience, tenant)
    scopes = _scopes(token, partner, audience)
    access_token_handed_out(
        client=client, partner=partner, audience=body.audience, tenant=token.tenant, scopes=" ".join(scopes)
    )
    client_used(request, client)
    out = AccessTokenOut(
        access_token=token.token,
        expires_on=int(token.expires_at),
        tenant=token.tenant,
        audience=body.audience,
        scopes=scopes,
    )
    response = api.create_response(request, out.model_dump(), status=200)
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    return response


# ----- reads --------------------------------------------------------------------------------------------------------


class CoverageOut(Schema):
    customers: int
    consented: int
    failed: int


class PartnerOut(Schema):
    code: uuid.UUID
    name: str
    tenant_id: uuid.UUID | None
    status: str
    token_health: str
    mfa_compliant: bool | None = Field(description="Partner Center's last MFA verdict; null when never asked.")
    mfa_checked_at: datetime | None
    coverage: CoverageOut


class PartnerPage(Schema):
    items: list[PartnerOut]
    next_cursor: str | None = Field(description="Give it as `cursor` for the next page; null on the last page.")


class PartnerFilters(Schema):
    state: Partner.Status | None = None
    cursor: str | None = Field(None, max_length=2600)
    limit: int = Field(selectors.PAGE_SIZE, ge=1, le=selectors.MAX_PAGE_SIZE)


def _known_query(request: HttpRequest, filters: type[Schema]) -> None:
    """A parameter the operation does not know is refused, not ignored: a misspelt filter would list everything."""
    unknown = sorted(set(request.GET) - set(filters.model_fields))
    if unknown:
        raise invalid(f"Unknown query parameter {unknown[0]!r}; this list takes {', '.join(filters.model_fields)}.")


@api.get(
    "/partners",
    response={200: PartnerPage},
    openapi_extra=_problems(422),
    summary="The partners this client may see",
    operation_id="partners_list",
)
def partners_list(request: HttpRequest, filters: Query[PartnerFilters]) -> dict[str, Any]:
    client: ApiClient = request.auth  # type: ignore[attr-defined]
    _known_query(request, PartnerFilters)
    state = filters.state.value if filters.state else ""
    rows, next_cursor = selectors.partner_rows(client, state=state, cursor=filters.cursor or "", limit=filters.limit)
    client_used(request, client)
    return {
        "items": [
            {
                "code": row.partner.code,
                "name": row.partner.name,
                "tenant_id": row.partner.tenant_id,
                "status": row.partner.status,
                "token_health": row.token_health,
                "mfa_compliant": row.partner.mfa_compliant,
                "mfa_checked_at": row.partner.mfa_checked_at,
                "coverage": {
                    "customers": row.coverage.customers,
                    "consented": row.coverage.consented,
                    "failed": row.coverage.failed,
                },
            }
            for row in rows
        ],
        "next_cursor": next_cursor or None,
    }


CustomerState = enum.StrEnum("CustomerState", {state: state for state in selectors.CUSTOMER_STATES})  # type: ignore[misc]


class CustomerOut(Schema):
    tenant_id: uuid.UUID
    company_name: str
    domain: str
    consent: str = Field(description="ApplicationConsent: pending, applied, failed or removed.")
    verification: str = Field(
        description="What reading the tenant found: verified, missing, drifted, "
        "unverifiable, or empty before the first reading."
    )
    verified_at: datetime | None
    gdap: str = Field(description="The GDAP pre-flight's verdict; empty before it first ran.")


class CustomerPageOut(Schema):
    items: list[CustomerOut]
    next_cursor: str | None


class CustomerFilters(Schema):
    state: CustomerState | None = None
    cursor: str | None = Field(None, max_length=2600)
    limit: int = Field(selectors.PAGE_SIZE, ge=1, le=selectors.MAX_PAGE_SIZE)


@api.get(
    "/partners/{code}/customers",
    response={200: CustomerPageOut},
    openapi_extra=_problems(404, 422),
    summary="A partner's customers",
    operation_id="customers_list",
)
def customers_list(request: HttpRequest, code: uuid.UUID, filters: Query[CustomerFilters]) -> dict[str, Any]:
    client: ApiClient = request.auth  # type: ignore[attr-defined]
    _known_query(request, CustomerFilters)
    partner = selectors.partner_for_client(client, code)
    state = filters.state.value if filters.state else ""
    page = selectors.customer_rows(partner, state=state, cursor=filters.cursor or "", limit=filters.limit)
    client_used(request, client)
    items = []
    for customer in page.customers:
        consent = getattr(customer, "application_consent", None)
        items.append(
            {
                "tenant_id": customer.tenant_id,
                "company_name": customer.company_name,
                "domain": customer.domain,
                "consent": consent.status if consent is not None else "pending",
                "verification": consent.proof if consent is not None else "",
                "verified_at": consent.verified_at if consent is not None else None,
                "gdap": consent.access if consent is not None else "",
            }
        )
    return {"items": items, "next_cursor": page.next_cursor or None}

"""What a client may read: the partners it may see (with token health, MFA verdict and coverage) and a partner's
customers, a page at a time by an opaque keyset cursor (never OFFSET, so pages stay stable while rows come and go)."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass

from django.db.models import QuerySet

from api.models import ApiClient
from api.problems import invalid, not_found
from customers.coverage import Coverage
from customers.models import WITHOUT_ACCESS, CustomerConsent
from customers.selectors import PROOF_FILTERS, WITHOUT_ACCESS_STATE, CustomerPage, coverage_for, customer_page
from partners.models import Customer, Partner
from tokens.selectors import token_health_expression

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# The customer list's `state` filter: ApplicationConsent's state, a proof state, or held back by the GDAP pre-flight.
CUSTOMER_STATES = (
    CustomerConsent.Status.PENDING.value,
    CustomerConsent.Status.APPLIED.value,
    CustomerConsent.Status.FAILED.value,
    WITHOUT_ACCESS_STATE,
    *(str(state) for state in PROOF_FILTERS),
)


def visible_partners(client: ApiClient) -> QuerySet[Partner]:
    """The partners `client` may see: all of them or its list, never a deleted one."""
    qs = Partner.objects.filter(deleted_at__isnull=True)
    if not client.all_partners:
        qs = qs.filter(api_clients=client)
    return qs


def partner_for_client(client: ApiClient, code: uuid.UUID) -> Partner:
    """The one place the API finds a partner for a client: a 404 problem for one it may not see, as for none."""
    partner = visible_partners(client).filter(code=code).select_related("token").first()
    if partner is None:
        raise not_found(f"No partner {code} that this client may see.")
    return partner


@dataclass(frozen=True)
class PartnerRow:
    partner: Partner
    token_health: str
    coverage: Coverage


def _cursor(pk: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": pk}).encode()).decode().rstrip("=")


def _after(cursor: str) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        pk = data["after"]
    except (ValueError, TypeError, KeyError):
        raise invalid("The cursor is not one this API gave: start again without it.") from None
    if type(pk) is not int or not 0 < pk < 2**63:
        raise invalid("The cursor is not one this API gave: start again without it.")
    return pk


def partner_rows(
    client: ApiClient, *, state: str = "", cursor: str = "", limit: int = PAGE_SIZE
) -> tuple[list[PartnerRow], str]:
    """A page of the partners the client may see, in a fixed order, and the cursor of the next page ("" at the end);
    in a constant number of queries."""
    qs = visible_partners(client).annotate(health=token_health_expression()).order_by("pk")
    if state:
        qs = qs.filter(status=state)
    if cursor:
        qs = qs.filter(pk__gt=_after(cursor))
    rows = list(qs[: limit + 1])
    page = rows[:limit]
    coverage = coverage_for([p.pk for p in page])
    next_cursor = _cursor(page[-1].pk) if len(rows) > limit else ""
    return [PartnerRow(p, p.health, coverage.get(p.pk, Coverage())) for p in page], next_cursor


def customer_rows(partner: Partner, *, state: str = "", cursor: str = "", limit: int = PAGE_SIZE) -> CustomerPage:
    """A page of the partner's present customers with their consent, proof and GDAP states (customers.selectors'
    keyset pages: a cursor that does not decode starts again at the first page)."""
    return customer_page(partner, state=state, after=cursor, size=limit)


def customer_in_tenant(partner: Partner, tenant: str) -> Customer | None:
    """The partner's present customer in `tenant`, with its ApplicationConsent row, or None."""
    return (
        Customer.objects.filter(partner=partner, tenant_id=tenant, removed_at__isnull=True)
        .select_related("application_consent")
        .first()
    )


def customer_refusal(customer: Customer) -> tuple[str, str, str] | None:
    """Why no Graph token is handed out in this customer's tenant (kind, state, detail), or None: GDAP gives the
    partner no access there, or the vendor's app there is not verified."""
    consent: CustomerConsent | None = getattr(customer, "application_consent", None)
    access = consent.access if consent is not None else ""
    if access in WITHOUT_ACCESS:
        label = CustomerConsent.Access(access).label
        return "no-gdap-access", access, f"The partner has no GDAP access to customer {customer.tenant_id}: {label}."
    proof = consent.proof if consent is not None else ""
    if proof != CustomerConsent.Proof.VERIFIED:
        state = proof or "unverified"
        return (
            "customer-not-verified",
            state,
            f"The vendor's app is not verified in customer {customer.tenant_id} ({state}): a token there would not "
            "carry what it should.",
        )
    return None

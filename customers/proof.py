"""Proof in each customer tenant: read in Graph, as the partner's user in that customer's tenant, whether the vendor's
app is there with the grants ApplicationConsent sent, and repair it when it is not.

Partner Center documents no way to read an ApplicationConsent back, and a 201 or 409 says nothing of what the tenant
holds now. Graph does: the app's service principal (`servicePrincipals(appId='…')`) and its delegated permission
grants (`oauth2PermissionGrants?$filter=clientId eq '…'`), one per resource, whose `scope` is space-separated where
Partner Center's is comma-separated. A customer is `verified` when every resource the consent sent has a grant to all
users holding every scope sent (more scopes are not drift), `missing` when the app is not in the tenant, `drifted`
when a resource lacks scopes, and `unverifiable` (with the reason) when the tenant cannot be read. A throttled or
failing Graph defers the read and changes nothing.

Requests a verification spends, all in Graph: one sign-in in the customer's tenant (cached for the token's life), the
app's service principal, ceil(grants / page) grant pages, and one service principal per resource sent; never a
Partner Center request. A repair is one DELETE and one POST of the ApplicationConsent, then a verification.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from customers import services
from customers.models import WITHOUT_ACCESS, CustomerConsent
from events.models import EventType
from events.services import event_record
from microsoft import graph, identity, permissions
from partners.models import Customer, Partner
from partners.registrations import app_for, cloud_for
from partners.services import audit_record
from tokens.access_tokens import GRAPH, PermissionMissing, TokenUnavailable, access_token_get, cache_forget
from tokens.vault import VaultError

logger = logging.getLogger(__name__)

Proof = CustomerConsent.Proof
Reason = CustomerConsent.ProofReason

# A verified customer is read again about this often, each at its own time of day so the reads spread out.
VERIFY_EVERY = timedelta(days=1)
VERIFY_SPREAD = timedelta(hours=4)
# Repairs (DELETE then POST, then a read) before a customer is left drifted or missing for a person to look at.
MAX_REPAIRS = 3
# When a read that could not be made is tried again, and the least a throttled read waits.
RETRY_UNVERIFIABLE = timedelta(hours=6)
MIN_DEFER = timedelta(minutes=1)
# A repair whose POST Partner Center answered with a 409 is read again this much later, not repaired at once.
REREAD_AFTER_CONFLICT = timedelta(minutes=5)
# A grant to every user of the tenant (the kind ApplicationConsent creates).
ALL_PRINCIPALS = "allprincipals"
_SCOPE_SEPARATORS = re.compile(r"[,\s]+")


def scopes_of(text: str) -> frozenset[str]:
    """The scopes of Partner Center's comma-separated or Graph's space-separated list, in any order and case, with
    stray separators ignored."""
    return frozenset(part.casefold() for part in _SCOPE_SEPARATORS.split(text or "") if part)


class Deferred(Exception):
    """The tenant could not be read now (Graph throttled or failing): try again after `retry_after` seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Finding:
    """What one read of a customer tenant found."""

    proof: str
    reason: str = ""
    drift: list[dict[str, Any]] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)
    message: str = ""
    graph_requests: int = 0

    def detail(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if self.drift:
            found["drift"] = self.drift
        if self.unavailable:
            found["unavailable"] = self.unavailable
        if self.message:
            found["message"] = self.message[:300]
        return found


def sent_grants(state: CustomerConsent) -> dict[str, frozenset[str]]:
    """The scopes the last applied ApplicationConsent sent, per resource app id."""
    return grant_scopes(state.grants or {})


def grant_scopes(grants: dict[str, Any]) -> dict[str, frozenset[str]]:
    """ApplicationConsent's `applicationGrants` as scopes per resource app id."""
    wanted: dict[str, frozenset[str]] = {}
    for grant in grants.get("applicationGrants") or []:
        if isinstance(grant, dict) and grant.get("enterpriseApplicationId"):
            resource = str(grant["enterpriseApplicationId"]).lower()
            wanted[resource] = wanted.get(resource, frozenset()) | scopes_of(str(grant.get("scope", "")))
    return wanted


def compare(
    *,
    wanted: dict[str, frozenset[str]],
    grants: list[graph.PermissionGrant],
    resources: dict[str, graph.ServicePrincipal | None],
    unsent: dict[str, frozenset[str]] | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """The drift (per resource: the scopes sent that no grant to all users holds) and the resources the tenant does
    not have, given the app's grants and each resource's service principal (None: not in the tenant). A resource
    configured but left out of the consent (`unsent`) that the tenant has now is drift too (`unsent`: True)."""
    drift = []
    unavailable = []
    for resource_app, scopes in sorted((unsent or {}).items()):
        resource = resources.get(resource_app)
        if resource is None:
            unavailable.append(resource_app)
        else:
            drift.append(
                {"resource": resource_app, "name": resource.display_name, "missing": sorted(scopes), "unsent": True}
            )
    for resource_app, scopes in sorted(wanted.items()):
        resource = resources.get(resource_app)
        if resource is None:
            unavailable.append(resource_app)
            continue
        held: frozenset[str] = frozenset()
        for grant in grants:
            if grant.resource_id == resource.id and grant.consent_type.casefold() == ALL_PRINCIPALS:
                held |= scopes_of(grant.scope)
        lacking = scopes - held
        if lacking:
            drift.append(
                {
                    "resource": resource_app,
                    "name": resource.display_name,
                    "missing": sorted(lacking),
                    "grant": bool(held),
                }
            )
    return drift, unavailable


def read_tenant(
    *,
    partner: Partner,
    customer: Customer,
    wanted: dict[str, frozenset[str]],
    unsent: dict[str, frozenset[str]] | None = None,
) -> Finding:
    """Read the vendor app's service principal and grants in the customer's tenant and compare them with `wanted`
    (and whether the tenant now has the resources left `unsent`). Raises Deferred when Graph or the sign-in is
    throttled or failing."""
    unsent = unsent or {}
    cloud = cloud_for(partner)
    if not cloud.gdap_api:
        # Without GDAP in that cloud, the partner's user holds no role in its customers' tenants to read them with.
        return Finding(Proof.UNVERIFIABLE, Reason.NOT_AVAILABLE)
    app = app_for(partner)
    try:
        token = access_token_get(partner=partner, audience=GRAPH, tenant=str(customer.tenant_id))
    except identity.AppNotConsentedInTenant as exc:
        # AADSTS65001 / 90099 in the customer's tenant: the app is not (or no longer) consented there.
        return Finding(Proof.MISSING, message=str(exc))
    except identity.NoAccessToTenant as exc:
        return Finding(Proof.UNVERIFIABLE, Reason.NO_ACCESS, message=str(exc))
    except PermissionMissing as exc:
        return Finding(Proof.UNVERIFIABLE, Reason.GRAPH_NOT_GRANTED, message=str(exc))
    except TokenUnavailable as exc:
        return Finding(Proof.UNVERIFIABLE, Reason.NO_TOKEN, message=str(exc))
    except identity.Transient as exc:
        raise Deferred(
            f"the sign-in in the customer's tenant failed for now: {exc}", retry_after=exc.retry_after
        ) from None
    except identity.IdentityError as exc:
        return Finding(Proof.UNVERIFIABLE, Reason.SIGN_IN_REFUSED, message=str(exc))
    except VaultError as exc:
        if exc.transient:
            raise Deferred(f"the vault is unavailable: {exc}") from None
        return Finding(Proof.UNVERIFIABLE, Reason.NO_TOKEN, message=str(exc))
    # The token's `scp` is what the grants give Microsoft Graph in this tenant now: scopes missing there are drift
    # whether or not what is left lets Graph be read (Directory.Read.All taken out refuses the reads below).
    held = token_scopes(token.token)
    lacking = wanted.get(services.GRAPH_APP_ID, frozenset()) - held if held is not None else frozenset()
    if lacking:
        name = permissions.API_NAMES[permissions.GRAPH]
        drift = [{"resource": services.GRAPH_APP_ID, "name": name, "missing": sorted(lacking), "grant": bool(held)}]
        return Finding(Proof.DRIFTED, drift=drift)
    client = graph.GraphClient(base_url=cloud.graph_url, access_token=token.token)
    try:
        principal = client.service_principal(app.client_id)
        if principal is None:
            return Finding(Proof.MISSING, graph_requests=client.requests)
        grants = client.permission_grants(principal.id)
        resources = {
            resource_app: client.service_principal(resource_app) for resource_app in sorted({*wanted, *unsent})
        }
    except graph.GraphError as exc:
        if exc.transient:
            raise Deferred(f"Microsoft Graph: {exc}", retry_after=exc.retry_after) from None
        reason = Reason.GRAPH_REFUSED if exc.status in (401, 403) else Reason.GRAPH_FAILED
        return Finding(Proof.UNVERIFIABLE, reason, message=str(exc), graph_requests=client.requests)
    drift, unavailable = compare(wanted=wanted, grants=grants, resources=resources, unsent=unsent)
    return Finding(
        Proof.DRIFTED if drift else Proof.VERIFIED,
        drift=drift,
        unavailable=unavailable,
        graph_requests=client.requests,
    )


def token_scopes(access_token: str) -> frozenset[str] | None:
    """The delegated scopes an access token carries (`scp`), or None when it names none (opaque, or app-only)."""
    claims = identity.access_token_claims(access_token)
    scp = claims.get("scp")
    return scopes_of(scp) if isinstance(scp, str) else None


def _next_read(now: datetime, proof: str, customer_id: int) -> datetime:
    """A verified customer is read again a day later, less a share of VERIFY_SPREAD of its own (the same each day), so
    customers verified together spread out; any other finding in RETRY_UNVERIFIABLE."""
    if proof == Proof.VERIFIED:
        share = (customer_id * 2654435761 % 997) / 997
        return now + VERIFY_EVERY - VERIFY_SPREAD * share
    return now + RETRY_UNVERIFIABLE


@dataclass(frozen=True)
class Outcome:
    """What verifying (and perhaps repairing) one customer came to."""

    state: CustomerConsent
    deferred: bool = False
    repaired: int = 0
    graph_requests: int = 0


def consent_verify(
    *,
    customer_id: int,
    repair: bool = True,
    actor: Any = None,
    sleep: Callable[[float], None] | None = None,
) -> Outcome:
    """Read one customer's tenant and store what it found; when `repair`, a drifted or missing consent is deleted and
    created again and read again, up to MAX_REPAIRS times since it was last verified (each audited). A customer
    without an applied consent is left as it is. Raises Customer.DoesNotExist; never CallFailed (a repair that
    fails is recorded on the row as any ApplicationConsent failure)."""
    customer = Customer.objects.select_related("partner").get(pk=customer_id)
    state, _ = CustomerConsent.objects.get_or_create(customer=customer)
    if (
        customer.removed_at is not None
        or state.status != CustomerConsent.Status.APPLIED
        or customer.partner.offboarding_started_at is not None
    ):
        return Outcome(state)
    repaired = 0
    spent = 0
    while True:
        outcome = _verify_once(customer=customer, state=state)
        spent += outcome.graph_requests
        state = outcome.state
        if outcome.deferred or not repair or state.proof not in (Proof.MISSING, Proof.DRIFTED):
            return Outcome(state, deferred=outcome.deferred, repaired=repaired, graph_requests=spent)
        if state.repairs >= MAX_REPAIRS:
            logger.warning(
                "customer %s of partner %s: still %s after %d repairs; left for a person",
                customer.tenant_id,
                customer.partner.code,
                state.proof,
                state.repairs,
            )
            return Outcome(state, repaired=repaired, graph_requests=spent)
        sent = consent_reset(customer_id=customer.pk, actor=actor, reason=state.proof, sleep=sleep)
        if not sent:
            state.refresh_from_db()
            return Outcome(state, repaired=repaired, graph_requests=spent)
        repaired += 1
        state.refresh_from_db()
        if sent == services.ALREADY_PRESENT:
            # Partner Center answered the POST with a 409: its record of the consent outlived the DELETE, and another
            # POST now would get the same answer. The tenant is read again later, and repaired only if still wrong.
            CustomerConsent.objects.filter(pk=state.pk).update(proof_due_at=timezone.now() + REREAD_AFTER_CONFLICT)
            state.refresh_from_db()
            return Outcome(state, repaired=repaired, graph_requests=spent)


# A customer's proof that moved to one of these is announced (events/); `unverifiable` is the reader's own trouble.
_PROOF_EVENTS: dict[str, EventType] = {
    Proof.VERIFIED: EventType.CUSTOMER_VERIFIED,
    Proof.DRIFTED: EventType.CUSTOMER_DRIFTED,
    Proof.MISSING: EventType.CUSTOMER_MISSING,
}


def _verify_once(*, customer: Customer, state: CustomerConsent) -> Outcome:
    now = timezone.now()
    partner = customer.partner
    if state.access in WITHOUT_ACCESS:
        finding = Finding(Proof.UNVERIFIABLE, Reason.NO_GDAP_ACCESS)
    else:
        try:
            sent = sent_grants(state)
            configured = grant_scopes(services.desired_grants())
            unsent = {app_id: scopes for app_id, scopes in configured.items() if app_id not in sent}
            finding = read_tenant(partner=partner, customer=customer, wanted=sent, unsent=unsent)
        except Deferred as exc:
            wait = max(MIN_DEFER.total_seconds(), exc.retry_after or 0.0)
            CustomerConsent.objects.filter(pk=state.pk).update(proof_due_at=now + timedelta(seconds=wait))
            state.refresh_from_db()
            logger.info("customer %s: verification deferred %.0f s: %s", customer.tenant_id, wait, exc)
            return Outcome(state, deferred=True)
    before = state.proof
    with transaction.atomic():
        state = CustomerConsent.objects.select_for_update().get(pk=state.pk)
        state.proof = finding.proof
        state.proof_reason = finding.reason
        state.proof_detail = finding.detail()
        state.proof_checked_at = now
        state.proof_due_at = _next_read(now, finding.proof, customer.pk)
        fields = ["proof", "proof_reason", "proof_detail", "proof_checked_at", "proof_due_at", "updated_at"]
        if finding.proof == Proof.VERIFIED:
            state.verified_at = now
            state.repairs = 0
            fields += ["verified_at", "repairs"]
        state.save(update_fields=fields)
        if before != finding.proof:
            announced = _PROOF_EVENTS.get(finding.proof)
            if announced is not None:
                event_record(
                    type=announced,
                    partner=partner,
                    customer_tenant_id=customer.tenant_id,
                    detail={
                        "previous_proof": before,
                        **({"drift": finding.drift} if finding.drift else {}),
                    },
                )
            audit_record(
                actor=None,
                action="customer.consent_proved",
                partner=partner,
                detail={
                    "customer": str(customer.tenant_id),
                    "before": before,
                    "proof": finding.proof,
                    **({"reason": finding.reason} if finding.reason else {}),
                    **({"drift": finding.drift} if finding.drift else {}),
                },
            )
    return Outcome(state, graph_requests=finding.graph_requests)


def consent_reset(
    *, customer_id: int, actor: Any = None, reason: str = "", sleep: Callable[[float], None] | None = None
) -> str:
    """Delete the vendor app's ApplicationConsent in one customer and create it again (counted in `repairs`,
    audited): what the POST came to when Partner Center took it (services.CONSENTED, or ALREADY_PRESENT for a 409),
    else "". A failure is recorded on the row as for any ApplicationConsent."""
    customer = Customer.objects.select_related("partner").get(pk=customer_id)
    CustomerConsent.objects.filter(customer=customer).update(repairs=F("repairs") + 1)
    kwargs: dict[str, Any] = {"sleep": sleep} if sleep is not None else {}
    outcome = ""
    try:
        state, outcome = services.consent_reapply(customer_id=customer.pk, reset=True, **kwargs)
    except services.CallFailed as exc:
        logger.warning("customer %s: the repair will be tried again: %s", customer.tenant_id, exc)
        ok = False
    else:
        ok = outcome in (services.CONSENTED, services.ALREADY_PRESENT)
        # A token cached for the tenant carries the grants as they were: the next read takes a fresh one.
        cache_forget(partner_id=customer.partner_id, tenant=str(customer.tenant_id))
        if ok:
            CustomerConsent.objects.filter(pk=state.pk).update(proof_due_at=timezone.now())
    audit_record(
        actor=actor,
        action="customer.consent_reset",
        partner=customer.partner,
        detail={"customer": str(customer.tenant_id), "reason": reason or "asked", "ok": ok},
    )
    return outcome if ok else ""


@dataclass
class VerifyTally:
    """A run's counts: each customer once, by what its last read found (`repaired` counts the resets sent)."""

    verified: int = 0
    missing: int = 0
    drifted: int = 0
    unverifiable: int = 0
    deferred: int = 0
    not_applied: int = 0
    repaired: int = 0
    graph_requests: int = 0

    def counts(self) -> dict[str, int]:
        return dict(vars(self))


def customers_to_verify(*, partner_id: int | None = None, due_only: bool = True) -> list[int]:
    """Ids of present customers with an applied consent, of active partners (one partner's if given): every one, or
    those whose next read is due (or never set)."""
    now = timezone.now()
    found = CustomerConsent.objects.filter(
        status=CustomerConsent.Status.APPLIED,
        customer__removed_at__isnull=True,
        customer__partner__status=Partner.Status.ACTIVE,
        customer__partner__offboarding_started_at__isnull=True,
    )
    if partner_id is not None:
        found = found.filter(customer__partner_id=partner_id)
    if due_only:
        found = found.filter(Q(proof_due_at__isnull=True) | Q(proof_due_at__lte=now))
    return list(found.order_by("proof_due_at", "customer_id").values_list("customer_id", flat=True))


def customers_drifted() -> list[int]:
    """Ids of every present customer, of active partners not being offboarded, whose last read found it drifted or
    missing."""
    return list(
        CustomerConsent.objects.filter(
            status=CustomerConsent.Status.APPLIED,
            proof__in=[Proof.DRIFTED, Proof.MISSING],
            customer__removed_at__isnull=True,
            customer__partner__status=Partner.Status.ACTIVE,
            customer__partner__offboarding_started_at__isnull=True,
        )
        .order_by("customer_id")
        .values_list("customer_id", flat=True)
    )


def verify_claim(*, limit: int, hold: timedelta) -> list[int]:
    """Up to `limit` customers due for a read, their next read pushed `hold` ahead so the next sweep does not queue
    them again while this one's work waits (the read sets its own next time)."""
    ids = customers_to_verify(due_only=True)[:limit]
    CustomerConsent.objects.filter(customer_id__in=ids).update(proof_due_at=timezone.now() + hold)
    return ids


def consents_verify(
    *,
    customer_ids: list[int],
    repair: bool = True,
    unread_only: bool = False,
    actor: Any = None,
    sleep: Callable[[float], None] | None = None,
) -> VerifyTally:
    """Verify (and, when `repair`, repair) each given customer; with `unread_only`, only those not read since their
    consent was last applied. Returns the VerifyTally."""
    tally = VerifyTally()
    if unread_only:
        customer_ids = list(
            CustomerConsent.objects.filter(customer_id__in=customer_ids, proof="")
            .order_by("customer_id")
            .values_list("customer_id", flat=True)
        )
    for customer_id in customer_ids:
        try:
            outcome = consent_verify(customer_id=customer_id, repair=repair, actor=actor, sleep=sleep)
        except Customer.DoesNotExist:
            continue
        tally.repaired += outcome.repaired
        tally.graph_requests += outcome.graph_requests
        if outcome.deferred:
            tally.deferred += 1
        elif outcome.state.status != CustomerConsent.Status.APPLIED:
            tally.not_applied += 1
        elif outcome.state.proof:
            setattr(tally, outcome.state.proof, getattr(tally, outcome.state.proof) + 1)
    return tally


# What staff can ask for one customer (a support call is about one customer).
VERIFY = "verify"
REAPPLY = "reapply"
RESET = "reset"
CUSTOMER_ACTIONS = {
    VERIFY: "Verify in the tenant",
    REAPPLY: "Apply again",
    RESET: "Reset (remove and apply)",
}


def customer_act(*, customer_id: int, action: str) -> Outcome:
    """One customer, as staff asked: VERIFY reads its tenant (no repair), REAPPLY sends ApplicationConsent again,
    RESET deletes it and sends it again; both then read the tenant. Raises ValueError for another action,
    Customer.DoesNotExist, services.CallFailed (transient: to retry)."""
    if action not in CUSTOMER_ACTIONS:
        raise ValueError(f"unknown customer action {action!r}")
    if action == REAPPLY:
        state, _ = services.consent_reapply(customer_id=customer_id)
        customer = state.customer
        cache_forget(partner_id=customer.partner_id, tenant=str(customer.tenant_id))
    elif action == RESET:
        consent_reset(customer_id=customer_id, reason="asked by staff")
    return consent_verify(customer_id=customer_id, repair=False)

"""A partner's customers (synced from Partner Center) and the vendor app's ApplicationConsent in each. Every call
passes the shared limiter, keeps its MS-RequestId across retries and carries the run's MS-CorrelationId."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from customers import access
from customers.coverage import coverage_consent_changed, coverage_recount
from customers.models import WITHOUT_ACCESS, CustomerConsent
from events.models import EventType
from events.services import event_record
from microsoft import identity, partner_center, permissions
from microsoft.retrying import backoff_delay
from microsoft.throttle import Limiter, ThrottleTimeout, limiter_for
from partners.models import Customer, Partner
from partners.registrations import app_for, cloud_for
from partners.services import audit_record
from tokens.access_tokens import PARTNER_CENTER, TokenUnavailable, access_token_get, cache_forget
from tokens.failures import partner_mfa_note, partner_mfa_refused
from tokens.vault import VaultError

logger = logging.getLogger(__name__)

T = TypeVar("T")
ErrorKind = CustomerConsent.ErrorKind

PAGE_SIZE = 500
# In-process attempts of one call before the caller (a task) reschedules it.
CALL_ATTEMPTS = 4
# How long one worker holds a customer's ApplicationConsent before another may take it over.
LEASE = timedelta(minutes=5)
# A Retry-After longer than this is not waited out in-process.
MAX_INLINE_WAIT = 60.0


class CallFailed(Exception):
    """A Partner Center call failed after its in-process attempts: `transient` (retry later), `mfa_required` (900421),
    `kind` (a CustomerConsent.ErrorKind)."""

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        retry_after: float | None = None,
        mfa_required: bool = False,
        kind: str = ErrorKind.OTHER,
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after
        self.mfa_required = mfa_required
        self.kind = kind


# The clients' errors name their kind (`kind`); where a name differs from the stored vocabulary, this says which.
_KIND_NAMES = {"transient": ErrorKind.UNAVAILABLE, "misconfigured": ErrorKind.INVALID_CLIENT}


def error_kind_of(exc: Exception) -> str:
    """A client's error as a CustomerConsent.ErrorKind."""
    if isinstance(exc, ThrottleTimeout):
        return ErrorKind.THROTTLED
    if isinstance(exc, TokenUnavailable):
        return ErrorKind.NO_TOKEN
    if isinstance(exc, VaultError):
        return ErrorKind.UNAVAILABLE if exc.transient else ErrorKind.OTHER
    kind = getattr(exc, "kind", "")
    kind = _KIND_NAMES.get(kind, kind)
    if kind in ErrorKind.values:
        return kind
    if isinstance(exc, partner_center.PartnerCenterError) and exc.status == 400:
        return ErrorKind.BAD_REQUEST
    return ErrorKind.OTHER


def _with_retries(
    call: Callable[[partner_center.PartnerCenterClient], T],
    *,
    client: Callable[[bool], partner_center.PartnerCenterClient],
    limiter: Limiter | None,
    sleep: Callable[[float], None],
    what: str,
    partner: Partner,
    request_id: str = "",
) -> T:
    """Run one logical call with bounded retries (429 pauses the shared limiter, 5xx backs off, a non-MFA 401 gets one
    fresh token), each attempt a limiter slot for `request_id`. Raises CallFailed."""
    fresh_token = False
    pc = client(False)
    for attempt in range(1, CALL_ATTEMPTS + 1):
        if limiter is not None:
            try:
                limiter.acquire(timeout=MAX_INLINE_WAIT * 2, request_id=request_id)
            except ThrottleTimeout as exc:
                raise CallFailed(f"{what}: {exc}", transient=True, kind=error_kind_of(exc)) from None
        try:
            result = call(pc)
        except partner_center.MfaRequired as exc:
            raise CallFailed(f"{what}: {exc}", transient=False, mfa_required=True, kind=error_kind_of(exc)) from None
        except partner_center.Throttled as exc:
            wait = exc.retry_after if exc.retry_after is not None else backoff_delay(attempt=attempt)
            logger.warning("%s: throttled by Partner Center, pausing every worker for %.1f s", what, wait)
            if limiter is not None:
                limiter.pause(wait)
            if attempt == CALL_ATTEMPTS or wait > MAX_INLINE_WAIT:
                raise CallFailed(f"{what}: {exc}", transient=True, retry_after=wait, kind=error_kind_of(exc)) from None
            if limiter is None:
                sleep(wait)
        except partner_center.Transient as exc:
            if attempt == CALL_ATTEMPTS:
                raise CallFailed(
                    f"{what}: {exc} (after {attempt} attempts)", transient=True, kind=error_kind_of(exc)
                ) from None
            sleep(backoff_delay(attempt=attempt, base=1.0))
        except partner_center.Unauthorized as exc:
            if fresh_token:
                raise CallFailed(f"{what}: {exc}", transient=False, kind=error_kind_of(exc)) from None
            # The cached access token may have been revoked or expired early: get a new one, once.
            fresh_token = True
            pc = client(True)
        except partner_center.PartnerCenterError as exc:
            raise CallFailed(f"{what}: {exc}", transient=False, kind=error_kind_of(exc)) from None
        else:
            partner_mfa_note(partner=partner, compliant=pc.mfa_compliant)
            return result
    raise CallFailed(f"{what}: no attempt left", transient=True, kind=ErrorKind.UNAVAILABLE)


def _client_factory(partner: Partner, correlation_id: str) -> Callable[[bool], partner_center.PartnerCenterClient]:
    def make(fresh: bool) -> partner_center.PartnerCenterClient:
        if fresh:
            cache_forget(partner_id=partner.pk)
        try:
            token = access_token_get(partner=partner, audience=PARTNER_CENTER)
        except TokenUnavailable as exc:
            raise CallFailed(str(exc), transient=False, kind=error_kind_of(exc)) from None
        except identity.IdentityError as exc:
            raise CallFailed(f"no access token: {exc}", transient=not exc.permanent, kind=error_kind_of(exc)) from None
        except VaultError as exc:
            raise CallFailed(f"no access token: {exc}", transient=exc.transient, kind=error_kind_of(exc)) from None
        return partner_center.PartnerCenterClient(
            base_url=cloud_for(partner).partner_center_url, access_token=token.token, correlation_id=correlation_id
        )

    return make


# --- customer sync --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncResult:
    partner_id: int
    listed: int
    created: int
    updated: int
    removed: int
    correlation_id: str


def customers_sync(
    *, partner_id: int, correlation_id: str | None = None, sleep: Callable[[float], None] = time.sleep
) -> SyncResult:
    """Page through the partner's customers, upsert them and mark the missing ones removed: the SyncResult. Raises
    CallFailed, having written nothing (a partial listing removes no one)."""
    started = timezone.now()
    correlation_id = correlation_id or str(uuid.uuid4())
    partner = Partner.objects.get(pk=partner_id)
    if partner.status != Partner.Status.ACTIVE:
        raise CallFailed(
            f"partner {partner.code} is {partner.get_status_display().lower()}",
            transient=False,
            kind=ErrorKind.PARTNER_INACTIVE,
        )
    try:
        records = _with_retries(
            lambda pc: list(pc.customers(page_size=PAGE_SIZE)),
            client=_client_factory(partner, correlation_id),
            limiter=None,
            sleep=sleep,
            what=f"listing the customers of partner {partner.code}",
            partner=partner,
        )
    except CallFailed as exc:
        if exc.mfa_required:
            partner_mfa_refused(partner_id=partner.pk, detail=str(exc))
        raise
    listed: dict[uuid.UUID, partner_center.CustomerRecord] = {}
    for record in records:
        try:
            listed[uuid.UUID(record.tenant_id)] = record
        except ValueError:
            logger.warning("partner %s: Partner Center listed a customer without a tenant id", partner.code)
    now = timezone.now()
    created = updated = removed = 0
    with transaction.atomic():
        # One sync of a partner writes at a time, and a listing older than one already written removes nothing.
        Partner.objects.select_for_update().filter(pk=partner.pk).first()
        existing = {c.tenant_id: c for c in Customer.objects.select_for_update().filter(partner=partner)}
        superseded = any(c.last_seen_at and c.last_seen_at > started for c in existing.values())
        new = []
        changed = []
        # Customers listed as they were: only seen again, all written in one statement. (A bulk_update of every
        # listed customer, a CASE per column over all of them, took the sync of 1,000 customers about a second.)
        seen = []
        for tenant_id, record in listed.items():
            customer = existing.get(tenant_id)
            values = {
                "company_name": record.company_name[:300],
                "domain": record.domain[:253],
                "relationship": record.relationship[:64],
            }
            if customer is None:
                new.append(
                    Customer(partner=partner, tenant_id=tenant_id, first_seen_at=now, last_seen_at=now, **values)
                )
                continue
            if customer.removed_at is None and all(getattr(customer, k) == v for k, v in values.items()):
                seen.append(customer.pk)
                continue
            updated += 1
            for name, value in values.items():
                setattr(customer, name, value)
            customer.removed_at = None
            customer.last_seen_at = now
            changed.append(customer)
        Customer.objects.bulk_create(new, batch_size=1000, ignore_conflicts=True)
        created = len(new)
        Customer.objects.bulk_update(
            changed, ["company_name", "domain", "relationship", "removed_at", "last_seen_at"], batch_size=1000
        )
        Customer.objects.filter(pk__in=seen).update(last_seen_at=now)
        gone = [] if superseded else [c.pk for t, c in existing.items() if t not in listed and c.removed_at is None]
        removed = Customer.objects.filter(pk__in=gone).update(removed_at=now)
        # Under the partner's lock and with every one of its customers' rows held: the count is the truth.
        coverage_recount(partner_ids=[partner.pk])
        audit_record(
            actor=None,
            action="partner.customers_synced",
            partner=partner,
            detail={
                "listed": len(listed),
                "created": created,
                "updated": updated,
                "removed": removed,
                "correlation_id": correlation_id,
            },
        )
    logger.info(
        "partner %s: %d customers listed, %d new, %d changed, %d removed",
        partner.code,
        len(listed),
        created,
        updated,
        removed,
    )
    return SyncResult(partner.pk, len(listed), created, updated, removed, correlation_id)


# --- ApplicationConsent ---------------------------------------------------------------------------------


def desired_grants() -> dict[str, Any]:
    """What CPV_APPLICATION_GRANTS asks for, in a canonical order."""
    config = settings.CPV_APPLICATION_GRANTS
    grants = sorted(
        (
            {"enterpriseApplicationId": str(g["enterpriseApplicationId"]).lower(), "scope": g["scope"]}
            for g in config["applicationGrants"]
        ),
        key=lambda g: g["enterpriseApplicationId"],
    )
    return {"displayName": config["displayName"], "applicationGrants": grants}


# Microsoft Graph's app id: its service principal is in every tenant.
GRAPH_APP_ID = permissions.API_APP_IDS[permissions.GRAPH]


def grants_takeable(grants: dict[str, Any], *, unavailable: list[str]) -> dict[str, Any]:
    """`grants` without the resources (app ids) the tenant lacks; all of them if that would leave none."""
    missing = {str(app_id).lower() for app_id in unavailable}
    kept = [g for g in grants["applicationGrants"] if g["enterpriseApplicationId"] not in missing]
    return {**grants, "applicationGrants": kept} if kept else grants


def _graph_only(grants: dict[str, Any]) -> dict[str, Any] | None:
    """`grants` reduced to Microsoft Graph's, when they name Graph and something else; else None."""
    kept = [g for g in grants["applicationGrants"] if g["enterpriseApplicationId"] == GRAPH_APP_ID]
    if not kept or len(kept) == len(grants["applicationGrants"]):
        return None
    return {**grants, "applicationGrants": kept}


def grants_hash(grants: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(grants, sort_keys=True).encode()).hexdigest()


# A customer whose tenant showed the app with these grants this recently is not sent ApplicationConsent by a sweep,
# whatever its last call said (a verified customer is read again daily: customers/proof.py VERIFY_EVERY).
VERIFIED_RECENTLY = timedelta(days=1)


def customers_needing_consent(*, partner_id: int, now: datetime | None = None) -> list[int]:
    """Ids of the partner's present customers whose ApplicationConsent is missing, failed or out of date, whose last
    GDAP pre-flight did not find them without access, and whose tenant was not seen holding the app with the current
    grants within VERIFIED_RECENTLY (a request would change nothing there)."""
    now = now or timezone.now()
    current = grants_hash(desired_grants())
    return list(
        Customer.objects.filter(
            partner_id=partner_id, removed_at__isnull=True, partner__offboarding_started_at__isnull=True
        )
        .exclude(
            Q(application_consent__status=CustomerConsent.Status.APPLIED) & Q(application_consent__grants_hash=current)
        )
        .exclude(
            Q(application_consent__proof=CustomerConsent.Proof.VERIFIED)
            & Q(application_consent__proof_checked_at__gte=now - VERIFIED_RECENTLY)
            & Q(application_consent__grants_hash=current)
        )
        .exclude(application_consent__access__in=WITHOUT_ACCESS)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def access_check(*, partner_id: int, retry_refused: bool = False) -> access.PreflightResult | None:
    """The GDAP pre-flight of the partner's customers (customers/access.py), before ApplicationConsent is queued: its
    result, or None when GDAP could not be read now (each customer keeps its last verdict). Raises
    Partner.DoesNotExist."""
    try:
        return access.access_preflight(
            partner_id=partner_id, wanted_hash=grants_hash(desired_grants()), retry_refused=retry_refused
        )
    except access.PreflightFailed as exc:
        logger.warning("partner %s: GDAP pre-flight not run: %s", partner_id, exc)
        return None


def customer_consent_apply(
    *,
    customer_id: int,
    correlation_id: str | None = None,
    limiter: Limiter | None = None,
    sleep: Callable[[float], None] = time.sleep,
    owner: str = "",
) -> CustomerConsent:
    """Put the app into one customer tenant (an existing consent is success; changed grants are deleted and created
    again), claimed for `owner` (its own earlier claim is taken over, another's waited out): the CustomerConsent.
    Raises CallFailed, `transient` to retry with the same MS-RequestId."""
    state, _ = _consent_apply(
        customer_id=customer_id, correlation_id=correlation_id, limiter=limiter, sleep=sleep, owner=owner
    )
    return state


def consent_reapply(
    *,
    customer_id: int,
    reset: bool = False,
    correlation_id: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[CustomerConsent, str]:
    """ApplicationConsent in one customer now, even when it is applied with these grants (asked by staff, or a
    repair), with what it came to (CONSENTED, ALREADY_PRESENT, FAILED, SKIPPED: removed or held by another worker,
    WITHOUT_ACCESS_NOW); `reset` deletes
    the consent first and creates it again. Raises CallFailed when the failure is transient."""
    state, outcome = _consent_apply(
        customer_id=customer_id,
        correlation_id=correlation_id,
        limiter=None,
        sleep=sleep,
        owner="",
        again=True,
        reset=reset,
    )
    return state, SKIPPED if outcome == HELD else outcome


# What one customer's ApplicationConsent came to, for a batch's tally.
CONSENTED = "consented"  # created now
ALREADY_PRESENT = "already_present"  # Partner Center had it already, or it was applied with these grants
FAILED = "failed"  # refused for good (or the partner is not active)
SKIPPED = "skipped"  # removed from the partner
HELD = "held"  # another worker holds its claim: counted as skipped, and a scheduled batch hands it back
WITHOUT_ACCESS_NOW = "without_access"  # the GDAP pre-flight holds it back: no request spent


def _consent_apply(
    *,
    customer_id: int,
    correlation_id: str | None,
    limiter: Limiter | None,
    sleep: Callable[[float], None],
    owner: str,
    again: bool = False,
    reset: bool = False,
) -> tuple[CustomerConsent, str]:
    """`customer_consent_apply`, with what it came to; `again` sends the consent even when it is applied with these
    grants (a 409 counts as present), `reset` deletes it first and creates it again (a repair)."""
    customer = Customer.objects.select_related("partner").get(pk=customer_id)
    partner = customer.partner
    state, _ = CustomerConsent.objects.get_or_create(customer=customer)
    grants = desired_grants()
    wanted = grants_hash(grants)
    if customer.removed_at is not None or partner.offboarding_started_at is not None:
        # Removed from the partner, or the partner is being offboarded: its app is being taken out, not put in.
        return state, SKIPPED
    if state.status == CustomerConsent.Status.APPLIED and state.grants_hash == wanted and not (again or reset):
        return state, ALREADY_PRESENT
    if state.access in WITHOUT_ACCESS:
        return state, WITHOUT_ACCESS_NOW
    now = timezone.now()
    # The claim: one worker per customer at a time; a crashed worker's claim lapses after LEASE.
    if partner.status != Partner.Status.ACTIVE:
        state.last_error = f"Not applied: the partner is {partner.get_status_display().lower()}"
        state.error_kind = ErrorKind.PARTNER_INACTIVE
        state.save(update_fields=["last_error", "error_kind", "updated_at"])
        return state, FAILED
    request_id = state.pending_request_id or str(uuid.uuid4())
    claimable = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    if owner:
        # Waiting out its own earlier run's claim would end this task with nothing applied. Should that run still
        # be going after all, both send the same MS-RequestId: Partner Center sees one logical call.
        claimable |= Q(lease_owner=owner)
    claimed = (
        CustomerConsent.objects.filter(pk=state.pk)
        .filter(claimable)
        .update(lease_until=now + LEASE, lease_owner=owner, pending_request_id=request_id, last_attempt_at=now)
    )
    if not claimed:
        return state, HELD
    state.refresh_from_db()
    request_id = state.pending_request_id
    app = app_for(partner)
    # Resources the customer's tenant did not have at its last read are left out: one missing workload must not
    # refuse the whole consent (customers/proof.py reads them again and adds them once the tenant has them).
    sent = grants_takeable(grants, unavailable=(state.proof_detail or {}).get("unavailable") or [])
    changed = reset or (bool(state.grants_hash) and state.grants_hash != wanted)
    correlation_id = correlation_id or str(uuid.uuid4())
    client = _client_factory(partner, correlation_id)
    limiter = limiter if limiter is not None else limiter_for(app.client_id)
    tenant = str(customer.tenant_id)
    try:
        if changed:
            # Partner Center has no update: the grants changed, so the consent is removed and created again.
            delete_id = str(uuid.uuid5(uuid.UUID(request_id), "delete"))
            _with_retries(
                lambda pc: pc.application_consent_delete(
                    customer_tenant_id=tenant, application_id=app.client_id, request_id=delete_id
                ),
                client=client,
                limiter=limiter,
                sleep=sleep,
                what=f"removing the old ApplicationConsent in {tenant}",
                partner=partner,
                request_id=delete_id,
            )

        def create(grants_sent: dict[str, Any], rid: str, what: str) -> bool:
            payload = {"applicationId": app.client_id, **grants_sent}
            return _with_retries(
                lambda pc: pc.application_consent_create(customer_tenant_id=tenant, body=payload, request_id=rid),
                client=client,
                limiter=limiter,
                sleep=sleep,
                what=f"{what} in {tenant}",
                partner=partner,
                request_id=rid,
            )

        try:
            created = create(sent, request_id, "ApplicationConsent")
        except CallFailed as exc:
            graph_only = _graph_only(sent)
            if exc.kind != ErrorKind.BAD_REQUEST or graph_only is None:
                raise
            # Partner Center refuses a consent naming a resource the tenant lacks (a workload it is not licensed
            # for) and does not say which. Every tenant has Microsoft Graph: the app goes in with Graph's grant,
            # and the tenant's read then names what it lacks and adds the rest.
            logger.info("ApplicationConsent in %s refused as invalid; sending Microsoft Graph's grant alone", tenant)
            sent = graph_only
            graph_id = str(uuid.uuid5(uuid.UUID(request_id), "graph-only"))
            created = create(sent, graph_id, "ApplicationConsent (Microsoft Graph alone)")
    except CallFailed as exc:
        if exc.mfa_required:
            partner_mfa_refused(partner_id=partner.pk, detail=str(exc))
        state.attempts += 1
        state.last_error = str(exc)[:500]
        state.error_kind = exc.kind
        state.lease_until = None
        fields = ["attempts", "last_error", "error_kind", "lease_until", "updated_at"]
        if exc.kind == ErrorKind.FORBIDDEN and state.access_evidence:
            # GDAP looked right and Partner Center still refused: not spent again on the same evidence.
            state.access = CustomerConsent.Access.REFUSED
            state.access_detail = {"message": str(exc)[:300]}
            state.refused_evidence = state.access_evidence
            fields += ["access", "access_detail", "refused_evidence"]
        if not exc.transient:
            # A refusal ends this logical call: a later attempt is a new one with a new MS-RequestId.
            state.status = CustomerConsent.Status.FAILED
            state.pending_request_id = ""
            fields += ["status", "pending_request_id"]
        _state_save(state, partner_id=partner.pk, fields=fields)
        logger.warning("ApplicationConsent for customer %s of partner %s failed: %s", tenant, partner.code, exc)
        if exc.transient:
            raise
        return state, FAILED
    state.status = CustomerConsent.Status.APPLIED
    # What was sent (the resources the tenant can take); the hash is of what is configured, so a partial consent
    # is not sent again by every sweep.
    state.grants = sent
    state.grants_hash = wanted
    state.applied_at = timezone.now()
    state.attempts += 1
    state.last_error = ""
    state.error_kind = ""
    state.pending_request_id = ""
    state.lease_until = None
    # Partner Center's answer proves nothing of the tenant: the customer is to be read in Graph now
    # (customers/proof.py).
    state.proof = ""
    state.proof_reason = ""
    state.proof_due_at = state.applied_at
    _state_save(state, partner_id=partner.pk)
    logger.info(
        "ApplicationConsent in %s for partner %s: %s", tenant, partner.code, "created" if created else "already there"
    )
    return state, CONSENTED if created else ALREADY_PRESENT


def consent_remove(
    *,
    customer_id: int,
    confirm: Callable[[Customer], bool] | None = None,
    correlation_id: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> CustomerConsent:
    """Take the vendor's app out of one customer tenant (ApplicationConsent DELETE; none there is success) and, unless
    `confirm` says it is still there, record it REMOVED, shifting the coverage counters. Raises CallFailed
    (transient: to retry)."""
    customer = Customer.objects.select_related("partner").get(pk=customer_id)
    partner = customer.partner
    state, _ = CustomerConsent.objects.get_or_create(customer=customer)
    if state.status == CustomerConsent.Status.REMOVED:
        return state
    app = app_for(partner)
    request_id = str(uuid.uuid4())
    _with_retries(
        lambda pc: pc.application_consent_delete(
            customer_tenant_id=str(customer.tenant_id), application_id=app.client_id, request_id=request_id
        ),
        client=_client_factory(partner, correlation_id or str(uuid.uuid4())),
        limiter=limiter_for(app.client_id),
        sleep=sleep,
        what=f"removing ApplicationConsent in {customer.tenant_id}",
        partner=partner,
        request_id=request_id,
    )
    if confirm is not None and not confirm(customer):
        return state
    state.status = CustomerConsent.Status.REMOVED
    state.proof = ""
    state.proof_reason = ""
    state.proof_due_at = None
    state.lease_until = None
    _state_save(
        state,
        partner_id=partner.pk,
        fields=["status", "proof", "proof_reason", "proof_due_at", "lease_until", "updated_at"],
    )
    return state


@dataclass
class BatchTally:
    """A batch's counts so far: `tried` counts each customer once across runs; `retry_ids` are left for the next run."""

    tried: int = 0
    consented: int = 0
    already_present: int = 0
    failed: int = 0
    skipped: int = 0
    without_access: int = 0
    retry_ids: list[int] = field(default_factory=list)
    # Customers refused for good in this run (counted in `failed`).
    failed_ids: list[int] = field(default_factory=list)
    # Customers another worker held the claim of (counted in `skipped`): its run applies them, unless it died.
    held_ids: list[int] = field(default_factory=list)
    retry_after: float | None = None

    def counts(self) -> dict[str, int]:
        return {
            "tried": self.tried,
            "consented": self.consented,
            "already_present": self.already_present,
            "failed": self.failed,
            "skipped": self.skipped,
            "without_access": self.without_access,
        }


def application_consent_batch(
    *,
    partner_id: int,
    customer_ids: list[int],
    correlation_id: str,
    owner: str = "",
    earlier: dict[str, int] | None = None,
    last_run: bool = True,
    audit: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> BatchTally:
    """ApplicationConsent in each given customer, one transaction per customer, and (when `audit`) one audit row for
    the batch once it is over (`earlier` carries previous runs' counts; unless `last_run`, transient failures are left
    in `retry_ids`). Returns the BatchTally. Raises Partner.DoesNotExist."""
    partner = Partner.objects.get(pk=partner_id)
    tally = BatchTally(tried=len(customer_ids))
    for key, value in (earlier or {}).items():
        if key in tally.counts():
            setattr(tally, key, int(value))
    limiter = limiter_for(app_for(partner).client_id)
    for customer_id in customer_ids:
        try:
            _, outcome = _consent_apply(
                customer_id=customer_id, correlation_id=correlation_id, limiter=limiter, sleep=sleep, owner=owner
            )
        except Customer.DoesNotExist:
            outcome = SKIPPED
        except CallFailed as exc:
            tally.retry_ids.append(customer_id)
            if exc.retry_after is not None:
                tally.retry_after = max(tally.retry_after or 0.0, exc.retry_after)
            continue
        if outcome == HELD:
            tally.held_ids.append(customer_id)
            outcome = SKIPPED
        elif outcome == FAILED:
            tally.failed_ids.append(customer_id)
        setattr(tally, outcome, getattr(tally, outcome) + 1)
    if (tally.retry_ids and not last_run) or not audit:
        return tally
    audit_record(
        actor=None,
        action="partner.consents_applied",
        partner=partner,
        detail={**tally.counts(), "retrying": len(tally.retry_ids), "correlation_id": correlation_id},
    )
    logger.info(
        "partner %s: ApplicationConsent batch of %d: %d consented, %d already present, %d failed, %d left",
        partner.code,
        tally.tried,
        tally.consented,
        tally.already_present,
        tally.failed,
        len(tally.retry_ids),
    )
    return tally


def _state_save(state: CustomerConsent, *, partner_id: int, fields: list[str] | None = None) -> None:
    """Save a customer's ApplicationConsent state under the customer's row lock and shift the coverage counters to
    match."""
    with transaction.atomic():
        # Customer sync locks the same rows to mark customers removed: under the lock, `before` and `removed_at`
        # are what this change really replaces.
        removed_at, before = (
            Customer.objects.select_for_update(of=("self",))
            .filter(pk=state.customer_id)
            .values_list("removed_at", "application_consent__status")
            .get()
        )
        state.save(update_fields=fields)
        moved_to = _MOVED_EVENTS.get(state.status) if before != state.status else None
        if moved_to is not None:
            customer = state.customer
            event_record(
                type=moved_to,
                partner=customer.partner,
                customer_tenant_id=customer.tenant_id,
                detail={"previous_status": before or CustomerConsent.Status.PENDING, "error_kind": state.error_kind},
            )
        # Last before the commit: every worker applying this partner's customers shifts the same counters' row, and
        # holds it until its commit; taken earlier, the event's statements would be held up in each of them.
        if removed_at is None:
            coverage_consent_changed(partner_id=partner_id, before=before, after=state.status)


# A customer's ApplicationConsent status that moved to one of these is announced (events/).
_MOVED_EVENTS: dict[str, EventType] = {
    CustomerConsent.Status.APPLIED: EventType.CUSTOMER_CONSENTED,
    CustomerConsent.Status.FAILED: EventType.CUSTOMER_CONSENT_FAILED,
}

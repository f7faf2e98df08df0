"""The dashboard's long operations on a partner: each is a record (partners.models.Operation) created with its audit
row, its tasks queued after the commit. ApplicationConsent's put their customers in the fair schedule instead
(customers/scheduling.py), in the record's transaction, and start its pullers after the commit. The work writes the
outcome into the record once (partners/operations.py); until then progress is read back from what this operation's
tasks leave (matched by its id, or bounded by the next operation of its kind; for scheduled work, the shares its
closed batches added to the record), and a reader that sees the work over when it could not write (a task lost)
writes it."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery.result import AsyncResult
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Count, Q
from django.template.defaultfilters import pluralize
from django.utils import timezone

from cpv.logs import redact
from customers import offboarding, scheduling
from customers import tasks as customer_tasks
from customers.models import ConsentWork, CustomerConsent
from customers.proof import CUSTOMER_ACTIONS, customers_drifted, customers_to_verify
from customers.selectors import without_access_counts
from customers.services import customers_needing_consent
from dashboard.app_check import app_check, app_check_words
from microsoft import identity
from microsoft.partner_center import PartnerCenterClient
from partners.models import AuditEvent, Customer, Operation, Partner
from partners.registrations import cloud_for
from partners.services import Actor, PartnerError, audit_record
from tokens import tasks as token_tasks
from tokens.access_tokens import access_token_get
from tokens.models import PartnerToken, TokenEvent
from tokens.outcomes import RenewalOutcome
from tokens.selectors import VaultShare, token_health_expression, vault_shares
from tokens.vault import VaultMisconfigured, get_vault, process_opens_tokens

logger = logging.getLogger(__name__)

RENEW = "renew"
SYNC = "sync"
APPLY = "apply"
APPLY_FAILED = "apply_failed"
VERIFY = "verify"
KIND_LABELS = {
    RENEW: "Token renewal",
    SYNC: "Customer sync",
    APPLY: "ApplicationConsent for every customer that needs it",
    APPLY_FAILED: "ApplicationConsent again for the failed customers",
    VERIFY: "Verification in each customer tenant (repairing what drifted)",
}
# ApplicationConsent operations go through the fair schedule in these classes: retrying failures is a repair.
SCHEDULED = {APPLY: ConsentWork.Kind.NEW, APPLY_FAILED: ConsentWork.Kind.REPAIR}
ACTIONS = {
    RENEW: "partner.renewal_requested",
    SYNC: "partner.sync_requested",
    APPLY: "partner.consents_requested",
    APPLY_FAILED: "partner.consents_requested",
    VERIFY: "partner.verification_requested",
}
# After this long with no sign of a worker, the page says so instead of "queued".
STALE_AFTER = timedelta(minutes=10)


def _require_active(partner: Partner, what: str) -> None:
    if partner.status != Partner.Status.ACTIVE:
        raise PartnerError(f"{partner.name} is {partner.get_status_display().lower()}: {what} needs an active partner.")


def operation_start(*, actor: Actor, partner: Partner, kind: str, bulk: uuid.UUID | None = None) -> AuditEvent:
    """Queue a long operation on a partner (renew, sync, apply consents): its audit row (`detail["operation"]`).
    Raises PartnerError when the partner is not active or there is nothing to do."""
    if kind not in KIND_LABELS:
        raise PartnerError(f"Unknown operation {kind!r}.")
    _require_active(partner, KIND_LABELS[kind].lower())
    operation = str(uuid.uuid4())
    now = timezone.now()
    detail: dict[str, Any] = {"operation": operation, "kind": kind, "started_at": now.isoformat()}
    if bulk is not None:
        detail["bulk"] = str(bulk)
    queue: list[tuple[Any, dict[str, Any], str]] = []
    if kind == RENEW:
        if not PartnerToken.objects.filter(partner=partner).exclude(current_version="").exists():
            raise PartnerError(f"{partner.name} has no token to renew.")
        task_id = str(uuid.uuid4())
        queue.append(
            (token_tasks.token_renew, {"partner_id": partner.pk, "force": True, "operation": operation}, task_id)
        )
        detail.update(total=1, task_id=task_id)
    elif kind == SYNC:
        task_id = str(uuid.uuid4())
        kwargs = {"partner_id": partner.pk, "apply": False, "correlation_id": operation}
        queue.append((customer_tasks.customers_sync, kwargs, task_id))
        detail.update(total=1, task_id=task_id)
    elif kind == VERIFY:
        ids = customers_to_verify(partner_id=partner.pk, due_only=False)
        if not ids:
            raise PartnerError(f"No customer of {partner.name} has an applied ApplicationConsent to verify.")
        for start in range(0, len(ids), customer_tasks.VERIFY_BATCH):
            kwargs = {"customer_ids": ids[start : start + customer_tasks.VERIFY_BATCH], "operation": operation}
            queue.append((customer_tasks.consents_verify, kwargs, str(uuid.uuid4())))
        detail.update(total=len(ids))
    else:
        ids = _customers_to_apply(partner, kind)
        detail.update(total=len(ids))
    user = actor if isinstance(actor, User) and actor.is_authenticated else None
    with transaction.atomic():
        if kind in SCHEDULED:
            detail["total"] = _scheduled(partner, kind=kind, customer_ids=ids, operation=operation)
        Operation.objects.create(
            code=operation,
            partner=partner,
            kind=kind,
            actor=user,
            actor_label=user.get_username() if user is not None else "system",
            started_at=now,
            total=int(detail["total"]),
            task_id=str(detail.get("task_id", "")),
            bulk=bulk,
        )
        event = audit_record(actor=actor, action=ACTIONS[kind], partner=partner, detail=detail)

        def send() -> None:
            for task, kwargs, task_id in queue:
                task.apply_async(kwargs=kwargs, task_id=task_id)
            if kind in SCHEDULED:
                _pullers_start()

        transaction.on_commit(send)
    logger.info(
        "partner %s: %s queued (%d task(s), %d unit(s) of work), operation %s",
        partner.code,
        kind,
        len(queue),
        detail["total"],
        operation,
    )
    return event


def _customers_to_apply(partner: Partner, kind: str) -> list[int]:
    """The customers an ApplicationConsent operation covers: those that need it (APPLY), or those whose last call
    failed (APPLY_FAILED). Raises PartnerError, in words, when there is none."""
    if kind == APPLY:
        ids = customers_needing_consent(partner_id=partner.pk)
    else:
        ids = list(
            Customer.objects.filter(
                partner=partner, removed_at__isnull=True, application_consent__status=CustomerConsent.Status.FAILED
            )
            .order_by("pk")
            .values_list("pk", flat=True)
        )
    if ids:
        return ids
    waiting = without_access_counts([partner.pk]).get(partner.pk, 0)
    if waiting:
        raise PartnerError(
            f"{waiting} customer{pluralize(waiting)} of {partner.name} "
            f"{'waits' if waiting == 1 else 'wait'} without GDAP access (the customer list says what each "
            "needs); the others need no ApplicationConsent."
        )
    raise PartnerError(f"No customer of {partner.name} needs ApplicationConsent.")


def _scheduled(partner: Partner, *, kind: str, customer_ids: list[int], operation: str) -> int:
    """Put an ApplicationConsent operation's customers in the fair schedule (customers/scheduling.py), beside every
    other partner's work, in the operation's transaction: how many carry its id, its total (the pullers add each
    batch's share as they close it). Raises PartnerError when an earlier operation still has them all."""
    total = scheduling.operation_work_add(
        partner_id=partner.pk, customer_ids=customer_ids, kind=SCHEDULED[kind], operation=operation
    )
    if not total:
        raise PartnerError(
            f"ApplicationConsent for these customers of {partner.name} is already under way in an earlier "
            "operation: its progress is on the partner's page."
        )
    return total


def _pullers_start() -> None:
    """Start the fair schedule's idle pullers after the commit. Should the broker refuse now, the operation's work
    waits in the database, and the verification sweep starts them (every 10 minutes)."""
    try:
        customer_tasks.application_consent_pullers_start()
    except Exception:
        logger.exception("could not start the ApplicationConsent pullers; the sweep starts them")


def customer_action_start(*, actor: Actor, partner: Partner, tenant_id: uuid.UUID, action: str) -> str:
    """Queue one customer's verify, apply again or reset (customers/proof.py's CUSTOMER_ACTIONS), audited with the
    acting user: the message for staff. Raises PartnerError (inactive partner, unknown action), Customer.DoesNotExist
    (no present customer with that tenant)."""
    if action not in CUSTOMER_ACTIONS:
        raise PartnerError(f"Unknown customer action {action!r}.")
    label = CUSTOMER_ACTIONS[action]
    _require_active(partner, label.lower())
    customer = Customer.objects.get(partner=partner, tenant_id=tenant_id, removed_at__isnull=True)
    with transaction.atomic():
        audit_record(
            actor=actor,
            action=f"customer.{action}_requested",
            partner=partner,
            detail={"customer": str(customer.tenant_id), "company": customer.company_name},
        )
        transaction.on_commit(
            lambda: customer_tasks.customer_act.apply_async(kwargs={"customer_id": customer.pk, "action": action})
        )
    name = customer.company_name or str(customer.tenant_id)
    return f"{label}: queued for {name}; its row shows the result once a worker has read the tenant."


def drifted_repair_start(*, actor: Actor) -> str:
    """Queue a repair of every drifted or missing customer of every partner (read again first: a customer repaired
    meanwhile costs no Partner Center request), audited with the acting user: the message for staff. Raises
    PartnerError when there is none."""
    ids = customers_drifted()
    if not ids:
        raise PartnerError("No customer is drifted or missing.")
    # A repaired customer's counter of repairs starts again: staff asked for it after the bound was reached.
    CustomerConsent.objects.filter(customer_id__in=ids).update(repairs=0)
    with transaction.atomic():
        audit_record(actor=actor, action="customers.repair_requested", detail={"customers": len(ids)})

        def send() -> None:
            for start in range(0, len(ids), customer_tasks.VERIFY_BATCH):
                customer_tasks.consents_verify.apply_async(
                    kwargs={"customer_ids": ids[start : start + customer_tasks.VERIFY_BATCH]}
                )

        transaction.on_commit(send)
    return (
        f"A repair of {len(ids)} drifted or missing customer{pluralize(len(ids))} is queued: each is read again and, "
        "if still so, its consent removed and applied again; the overview's counts follow."
    )


def offboarding_start(*, actor: Actor, partner: Partner) -> str:
    """Start offboarding the partner (customers/offboarding.py) and queue its work after the commit: the message for
    staff. Raises PartnerError."""
    with transaction.atomic():
        offboarding.partner_offboard_start(actor=actor, partner=partner)
        transaction.on_commit(lambda: customer_tasks.partner_offboard.apply_async(kwargs={"partner_id": partner.pk}))
    return (
        f"Offboarding of {partner.name} queued: the vendor's app is taken out of each customer (its page shows the "
        "progress), then the token is revoked, the partner deactivated and told how to withdraw its own consent."
    )


@dataclass(frozen=True)
class Progress:
    """Where an operation stands: `state` is queued, running, done, failed or stale."""

    operation: str
    kind: str
    label: str
    started_at: datetime
    actor: str
    total: int
    done: int
    failed: int
    state: str
    message: str
    # The bulk action it was started with ("" when alone) and when it was seen to be over.
    bulk: str = ""
    finished_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.state in {"done", "failed"}

    @property
    def percent(self) -> int:
        return min(100, round(100 * self.done / self.total)) if self.total else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "kind": self.kind,
            "label": self.label,
            "state": self.state,
            "total": self.total,
            "done": self.done,
            "failed": self.failed,
            "percent": self.percent,
            "message": self.message,
            "finished": self.finished,
        }


def _task_state(task_id: str) -> tuple[str, Any]:
    """The task's state and result from the result backend ("PENDING" when there is none or it is unknown)."""
    if not task_id or not settings.CELERY_RESULT_BACKEND:
        return "PENDING", None
    try:
        result: AsyncResult[Any] = AsyncResult(task_id)
        return str(result.state), result.result if result.ready() else None
    except Exception:
        logger.warning("could not read the state of task %s", task_id, exc_info=True)
        return "PENDING", None


def _renewal_outcome(value: Any) -> RenewalOutcome:
    try:
        return RenewalOutcome(str(value))
    except ValueError:
        return RenewalOutcome.FAILED


def _family(kind: str) -> list[str]:
    return [APPLY, APPLY_FAILED] if kind in (APPLY, APPLY_FAILED) else [kind]


def _next_start(op: Operation) -> datetime | None:
    """When the partner's next operation of the same family started: what this one reads stops there, so an older
    operation never shows a newer one's result."""
    if hasattr(op, "next_start"):
        return op.next_start
    return (
        Operation.objects.filter(partner_id=op.partner_id, kind__in=_family(op.kind), started_at__gt=op.started_at)
        .order_by("started_at")
        .values_list("started_at", flat=True)
        .first()
    )


def _bounded(qs: Any, field: str, start: datetime, end: datetime | None) -> Any:
    qs = qs.filter(**{f"{field}__gte": start})
    return qs.filter(**{f"{field}__lt": end}) if end is not None else qs


def _renew_reading(op: Operation) -> tuple[int, int, str, str]:
    task_state, result = _task_state(op.task_id)
    if task_state == "SUCCESS" and isinstance(result, dict):
        outcome = _renewal_outcome(result.get("outcome"))
        return 1, 0 if outcome.ok else 1, "done" if outcome.ok else "failed", outcome.in_words
    if task_state == "FAILURE":
        return 1, 1, "failed", "The task failed; see the worker's log."
    latest = (
        _bounded(TokenEvent.objects.filter(partner_id=op.partner_id), "created_at", op.started_at, _next_start(op))
        # Disabling versions an interrupted write left follows a move; it is not an outcome of its own.
        .exclude(kind=TokenEvent.Kind.RECONCILED)
        .order_by("-created_at", "-id")
        .first()
    )
    if latest is not None and latest.kind in TokenEvent.MOVED:
        # Renewed by this operation's task, or rotated meanwhile by an access-token request: either way the
        # partner has a fresh token.
        return 1, 0, "done", "Renewed."
    if latest is not None and latest.kind == TokenEvent.Kind.RETRYING:
        return 0, 0, "running", latest.message
    if latest is not None:
        return 1, 1, "failed", latest.message
    if task_state in {"STARTED", "RETRY"}:
        return 0, 0, "running", "Renewing."
    return 0, 0, "queued", "Waiting for a worker."


def _sync_reading(op: Operation) -> tuple[int, int, str, str]:
    # The sync's audit row carries this operation's id as its correlation id.
    synced = (
        AuditEvent.objects.filter(
            partner_id=op.partner_id, action="partner.customers_synced", detail__correlation_id=str(op.code)
        )
        .order_by("-created_at", "-id")
        .first()
    )
    if synced is not None:
        d = synced.detail
        message = (
            f"{d.get('listed', 0)} customers listed: {d.get('created', 0)} new, {d.get('updated', 0)} changed, "
            f"{d.get('removed', 0)} removed."
        )
        return 1, 0, "done", message
    task_state, result = _task_state(op.task_id)
    if task_state == "SUCCESS" and isinstance(result, dict) and result.get("outcome") == "failed":
        return 1, 1, "failed", "Partner Center refused the listing; see the log."
    if task_state in {"STARTED", "RETRY"}:
        return 0, 0, "running", "Listing customers in Partner Center."
    if task_state == "FAILURE":
        return 1, 1, "failed", "The task failed; see the worker's log."
    return 0, 0, "queued", "Waiting for a worker."


def _apply_reading(op: Operation) -> tuple[int, int, str, str]:
    if ConsentWork.objects.filter(correlation_id=str(op.code)).exists():
        return _scheduled_reading(op)
    return _batches_reading(op)


def _scheduled_reading(op: Operation) -> tuple[int, int, str, str]:
    # Its customers wait in the fair schedule under its id; each batch closed added its share to the record, in the
    # transaction that closed it, so the record's counts are the progress.
    if op.done:
        return op.done, op.failed, "running", f"{op.done} of {op.total} customers done ({op.failed} failed)."
    return 0, 0, "queued", "Waiting for its turn in the schedule."


def _batches_reading(op: Operation) -> tuple[int, int, str, str]:
    # The message form queued before the fair schedule: each batch's audit row carries this operation's id; until
    # they are all in, the customers attempted since it started (and before the next one started) show the way.
    batches = AuditEvent.objects.filter(
        partner_id=op.partner_id, action="partner.consents_applied", detail__correlation_id=str(op.code)
    ).values_list("detail", flat=True)
    tried = failed = applied = 0
    for d in batches:
        tried += int(d.get("tried", 0))
        failed += int(d.get("failed", 0))
        applied += int(d.get("consented", 0)) + int(d.get("already_present", 0))
    if tried < op.total:
        counts = _bounded(
            CustomerConsent.objects.filter(customer__partner_id=op.partner_id, lease_until__isnull=True),
            "last_attempt_at",
            op.started_at,
            _next_start(op),
        ).aggregate(
            applied=Count("id", filter=Q(status=CustomerConsent.Status.APPLIED)),
            failed=Count("id", filter=Q(status=CustomerConsent.Status.FAILED)),
        )
        if counts["applied"] + counts["failed"] > applied + failed:
            applied, failed = counts["applied"], counts["failed"]
        tried = applied + failed
    done = min(op.total, tried)
    if done >= op.total:
        return done, failed, "failed" if failed else "done", f"{applied} applied, {failed} failed."
    if done:
        return done, failed, "running", f"{done} of {op.total} customers done ({failed} failed)."
    return 0, 0, "queued", "Waiting for a worker."


def _verify_reading(op: Operation) -> tuple[int, int, str, str]:
    # The customers read since it started (and before the next verification started).
    counts = _bounded(
        CustomerConsent.objects.filter(customer__partner_id=op.partner_id),
        "proof_checked_at",
        op.started_at,
        _next_start(op),
    ).aggregate(
        read=Count("id"),
        verified=Count("id", filter=Q(proof=CustomerConsent.Proof.VERIFIED)),
        drifted=Count("id", filter=Q(proof__in=[CustomerConsent.Proof.DRIFTED, CustomerConsent.Proof.MISSING])),
    )
    done, failed = min(op.total, counts["read"]), counts["drifted"]
    summary = (
        f"{counts['verified']} verified, {failed} drifted or missing, "
        f"{counts['read'] - counts['verified'] - failed} could not be verified"
    )
    if done >= op.total:
        return done, failed, "failed" if failed else "done", summary + "."
    if done:
        return done, failed, "running", f"{done} of {op.total} customers read: {summary}."
    return 0, 0, "queued", "Waiting for a worker."


READINGS = {
    RENEW: _renew_reading,
    SYNC: _sync_reading,
    APPLY: _apply_reading,
    APPLY_FAILED: _apply_reading,
    VERIFY: _verify_reading,
}


def _operation_of(record: Operation | AuditEvent) -> Operation:
    if isinstance(record, Operation):
        return record
    return Operation.objects.get(code=str((record.detail or {}).get("operation", "")))


def operation_progress(record: Operation | AuditEvent, *, now: datetime | None = None) -> Progress:
    """Where an operation stands: from its record once it is over, else read from what its own tasks left, the
    outcome then written into the record once (a conditional UPDATE: the first reader to see it over writes it)."""
    now = now or timezone.now()
    op = _operation_of(record)
    if op.finished_at is None:
        done, failed, state, message = READINGS[op.kind](op)
        if state in ("done", "failed"):
            outcome = {"state": state, "done": done, "failed": failed, "message": message[:500], "finished_at": now}
            if Operation.objects.filter(pk=op.pk, finished_at__isnull=True).update(**outcome):
                for name, value in outcome.items():
                    setattr(op, name, value)
            else:
                op.refresh_from_db()
    if op.finished_at is not None:
        done, failed, state, message = op.done, op.failed, op.state, op.message
    elif state == "queued" and now - op.started_at > STALE_AFTER:
        state, message = "stale", "No worker has picked this up: check that the Celery workers are running."
    return Progress(
        operation=str(op.code),
        kind=op.kind,
        label=KIND_LABELS.get(op.kind, op.kind),
        started_at=op.started_at,
        actor=op.actor_label,
        total=op.total,
        done=done,
        failed=failed,
        state=state,
        message=message,
        bulk=str(op.bulk) if op.bulk else "",
        finished_at=op.finished_at,
    )


def operations_recent(partner: Partner, *, limit: int = 3) -> list[Progress]:
    """The partner's latest operations with their progress (bounded: 1 + 3 * `limit` queries at most)."""
    ops = list(Operation.objects.filter(partner=partner)[:limit])
    # Newest first: every later operation of an operation's family is among those before it in this list.
    for i, op in enumerate(ops):
        later = [o.started_at for o in ops[:i] if o.kind in _family(op.kind) and o.started_at > op.started_at]
        op.next_start = min(later) if later else None  # type: ignore[attr-defined]
    return [operation_progress(op) for op in ops]


def operation_find(partner: Partner, operation: uuid.UUID) -> Operation | None:
    return Operation.objects.filter(partner=partner, code=operation).first()


# The steps a bulk action's operations go through, in the order its page shows their counts.
BULK_STATES = ("queued", "running", "done", "failed", "stale")


@dataclass(frozen=True)
class BulkProgress:
    """A bulk action's operations (one per partner it covered), each with its progress, and how many are in each
    state."""

    bulk: str
    label: str
    started_at: datetime
    actor: str
    rows: list[tuple[Partner, Progress]]

    @property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(BULK_STATES, 0)
        for _, progress in self.rows:
            counts[progress.state] = counts.get(progress.state, 0) + 1
        return counts

    @property
    def finished(self) -> bool:
        return all(progress.finished for _, progress in self.rows)

    @property
    def steps(self) -> list[tuple[str, int]]:
        """queued → running → done, then failed and stale only when there are any."""
        counts = self.counts
        return [
            (state, counts[state]) for state in BULK_STATES if state in {"queued", "running", "done"} or counts[state]
        ]


def operations_bulk(bulk: uuid.UUID) -> BulkProgress | None:
    """The operations a bulk action started, by partner name, each read as the partner's page reads it (its outcome
    written once it is over); None when no operation carries that bulk id."""
    ops = list(
        Operation.objects.filter(bulk=bulk, partner__deleted_at__isnull=True)
        .select_related("partner")
        .order_by("partner__name", "partner_id", "started_at")
    )
    if not ops:
        return None
    first = min(ops, key=lambda op: op.started_at)
    return BulkProgress(
        bulk=str(bulk),
        label=KIND_LABELS.get(first.kind, first.kind),
        started_at=first.started_at,
        actor=first.actor_label,
        rows=[(op.partner, operation_progress(op)) for op in ops],
    )


# --- actions that finish at once -----------------------------------------------------------------------------


# --- the settings page's live check ------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveCheck:
    name: str
    ok: bool
    milliseconds: float
    detail: str


def _check_authority() -> str:
    app = settings.CPV_APP
    cloud = settings.CPV_CLOUD_CONFIG
    if not app.client_id:
        raise PartnerError("CPV_CLIENT_ID is not set")
    # Building the client reads the authority's discovery document and loads the credential.
    identity.confidential_client(cloud=cloud, tenant="organizations", app=app)
    return f"{cloud.authority_host} answered; the app credential loads"


def _check_partner_center() -> str:
    import requests

    partner = (
        Partner.objects.filter(status=Partner.Status.ACTIVE)
        .annotate(health=token_health_expression())
        .filter(health="healthy")
        .order_by("-token__last_renewed_at")
        .first()
    )
    # The web tier may not open a partner's token (CPV_PROCESS_ROLE=web): it proves Partner Center answers, and the
    # workers' renewals prove the tokens.
    opens = process_opens_tokens()
    if partner is None or not opens:
        url = settings.CPV_CLOUD_CONFIG.partner_center_url
        response = requests.get(url, timeout=(5, 10))
        if response.status_code >= 500:
            raise PartnerError(f"{url} answered {response.status_code}")
        if partner is None:
            return f"{url} is reachable (no active partner to call it as)"
        return f"{url} is reachable (the web tier opens no partner's token: the workers' renewals call it as them)"
    token = access_token_get(partner=partner)
    client = PartnerCenterClient(base_url=cloud_for(partner).partner_center_url, access_token=token.token)
    client.organization_profile()
    return f"the organization profile of {partner.name} was read with its token"


def _check_vault(url: str = "") -> str:
    vault = get_vault(url)
    vault.health()
    return "; ".join(f"{str(k).replace('_', ' ')}: {_words(v)}" for k, v in vault.describe().items())


def _vault_checks() -> list[tuple[str, Callable[[], str]]]:
    """A check per vault: "Vault" for the only one, "Vault <url>" each of several (with the partners it keeps), and a
    failing one for each Key Vault that keeps partners' tokens but VAULT_URLS no longer names."""
    shares = vault_shares()
    if len(shares) == 1:
        return [("Vault", _check_vault)]
    return [(f"Vault {share.url}", functools.partial(_check_vault_share, share)) for share in shares]


def _check_vault_share(share: VaultShare) -> str:
    if not share.configured:
        raise VaultMisconfigured(share.problem)
    return f"{_check_vault(share.url)}; partners: {share.partners}"


def _words(value: Any) -> str:
    """A described value as the page shows it: a list as its items, not Python's repr."""
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value) or "none"
    return str(value)


def live_checks() -> list[LiveCheck]:
    """Call the sign-in authority, Partner Center and the vault now: what each proved, or why it failed (redacted)."""
    import time

    results = []
    for name, check in (
        ("Sign-in authority", _check_authority),
        ("Partner Center", _check_partner_center),
        *_vault_checks(),
    ):
        started = time.perf_counter()
        try:
            detail, ok = check(), True
        except Exception as exc:  # noqa: BLE001 - a check reports every failure, it never raises
            detail, ok = f"{exc.__class__.__name__}: {redact(str(exc))[:300]}", False
        results.append(LiveCheck(name, ok, round((time.perf_counter() - started) * 1000, 1), detail))
    return results + _app_checks()


def _app_checks() -> list[LiveCheck]:
    """The self-check of each app registration (`dashboard/app_check.py`), a row each: failed while a finding is a
    problem, each finding in words with its fix."""
    import time

    started = time.perf_counter()
    try:
        reports = app_check()
    except Exception as exc:  # noqa: BLE001 - a check reports every failure, it never raises
        return [LiveCheck("App registration", False, 0.0, f"{exc.__class__.__name__}: {redact(str(exc))[:300]}")]
    milliseconds = round((time.perf_counter() - started) * 1000, 1)
    return [
        LiveCheck(
            f"App registration ({report.setting})",
            not report.problems,
            milliseconds,
            redact(app_check_words(report)),
        )
        for report in reports
    ]

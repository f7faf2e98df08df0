"""The dashboard's long operations on a partner: a service audits the acting user and queues the tasks after the
commit; progress is read back from what the tasks leave and the result backend."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery.result import AsyncResult
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.template.defaultfilters import pluralize
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from cpv.logs import redact
from customers import tasks as customer_tasks
from customers.models import CustomerConsent
from customers.selectors import without_access_counts
from customers.services import customers_needing_consent
from microsoft import identity
from microsoft.partner_center import PartnerCenterClient
from partners.models import AuditEvent, Customer, Partner
from partners.registrations import cloud_for
from partners.services import Actor, PartnerError, audit_record
from tokens import tasks as token_tasks
from tokens.access_tokens import access_token_get
from tokens.models import PartnerToken, TokenEvent
from tokens.outcomes import RenewalOutcome
from tokens.selectors import token_health_expression
from tokens.vault import get_vault, process_opens_tokens

logger = logging.getLogger(__name__)

RENEW = "renew"
SYNC = "sync"
APPLY = "apply"
APPLY_FAILED = "apply_failed"
KIND_LABELS = {
    RENEW: "Token renewal",
    SYNC: "Customer sync",
    APPLY: "ApplicationConsent for every customer that needs it",
    APPLY_FAILED: "ApplicationConsent again for the failed customers",
}
ACTIONS = {
    RENEW: "partner.renewal_requested",
    SYNC: "partner.sync_requested",
    APPLY: "partner.consents_requested",
    APPLY_FAILED: "partner.consents_requested",
}
# After this long with no sign of a worker, the page says so instead of "queued".
STALE_AFTER = timedelta(minutes=10)


def _require_active(partner: Partner, what: str) -> None:
    if partner.status != Partner.Status.ACTIVE:
        raise PartnerError(f"{partner.name} is {partner.get_status_display().lower()}: {what} needs an active partner.")


def operation_start(*, actor: Actor, partner: Partner, kind: str) -> AuditEvent:
    """Queue a long operation on a partner (renew, sync, apply consents): its audit row (`detail["operation"]`).
    Raises PartnerError when the partner is not active or there is nothing to do."""
    if kind not in KIND_LABELS:
        raise PartnerError(f"Unknown operation {kind!r}.")
    _require_active(partner, KIND_LABELS[kind].lower())
    operation = str(uuid.uuid4())
    now = timezone.now()
    detail: dict[str, Any] = {"operation": operation, "kind": kind, "started_at": now.isoformat()}
    queue: list[tuple[Any, dict[str, Any], str]] = []
    if kind == RENEW:
        if not PartnerToken.objects.filter(partner=partner).exclude(current_version="").exists():
            raise PartnerError(f"{partner.name} has no token to renew.")
        task_id = str(uuid.uuid4())
        queue.append((token_tasks.token_renew, {"partner_id": partner.pk, "force": True}, task_id))
        detail.update(total=1, task_id=task_id)
    elif kind == SYNC:
        task_id = str(uuid.uuid4())
        kwargs = {"partner_id": partner.pk, "apply": False, "correlation_id": operation}
        queue.append((customer_tasks.customers_sync, kwargs, task_id))
        detail.update(total=1, task_id=task_id)
    else:
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
        if not ids:
            waiting = without_access_counts([partner.pk]).get(partner.pk, 0)
            if waiting:
                raise PartnerError(
                    f"{waiting} customer{pluralize(waiting)} of {partner.name} "
                    f"{'waits' if waiting == 1 else 'wait'} without GDAP access (the customer list says what each "
                    "needs); the others need no ApplicationConsent."
                )
            raise PartnerError(f"No customer of {partner.name} needs ApplicationConsent.")
        # In batches, as after a sync: each batch is one audit row with its counts, never one per customer.
        for start in range(0, len(ids), customer_tasks.BATCH_SIZE):
            kwargs = {
                "partner_id": partner.pk,
                "customer_ids": ids[start : start + customer_tasks.BATCH_SIZE],
                "correlation_id": operation,
            }
            queue.append((customer_tasks.application_consent_batch, kwargs, str(uuid.uuid4())))
        detail.update(total=len(ids))
    with transaction.atomic():
        event = audit_record(actor=actor, action=ACTIONS[kind], partner=partner, detail=detail)

        def send() -> None:
            for task, kwargs, task_id in queue:
                task.apply_async(kwargs=kwargs, task_id=task_id)

        transaction.on_commit(send)
    logger.info("partner %s: %s queued (%d task(s)), operation %s", partner.code, kind, len(queue), operation)
    return event


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


def operation_progress(event: AuditEvent, *, now: datetime | None = None) -> Progress:
    """Read back the progress of the operation an audit row records (at most two queries)."""
    now = now or timezone.now()
    detail = event.detail or {}
    kind = str(detail.get("kind", ""))
    started = parse_datetime(str(detail.get("started_at", ""))) or event.created_at
    total = int(detail.get("total", 1) or 1)
    done = failed = 0
    state, message = "queued", "Waiting for a worker."
    partner_id = event.partner_id or 0
    if kind == RENEW:
        latest = (
            TokenEvent.objects.filter(partner_id=partner_id, created_at__gte=started)
            # Disabling versions an interrupted write left follows a move; it is not an outcome of its own.
            .exclude(kind=TokenEvent.Kind.RECONCILED)
            .order_by("-created_at", "-id")
            .first()
        )
        if latest is not None and latest.kind in TokenEvent.MOVED:
            # Renewed by this operation's task, or rotated meanwhile by an access-token request: either way the
            # partner has a fresh token.
            done, state, message = 1, "done", "Renewed."
        elif latest is not None and latest.kind == TokenEvent.Kind.RETRYING:
            state, message = "running", latest.message
        elif latest is not None:
            done, failed, state, message = 1, 1, "failed", latest.message
        else:
            task_state, result = _task_state(str(detail.get("task_id", "")))
            if task_state == "SUCCESS" and isinstance(result, dict):
                outcome = _renewal_outcome(result.get("outcome"))
                done = 1
                state = "done" if outcome.ok else "failed"
                failed = 0 if outcome.ok else 1
                message = outcome.in_words
            elif task_state in {"STARTED", "RETRY"}:
                state, message = "running", "Renewing."
            elif task_state == "FAILURE":
                done, failed, state, message = 1, 1, "failed", "The task failed; see the worker's log."
    elif kind == SYNC:
        synced = (
            AuditEvent.objects.filter(partner_id=partner_id, action="partner.customers_synced", created_at__gte=started)
            .order_by("-created_at", "-id")
            .first()
        )
        if synced is not None:
            d = synced.detail
            done, state = 1, "done"
            message = (
                f"{d.get('listed', 0)} customers listed: {d.get('created', 0)} new, {d.get('updated', 0)} changed, "
                f"{d.get('removed', 0)} removed."
            )
        else:
            task_state, result = _task_state(str(detail.get("task_id", "")))
            if task_state == "SUCCESS" and isinstance(result, dict) and result.get("outcome") == "failed":
                done, failed, state, message = 1, 1, "failed", "Partner Center refused the listing; see the log."
            elif task_state in {"STARTED", "RETRY"}:
                state, message = "running", "Listing customers in Partner Center."
            elif task_state == "FAILURE":
                done, failed, state, message = 1, 1, "failed", "The task failed; see the worker's log."
    elif kind in (APPLY, APPLY_FAILED):
        counts = CustomerConsent.objects.filter(
            customer__partner_id=partner_id, last_attempt_at__gte=started, lease_until__isnull=True
        ).aggregate(
            applied=Count("id", filter=Q(status=CustomerConsent.Status.APPLIED)),
            failed=Count("id", filter=Q(status=CustomerConsent.Status.FAILED)),
        )
        failed = counts["failed"]
        done = min(total, counts["applied"] + failed)
        if done >= total:
            state = "failed" if failed else "done"
            message = f"{counts['applied']} applied, {failed} failed."
        elif done:
            state, message = "running", f"{done} of {total} customers done ({failed} failed)."
    if state == "queued" and now - event.created_at > STALE_AFTER:
        state, message = "stale", "No worker has picked this up: check that the Celery workers are running."
    return Progress(
        operation=str(detail.get("operation", "")),
        kind=kind,
        label=KIND_LABELS.get(kind, kind),
        started_at=started,
        actor=event.actor_label,
        total=total,
        done=done,
        failed=failed,
        state=state,
        message=message,
    )


def operations_recent(partner: Partner, *, limit: int = 3) -> list[Progress]:
    """The partner's latest operations with their progress (bounded: 1 + 2 * `limit` queries at most)."""
    events = AuditEvent.objects.filter(partner=partner, action__in=set(ACTIONS.values())).order_by("-created_at", "-id")
    return [operation_progress(e) for e in events[:limit] if isinstance(e.detail, dict) and "operation" in e.detail]


def operation_find(partner: Partner, operation: uuid.UUID) -> AuditEvent | None:
    return (
        AuditEvent.objects.filter(partner=partner, action__in=set(ACTIONS.values()), detail__operation=str(operation))
        .order_by("-id")
        .first()
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


def _check_vault() -> str:
    vault = get_vault()
    vault.health()
    return "; ".join(f"{str(k).replace('_', ' ')}: {_words(v)}" for k, v in vault.describe().items())


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
        ("Vault", _check_vault),
    ):
        started = time.perf_counter()
        try:
            detail, ok = check(), True
        except Exception as exc:  # noqa: BLE001 - a check reports every failure, it never raises
            detail, ok = f"{exc.__class__.__name__}: {redact(str(exc))[:300]}", False
        results.append(LiveCheck(name, ok, round((time.perf_counter() - started) * 1000, 1), detail))
    return results

"""Posting a delivery: claimed with a lease (one worker at a time; a worker killed mid-attempt leaves a lease that
lapses, and the attempt is made again with the same webhook-id), signed as the Standard Webhooks specification
says with the subscription's secret (and the previous one during a rotation's overlap), posted once with a timeout,
and recorded as an attempt. A failure waits with exponential backoff and jitter; after RETRY_FOR it is `failed`."""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import requests
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from events.addresses import PinnedAdapter, UnsafeUrl, url_check
from events.models import Attempt, Delivery, Event, Subscription
from events.secrets import SecretUnreadable, secret_open
from microsoft.http import TimeoutSession

logger = logging.getLogger(__name__)

# Seconds to connect and to read an answer: a receiver should answer at once and do its work later.
TIMEOUT = (5.0, 15.0)
# A claimed delivery is another worker's again after this: well past the longest attempt.
LEASE = timedelta(seconds=60)
# A delivery the sweep handed to a task is not handed out again before this (its message may wait behind others).
QUEUE_HOLD = timedelta(minutes=5)
# Retried for a day after the event, then failed (a person may still send it again by hand).
RETRY_FOR = timedelta(days=1)
FIRST_DELAY = 10.0
MAX_DELAY = 6 * 3600.0
# Only the answer's status is kept; its body is never read.
USER_AGENT = "cpv-webhooks/1"


@dataclass(frozen=True)
class Sent:
    """One attempt's outcome: the delivery's state after it, or `skipped` when another worker holds it."""

    delivery_id: int
    outcome: str


def retry_delay(attempt: int, *, rng: random.Random | None = None) -> float:
    """Seconds before the attempt after `attempt` (1-based): 10 s tripled each time up to 6 h, with ±20 % jitter."""
    base = min(MAX_DELAY, FIRST_DELAY * 3 ** (attempt - 1))
    return base * (rng or random).uniform(0.8, 1.2)


def body_of(event: Event) -> bytes:
    """The JSON body of an event, the same bytes on every attempt: type, timestamp and data (Standard Webhooks'
    payload structure)."""
    document = {"type": event.type, "timestamp": event.created_at.isoformat(), "data": event.payload}
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def signing_secrets(subscription: Subscription, *, now: datetime) -> list[str]:
    """The secrets that sign now: the current one, and the previous one until its overlap ends. Raises
    SecretUnreadable."""
    code = str(subscription.code)
    found = [
        secret_open(
            subscription.secret_sealed, wanted_key_id=subscription.secret_key_id, subscription=code, slot="current"
        )
    ]
    if subscription.previous_secret_sealed and subscription.previous_until and now < subscription.previous_until:
        found.append(
            secret_open(
                subscription.previous_secret_sealed,
                wanted_key_id=subscription.previous_key_id,
                subscription=code,
                slot="previous",
            )
        )
    return found


def signed_headers(*, event: Event, body: bytes, secrets: list[str], at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers: webhook-id, webhook-timestamp, and one `v1,` signature per secret, spaced."""
    signatures = " ".join(Webhook(secret).sign(msg_id=event.webhook_id, timestamp=at, data=body) for secret in secrets)
    return {
        "webhook-id": event.webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


def _claim(delivery_id: int, *, owner: str, now: datetime) -> tuple[Delivery, Attempt] | None:
    """Take the delivery's lease if it is due and nobody holds it, and open its attempt row: None when not won."""
    with transaction.atomic():
        won = (
            Delivery.objects.filter(pk=delivery_id, state=Delivery.State.PENDING, next_attempt_at__lte=now)
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
            .update(lease_until=now + LEASE, lease_owner=owner, attempts=F("attempts") + 1, updated_at=now)
        )
        if not won:
            return None
        delivery = Delivery.objects.select_related("event", "subscription").get(pk=delivery_id)
        attempt = Attempt.objects.create(
            delivery=delivery, number=delivery.attempts, started_at=now, by_hand=delivery.by_hand
        )
    return delivery, attempt


def _post(delivery: Delivery, *, now: datetime) -> tuple[int | None, str]:
    """Sign and post once: (the HTTP status, or None with the error in words)."""
    subscription = delivery.subscription
    try:
        if not subscription.active:
            return None, "The subscription is disabled."
        address = url_check(subscription.url)
        secrets = signing_secrets(subscription, now=now)
    except (UnsafeUrl, SecretUnreadable) as exc:
        return None, str(exc)
    body = body_of(delivery.event)
    headers = signed_headers(event=delivery.event, body=body, secrets=secrets, at=now)
    session = TimeoutSession()
    if address is not None:
        # Connect to the address just checked; the Host header and the certificate keep the URL's name.
        session.mount(subscription.url, PinnedAdapter(address))
        headers["host"] = urlsplit(subscription.url).netloc
    try:
        with session:
            response = session.post(
                subscription.url, data=body, headers=headers, timeout=TIMEOUT, allow_redirects=False, stream=True
            )
            response.close()
    except requests.Timeout:
        return None, "The receiver did not answer in time."
    except requests.ConnectionError:
        return None, "The receiver could not be reached."
    except requests.RequestException as exc:
        return None, f"The request failed: {exc.__class__.__name__}."
    return response.status_code, ""


def delivery_send(*, delivery_id: int, owner: str = "", now: datetime | None = None) -> Sent:
    """Make one attempt of a due delivery if this worker wins its lease: the state after it (`delivered`, `pending`
    with its next time, `failed`), or `skipped` (not due, already done, or held by another worker)."""
    now = now or timezone.now()
    # Unique per claim (a message handed back after a worker died runs again under the same task id).
    owner = f"{owner[:36]}:{uuid.uuid4().hex[:12]}"
    claimed = _claim(delivery_id, owner=owner, now=now)
    if claimed is None:
        return Sent(delivery_id, "skipped")
    delivery, attempt = claimed
    started = time.monotonic()
    status, error = _post(delivery, now=now)
    duration = int((time.monotonic() - started) * 1000)
    ok = status is not None and 200 <= status < 300
    if status is not None and not ok:
        error = f"The receiver answered {status}."
    done_at = now + timedelta(milliseconds=duration)
    if ok:
        state, next_at = Delivery.State.DELIVERED, None
    elif delivery.by_hand or not delivery.subscription.active:
        # An attempt asked for by hand is one attempt: its failure is shown, not retried for a day. A disabled
        # subscription's deliveries end here (staff may send one again once it is active).
        state, next_at = Delivery.State.FAILED, None
    else:
        next_at = done_at + timedelta(seconds=retry_delay(delivery.attempts))
        give_up = next_at > delivery.event.created_at + RETRY_FOR
        state, next_at = (Delivery.State.FAILED, None) if give_up else (Delivery.State.PENDING, next_at)
    with transaction.atomic():
        Attempt.objects.filter(pk=attempt.pk).update(duration_ms=duration, status_code=status, error=error[:300])
        # Only the lease's holder writes the outcome: a lease that lapsed meanwhile is another attempt's now.
        Delivery.objects.filter(pk=delivery.pk, lease_owner=owner).update(
            state=state,
            next_attempt_at=next_at,
            lease_until=None,
            lease_owner="",
            by_hand=False,
            last_status=status,
            last_error=error[:300],
            delivered_at=done_at if ok else F("delivered_at"),
            updated_at=done_at,
        )
    if not ok:
        logger.warning(
            "webhook delivery %s of %s to %s, attempt %d: %s",
            delivery.code,
            delivery.event.type,
            delivery.subscription.name,
            delivery.attempts,
            error,
        )
    return Sent(delivery_id, state)


def deliveries_due(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    """Hand out the deliveries due now that no worker holds and no task was handed within QUEUE_HOLD, oldest first,
    marking them handed out (so a backlogged broker is not flooded with the same ids each minute): their ids."""
    now = now or timezone.now()
    with transaction.atomic():
        ids = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(state=Delivery.State.PENDING, next_attempt_at__lte=now)
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
            .filter(Q(queued_until__isnull=True) | Q(queued_until__lt=now))
            .order_by("next_attempt_at", "pk")
            .values_list("pk", flat=True)[:limit]
        )
        Delivery.objects.filter(pk__in=ids).update(queued_until=now + QUEUE_HOLD)
    return ids

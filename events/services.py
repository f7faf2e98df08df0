"""The outbox's services: an event written in its caller's transaction with a delivery per subscription that takes
its type, and the subscriptions' management (create, change, disable, rotate the secret, redeliver by hand), each
audited. Deliveries are posted by `events/delivery.py`, queued on commit."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from events import tasks
from events.addresses import UnsafeUrl, url_check
from events.models import Delivery, Event, EventType, Subscription
from events.secrets import secret_new, secret_open, secret_seal
from partners.models import Partner
from partners.services import Actor, audit_record

logger = logging.getLogger(__name__)

# How long the previous secret still signs after a rotation, so a receiver can switch without losing a delivery.
ROTATION_OVERLAP = timedelta(hours=24)
# Deliveries a task posts in one run.
TASK_BATCH = 20


class SubscriptionError(ValueError):
    """A subscription could not be saved as asked; the message is meant for the person asking."""


def _data(partner: Partner | None, tenant: uuid.UUID | str | None, detail: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if partner is not None:
        data["partner"] = {
            "code": str(partner.code),
            "name": partner.name,
            "tenant_id": str(partner.tenant_id) if partner.tenant_id else None,
            "status": partner.status,
        }
    if tenant:
        data["customer"] = {"tenant_id": str(tenant)}
    return {**data, **detail}


def _subscribers(event_type: str) -> list[Subscription]:
    active = Subscription.objects.filter(active=True).only("pk", "event_types")
    return [s for s in active if event_type in s.event_types]


def events_record(
    *,
    type: EventType,
    partner: Partner | None = None,
    customer_tenant_ids: Sequence[uuid.UUID | str | None] = (None,),
    detail: dict[str, Any] | None = None,
) -> list[Event]:
    """Write one event per customer tenant (one, with no customer, by default) and a pending delivery to each active
    subscription that takes `type`, in the caller's transaction (so the event of a change rolled back is never sent);
    the deliveries are queued once it commits. `detail` must hold no secret. The events, in order."""
    subscribers = _subscribers(type)
    now = timezone.now()
    # Joins the caller's transaction (no savepoint); called outside one, the events and deliveries commit together.
    with transaction.atomic(savepoint=False):
        events = Event.objects.bulk_create(
            [
                Event(
                    type=type,
                    partner=partner,
                    customer_tenant_id=tenant,
                    payload=_data(partner, tenant, detail or {}),
                    created_at=now,
                )
                for tenant in customer_tenant_ids
            ]
        )
        deliveries = Delivery.objects.bulk_create(
            [Delivery(event=event, subscription=s, next_attempt_at=now) for event in events for s in subscribers]
        )
        if deliveries:
            ids = [d.pk for d in deliveries]
            transaction.on_commit(lambda: deliveries_queue(ids), robust=True)
    return events


def event_record(
    *,
    type: EventType,
    partner: Partner | None = None,
    customer_tenant_id: uuid.UUID | str | None = None,
    detail: dict[str, Any] | None = None,
) -> Event:
    """One event, as `events_record`: the Event."""
    return events_record(type=type, partner=partner, customer_tenant_ids=(customer_tenant_id,), detail=detail)[0]


def deliveries_queue(ids: Iterable[int]) -> int:
    """Queue the deliveries' task, TASK_BATCH to a message: how many messages. A broker that refuses loses nothing:
    the beat's sweep finds them due."""
    ids = list(ids)
    sent = 0
    for start in range(0, len(ids), TASK_BATCH):
        try:
            tasks.deliveries_send.apply_async(kwargs={"delivery_ids": ids[start : start + TASK_BATCH]})
        except Exception as exc:  # noqa: BLE001 - whatever the broker raised, the sweep finds the deliveries due
            logger.warning("could not queue %d webhook deliveries: %s", len(ids[start:]), exc.__class__.__name__)
            break
        sent += 1
    return sent


def _user(actor: Actor) -> Any:
    return actor if actor is not None and actor.is_authenticated else None


# --- subscriptions ------------------------------------------------------------------------------------------


def _clean(name: str, url: str, event_types: Iterable[str]) -> tuple[str, str, list[str]]:
    name, url = name.strip(), url.strip()
    if not name:
        raise SubscriptionError("Give the subscription a name.")
    types = sorted(set(event_types))
    unknown = [t for t in types if t not in EventType.values]
    if unknown:
        raise SubscriptionError(f"Unknown event types: {', '.join(unknown)}.")
    if not types:
        raise SubscriptionError("Choose at least one event type.")
    try:
        url_check(url)
    except UnsafeUrl as exc:
        raise SubscriptionError(str(exc)) from None
    return name, url, types


def subscription_create(
    *, actor: Actor, name: str, url: str, event_types: Iterable[str], active: bool = True
) -> tuple[Subscription, str]:
    """A new active subscription and its signing secret, which is returned here once and never shown again.
    Raises SubscriptionError."""
    name, url, types = _clean(name, url, event_types)
    secret = secret_new()
    with transaction.atomic():
        subscription = Subscription(name=name, url=url, event_types=types, active=active, created_by=_user(actor))
        subscription.secret_sealed, subscription.secret_key_id = secret_seal(
            secret, subscription=str(subscription.code), slot="current"
        )
        subscription.save()
        audit_record(
            actor=actor,
            action="webhook.created",
            target=subscription,
            detail={"name": name, "url": url, "event_types": types, "active": active},
        )
    return subscription, secret


def subscription_update(
    *, actor: Actor, subscription: Subscription, name: str, url: str, event_types: Iterable[str], active: bool
) -> Subscription:
    """Change a subscription's name, URL, event types or whether it is active. Raises SubscriptionError."""
    name, url, types = _clean(name, url, event_types)
    with transaction.atomic():
        locked = Subscription.objects.select_for_update().get(pk=subscription.pk)
        before = {"name": locked.name, "url": locked.url, "event_types": locked.event_types, "active": locked.active}
        after = {"name": name, "url": url, "event_types": types, "active": active}
        changed = {key: value for key, value in after.items() if before[key] != value}
        if not changed:
            return locked
        for key, value in changed.items():
            setattr(locked, key, value)
        locked.save(update_fields=[*changed, "updated_at"])
        audit_record(
            actor=actor,
            action="webhook.changed",
            target=locked,
            detail={"name": locked.name, "before": {k: before[k] for k in changed}, "after": changed},
        )
    return locked


def subscription_rotate(
    *, actor: Actor, subscription: Subscription, overlap: timedelta = ROTATION_OVERLAP, now: datetime | None = None
) -> tuple[Subscription, str]:
    """A new signing secret (returned once); the current one becomes the previous and still signs beside it until
    `overlap` has passed."""
    now = now or timezone.now()
    secret = secret_new()
    with transaction.atomic():
        locked = Subscription.objects.select_for_update().get(pk=subscription.pk)
        code = str(locked.code)
        # The current secret moves to the previous slot sealed anew: its seal is bound to its slot.
        from_current = _open_current(locked)
        locked.previous_secret_sealed, locked.previous_key_id = secret_seal(
            from_current, subscription=code, slot="previous"
        )
        locked.previous_until = now + overlap
        locked.secret_sealed, locked.secret_key_id = secret_seal(secret, subscription=code, slot="current")
        locked.rotated_at = now
        locked.save()
        audit_record(
            actor=actor,
            action="webhook.secret_rotated",
            target=locked,
            detail={"name": locked.name, "previous_until": locked.previous_until.isoformat()},
        )
    return locked, secret


def _open_current(subscription: Subscription) -> str:
    return secret_open(
        subscription.secret_sealed,
        wanted_key_id=subscription.secret_key_id,
        subscription=str(subscription.code),
        slot="current",
    )


def delivery_redeliver(*, actor: Actor, delivery: Delivery) -> Delivery:
    """Send a delivery again now, by hand, whatever its state (the receiver dedupes by webhook-id). Raises
    SubscriptionError while an attempt is in flight."""
    now = timezone.now()
    with transaction.atomic():
        claimed = (
            Delivery.objects.filter(pk=delivery.pk)
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
            .update(state=Delivery.State.PENDING, next_attempt_at=now, queued_until=None, by_hand=True, updated_at=now)
        )
        if not claimed:
            raise SubscriptionError("An attempt of this delivery is in flight; try again in a minute.")
        delivery.refresh_from_db()
        audit_record(
            actor=actor,
            action="webhook.redelivered",
            target=delivery.subscription,
            detail={"delivery": str(delivery.code), "event": str(delivery.event.code), "type": delivery.event.type},
        )
        ids = [delivery.pk]
        transaction.on_commit(lambda: deliveries_queue(ids), robust=True)
    return delivery

"""The outbox of outbound events, the subscriptions that receive them and each delivery with its attempts.

An `Event` is written by the service that changed the state, in its transaction; a `Delivery` per subscribed
`Subscription` is written beside it, and `events/delivery.py` posts it later, signed as the Standard Webhooks
specification says. A subscription's signing secret is kept sealed (`events/secrets.py`), never in the clear."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from partners.models import Partner


class EventType(models.TextChoices):
    """The published vocabulary of event types (a contract: docs/ARCHITECTURE.md)."""

    PARTNER_ACTIVATED = "partner.activated", "Partner activated"
    PARTNER_CONSENT_NEEDED = "partner.consent_needed", "Partner must consent again"
    PARTNER_RENEWAL_FAILING = "partner.renewal_failing", "Partner's token renewal failing"
    PARTNER_MFA_VERDICT_CHANGED = "partner.mfa_verdict_changed", "Partner's MFA verdict changed"
    CUSTOMER_CONSENTED = "customer.consented", "Customer consented"
    CUSTOMER_CONSENT_FAILED = "customer.consent_failed", "Customer's consent failed"
    CUSTOMER_DRIFTED = "customer.drifted", "Customer's grants drifted"
    CUSTOMER_MISSING = "customer.missing", "App missing from the customer's tenant"
    CUSTOMER_VERIFIED = "customer.verified", "Customer's consent verified"
    CUSTOMER_WITHOUT_ACCESS = "customer.without_access", "Customer without GDAP access"


class Event(models.Model):
    """One state change, announced: `code` is its `webhook-id`, the same on every attempt of every delivery."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    type = models.CharField(max_length=40, choices=EventType.choices, db_index=True)
    # No database constraint: PostgreSQL checks a deferred foreign key at COMMIT with a FOR KEY SHARE lock on the
    # partner's row, which a customer sync holds FOR UPDATE before it locks the customers, while an ApplicationConsent
    # that announces its outcome holds its customer's lock until that COMMIT: the two would deadlock. The payload
    # names the partner anyway, and partners are never deleted (a stray invitation keeps its row).
    partner = models.ForeignKey(
        Partner, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_constraint=False
    )
    customer_tenant_id = models.UUIDField(null=True, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.type} {self.code}"

    @property
    def webhook_id(self) -> str:
        return f"msg_{self.code.hex}"


class Subscription(models.Model):
    """An HTTPS endpoint and the event types it receives, with its signing secret sealed; during a rotation the
    previous secret too, until `previous_until`."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100)
    url = models.URLField(max_length=2000)
    event_types = models.JSONField(default=list)
    active = models.BooleanField(default=True)
    secret_sealed = models.BinaryField()
    secret_key_id = models.CharField(max_length=16)
    previous_secret_sealed = models.BinaryField(null=True, blank=True)
    previous_key_id = models.CharField(max_length=16, blank=True)
    previous_until = models.DateTimeField(null=True, blank=True)
    rotated_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "pk"]

    def __str__(self) -> str:
        return self.name


class Delivery(models.Model):
    """One event to one subscription: claimed with a lease by one worker at a time, retried with backoff."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="deliveries")
    state = models.CharField(max_length=12, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=64, blank=True)
    queued_until = models.DateTimeField(
        null=True, blank=True, help_text="Handed to a task by the sweep: not handed out again before this"
    )
    by_hand = models.BooleanField(default=False, help_text="The next attempt was asked for by hand")
    last_status = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [models.UniqueConstraint(fields=["event", "subscription"], name="delivery_once_per_event")]
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="delivery_due")]

    def __str__(self) -> str:
        return f"{self.event_id} → {self.subscription_id}: {self.state}"


class Attempt(models.Model):
    """One POST of a delivery: when, how long, and what came back (an HTTP status, or an error in words)."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_rows")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    queued_until = models.DateTimeField(
        null=True, blank=True, help_text="Handed to a task by the sweep: not handed out again before this"
    )
    by_hand = models.BooleanField(default=False)

    class Meta:
        ordering = ["delivery", "number"]

    def __str__(self) -> str:
        return f"{self.delivery_id} #{self.number}: {self.status_code or self.error}"

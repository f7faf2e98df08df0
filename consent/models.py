"""Consent flows and their events."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from consent.outcomes import outcome
from partners.models import Partner


class ConsentFlow(models.Model):
    """One attempt by a partner's admin to consent, from landing page to result; its msal flow is kept sealed, found by
    a hash of `state` and bound to one browser by a cookie's hash."""

    class Status(models.TextChoices):
        CREATED = "created", "Created"
        REDIRECTED = "redirected", "Sent to Microsoft"
        CODE_RECEIVED = "code_received", "Came back from Microsoft"
        TOKEN_ACQUIRED = "token_acquired", "Token acquired"
        VERIFIED = "verified", "Verified with Partner Center"
        VAULTED = "vaulted", "Consented"
        DECLINED = "declined", "Declined"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired"

    class Kind(models.TextChoices):
        FIRST = "first", "First consent"
        RECONSENT = "reconsent", "Re-consent"

    class RoleEvidence(models.TextChoices):
        """Where the proof that the consenting user is a Global Administrator came from."""

        ID_TOKEN = "id_token", "The id_token's wids claim"
        # Older consents only: `wids` in a Partner Center token is documented nowhere, so it is no longer read.
        ACCESS_TOKEN = "access_token", "The Partner Center token's wids claim"
        GRAPH = "graph", "Microsoft Graph (the user's directory roles)"
        UNPROVEN = "unproven", "Not proven (accepted on the Admin Agent check alone)"

    class FailureReason(models.TextChoices):
        """Why an attempt ended without a consent; consent.outcomes has the words for each."""

        DECLINED = "declined", "Declined"
        NOT_GLOBAL_ADMIN = "not_global_admin", "Not a Global Administrator"
        ROLE_UNPROVEN = "role_unproven", "Global Administrator role not proven"
        ROLE_PERMISSION_MISSING = "role_permission_missing", "The app does not ask to read directory roles"
        PARTNER_CENTER_REFUSED = "partner_center_refused", "Partner Center refused the token"
        NOT_ADMIN_AGENT = "not_admin_agent", "Not an Admin Agent"
        NO_MFA = "no_mfa", "No multi-factor authentication"
        CONDITIONAL_ACCESS = "conditional_access", "Blocked by Conditional Access"
        WRONG_TENANT = "wrong_tenant", "Another tenant"
        TENANT_TAKEN = "tenant_taken", "Tenant already registered"
        EXPIRED_LINK = "expired_link", "Link expired or replaced"
        EXPIRED = "expired", "Never came back in time"
        MICROSOFT_ERROR = "microsoft_error", "Microsoft error"
        OUR_ERROR = "our_error", "Control panel error"

    class Origin(models.TextChoices):
        INVITATION = "invitation", "Staff invitation"
        SELF_ONBOARDING = "self_onboarding", "Self-onboarding"
        RECONSENT_LINK = "reconsent_link", "Re-consent link"

    # The states a flow can still move out of; the rest are final.
    OPEN = (Status.CREATED, Status.REDIRECTED, Status.CODE_RECEIVED, Status.TOKEN_ACQUIRED, Status.VERIFIED)

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="consent_flows")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.FIRST)
    origin = models.CharField(max_length=24, choices=Origin.choices, default=Origin.INVITATION)
    status = models.CharField(max_length=24, choices=Status.choices, default=Status.CREATED, db_index=True)
    # Why a flow failed, as a stable code the result page and the dashboard explain in words.
    failure_reason = models.CharField(max_length=48, choices=FailureReason.choices, blank=True)
    failure_detail = models.CharField(max_length=500, blank=True)
    state_hash = models.CharField(max_length=64, unique=True, null=True, blank=True)
    browser_hash = models.CharField(max_length=64, blank=True)
    sealed_flow = models.BinaryField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(db_index=True)
    # Who consented, once known: the tenant and the user's object id (never an email as identity).
    tenant_id = models.UUIDField(null=True, blank=True)
    user_oid = models.UUIDField(null=True, blank=True)
    user_name = models.CharField(max_length=254, blank=True, help_text="preferred_username, for people to read")
    vault_version = models.CharField(max_length=64, blank=True)
    # Set once the role was checked: how the Global Administrator role was proven (or that it was not).
    role_evidence = models.CharField(max_length=16, choices=RoleEvidence.choices, blank=True, db_default="")
    # The required-permission list (microsoft.permissions.fingerprint) this attempt asked Microsoft for.
    permissions_fingerprint = models.CharField(max_length=16, blank=True, db_default="")
    # The consent link it was started from: its generation (Partner.link_generation) and when it stops working.
    # A failed attempt may be tried again from the result page while that link is still the partner's live one.
    link_generation = models.PositiveIntegerField(null=True, blank=True)
    link_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["partner", "-created_at"]),
            models.Index(fields=["status", "expires_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.partner} {self.get_kind_display()} ({self.get_status_display()})"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN

    @property
    def staff_note(self) -> str:
        """What the vendor's staff must do about this attempt's failure, where there is something."""
        return outcome(self.failure_reason).staff_note if self.failure_reason else ""


class ConsentFlowEvent(models.Model):
    """One step of a flow's timeline. `detail` never holds a secret."""

    flow = models.ForeignKey(ConsentFlow, on_delete=models.CASCADE, related_name="events")
    status = models.CharField(max_length=24, choices=ConsentFlow.Status.choices)
    message = models.CharField(max_length=500, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    # When the step happened: a callback's steps are written together with its outcome, each with its own time.
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.created_at:%H:%M:%S} {self.status}"


__all__ = ["ConsentFlow", "ConsentFlowEvent"]

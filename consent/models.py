"""Consent flows, their events, and each partner's token pointer. The vault's own table lives in consent/vault/."""

from __future__ import annotations

import uuid

from django.db import models

# The local vault's table is defined beside its backend; importing it here lets Django find it.
from consent.outcomes import outcome
from consent.vault.models import VaultSecretVersion
from partners.models import Customer, Partner


class ConsentFlow(models.Model):
    """One attempt by a partner's admin to consent to the vendor's app, from the landing page to the result.

    The in-progress sign-in (msal's flow: state, nonce, PKCE verifier) is kept here sealed, found by a
    hash of `state`, and bound to one browser by a hash of a cookie's value.
    """

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
        ACCESS_TOKEN = "access_token", "The Partner Center token's wids claim"
        GRAPH = "graph", "Microsoft Graph (the user's directory roles)"
        UNPROVEN = "unproven", "Not proven (accepted on the Admin Agent check alone)"

    class Origin(models.TextChoices):
        INVITATION = "invitation", "Staff invitation"
        SELF_ONBOARDING = "self_onboarding", "Self-onboarding"
        RECONSENT_LINK = "reconsent_link", "Re-consent link"

    # The states a flow can still move out of; the rest are final.
    OPEN = (Status.CREATED, Status.REDIRECTED, Status.CODE_RECEIVED, Status.TOKEN_ACQUIRED, Status.VERIFIED)
    SUCCEEDED = (Status.VAULTED,)

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="consent_flows")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.FIRST)
    origin = models.CharField(max_length=24, choices=Origin.choices, default=Origin.INVITATION)
    status = models.CharField(max_length=24, choices=Status.choices, default=Status.CREATED, db_index=True)
    # Why a flow failed, as a stable code the result page and the dashboard explain in words.
    failure_reason = models.CharField(max_length=48, blank=True)
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
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.created_at:%H:%M:%S} {self.status}"


class PartnerToken(models.Model):
    """Where a partner's refresh token lives in the vault, and what is known about it without reading it.

    The token itself is only ever in the vault. `fingerprint` is an HMAC of it, to tell tokens apart.
    Moves of the pointer happen with this row locked (`select_for_update`), which is also what keeps two
    workers from redeeming one partner's token at once.
    """

    partner = models.OneToOneField(Partner, on_delete=models.PROTECT, related_name="token")
    secret_name = models.CharField(max_length=127, unique=True)
    current_version = models.CharField(max_length=64, blank=True)
    previous_version = models.CharField(max_length=64, blank=True)
    # The previous version is disabled once the pointer has moved; until then a sweep retries it.
    previous_disabled = models.BooleanField(default=True)
    version_count = models.PositiveIntegerField(default=0)
    fingerprint = models.CharField(max_length=64, blank=True)
    generation = models.PositiveIntegerField(default=0)
    consent_flow = models.ForeignKey(ConsentFlow, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    consented_by_oid = models.UUIDField(null=True, blank=True)
    consented_by_name = models.CharField(max_length=254, blank=True)
    scopes = models.CharField(max_length=1000, blank=True)
    obtained_at = models.DateTimeField(null=True, blank=True)
    last_renewed_at = models.DateTimeField(null=True, blank=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Renewal bookkeeping (consent/renewal.py). A failure newer than the last renewal means "failing".
    failure_count = models.PositiveIntegerField(default=0, help_text="Failed renewals since the last success")
    last_error = models.CharField(max_length=500, blank=True)
    last_error_kind = models.CharField(max_length=32, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    # Work further away than the broker's visibility timeout waits here, never as a long ETA.
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # When a sweep last queued a renewal: a second (duplicate) sweep within the hour does not queue again.
    renewal_queued_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"token of {self.partner}"


class TokenEvent(models.Model):
    """One outcome of a partner's token upkeep (a renewal, a failure and its reason). Never holds a secret."""

    class Kind(models.TextChoices):
        RENEWED = "renewed", "Renewed"
        ROTATED = "rotated", "Rotated by an access-token request"
        RETRYING = "retrying", "Failed, will retry"
        GAVE_UP = "gave_up", "Failed after every retry"
        RECONSENT_NEEDED = "reconsent_needed", "Re-consent needed"
        MFA_REQUIRED = "mfa_required", "MFA required"
        CONDITIONAL_ACCESS = "conditional_access", "Blocked by Conditional Access"
        OPERATOR_ALERT = "operator_alert", "Operator alert"
        BUDGET = "budget", "Vault version budget reached"
        RECONCILED = "reconciled", "Recovered from an interrupted renewal"
        PREVIOUS_DISABLED = "previous_disabled", "Previous version disabled"

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="token_events")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    message = models.CharField(max_length=500)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["partner", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.partner} {self.kind}"


class CustomerConsent(models.Model):
    """The vendor app's ApplicationConsent in one customer tenant: what was granted, when, and the last error."""

    class Status(models.TextChoices):
        PENDING = "pending", "Not applied yet"
        APPLIED = "applied", "Applied"
        FAILED = "failed", "Failed"

    customer = models.OneToOneField(Customer, on_delete=models.CASCADE, related_name="application_consent")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    # The grants (CPV_APPLICATION_GRANTS) last applied with success, and their hash to notice a change.
    grants = models.JSONField(default=dict, blank=True)
    grants_hash = models.CharField(max_length=64, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    # MS-RequestId of the call in progress: the same one is sent again when the call is retried.
    pending_request_id = models.CharField(max_length=36, blank=True)
    # A short claim, so two workers never call Partner Center for one customer at once.
    lease_until = models.DateTimeField(null=True, blank=True)
    # Who holds the claim: a task's id, the same across its retries and a redelivery of its message. (A default in
    # the database too: rows written without the column, by code older than it, stay valid.)
    lease_owner = models.CharField(max_length=64, blank=True, db_default="")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"ApplicationConsent in {self.customer} ({self.status})"


class PartnerCoverage(models.Model):
    """A partner's present customers, and how many of them have the vendor's app applied or failed, kept as
    counters so that pages read one row per partner instead of counting customers.

    Only consent/coverage.py writes them, in the transaction of the change they follow: customer sync recounts
    the partner, ApplicationConsent shifts them by the status it replaced. A missing row counts as zeros until
    the first change; `recount_coverage` recounts from scratch (after a bulk load, or to check for drift).
    """

    partner = models.OneToOneField(
        Partner, on_delete=models.CASCADE, primary_key=True, related_name="coverage_counters"
    )
    customers = models.IntegerField(default=0)
    consented = models.IntegerField(default=0)
    failed = models.IntegerField(default=0)
    # When the row was last recounted from scratch (a shift leaves it alone).
    counted_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"coverage of {self.partner_id}: {self.consented}/{self.customers}, {self.failed} failed"


__all__ = [
    "ConsentFlow",
    "ConsentFlowEvent",
    "CustomerConsent",
    "PartnerCoverage",
    "PartnerToken",
    "TokenEvent",
    "VaultSecretVersion",
]

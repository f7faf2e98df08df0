"""Each partner's token pointer and the events of its upkeep (the vault's table is in tokens/vault/)."""

from __future__ import annotations

from django.db import models

# The local vault's table is defined beside its backend; importing it here lets Django find it.
from partners.models import Partner
from tokens.vault.models import VaultSecretVersion


class PartnerToken(models.Model):
    """Where a partner's refresh token lives in the vault (never here; `fingerprint` is its HMAC). Its row lock
    serialises moves and keeps two workers from redeeming one token at once."""

    partner = models.OneToOneField(Partner, on_delete=models.PROTECT, related_name="token")
    secret_name = models.CharField(max_length=127, unique=True)
    # The Key Vault of VAULT_URLS the secret lives in, chosen when the partner's first token was stored; empty for
    # the embedded vault, and for a token stored before vaults were recorded (the first of VAULT_URLS holds those).
    vault_url = models.CharField(max_length=255, blank=True, default="")
    current_version = models.CharField(max_length=64, blank=True)
    previous_version = models.CharField(max_length=64, blank=True)
    # The previous version is disabled once the pointer has moved; until then a sweep retries it.
    previous_disabled = models.BooleanField(default=True)
    version_count = models.PositiveIntegerField(default=0)
    fingerprint = models.CharField(max_length=64, blank=True)
    generation = models.PositiveIntegerField(default=0)
    consent_flow = models.ForeignKey(
        "consent.ConsentFlow", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    consented_by_oid = models.UUIDField(null=True, blank=True)
    consented_by_name = models.CharField(max_length=254, blank=True)
    scopes = models.CharField(max_length=1000, blank=True)
    obtained_at = models.DateTimeField(null=True, blank=True)
    last_renewed_at = models.DateTimeField(null=True, blank=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Renewal bookkeeping (tokens/renewal.py). A failure newer than the last renewal means "failing".
    failure_count = models.PositiveIntegerField(default=0, help_text="Failed renewals since the last success")
    last_error = models.CharField(max_length=500, blank=True)
    last_error_kind = models.CharField(max_length=32, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    # When staff revoked the token (its versions disabled in the vault); cleared by the next consent or import.
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Work further away than the broker's visibility timeout waits here, never as a long ETA.
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # When a sweep last queued a renewal: a second (duplicate) sweep within the hour does not queue again.
    renewal_queued_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "consent_partnertoken"

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

    # The kinds that mean the stored token moved to a new version: a renewal, or an access-token request that
    # kept the rotated token. Whatever asks "did the token move?" reads this.
    MOVED = (Kind.RENEWED, Kind.ROTATED)

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="token_events")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    message = models.CharField(max_length=500)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "consent_tokenevent"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["partner", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.partner} {self.kind}"


class OperatorAlert(models.Model):
    """A condition operators must act on, one row each, open while `cleared_at` is empty; emailed once when it opens."""

    class Condition(models.TextChoices):
        CREDENTIAL_REFUSED = "credential_refused", "The control panel's app credential was refused"
        RENEWALS_FAILING = "renewals_failing", "Renewals are failing for many partners"
        TOKENS_EXPIRING = "tokens_expiring", "Tokens near the end of their 90 days"
        APP_NOT_FOUND = "app_not_found", "Microsoft does not find the control panel's app for several partners"
        GDAP_ENDING = "gdap_ending", "Partners' GDAP relationships end or have ended"
        CREDENTIAL_FALLBACK = "credential_fallback", "Microsoft refused a credential of the app: an older one signed in"
        CREDENTIAL_EXPIRING = "credential_expiring", "The app's credentials expire within 30 days"
        CREDENTIAL_EXPIRING_SOON = "credential_expiring_soon", "The app's credentials expire within 7 days"
        APP_CHECK_FAILED = "app_check_failed", "The self-check of the control panel's app found problems"

    condition = models.CharField(max_length=32, choices=Condition.choices, unique=True)
    message = models.CharField(max_length=500)
    raised_at = models.DateTimeField()
    cleared_at = models.DateTimeField(null=True, blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.get_condition_display()} ({'open' if self.cleared_at is None else 'cleared'})"


__all__ = ["OperatorAlert", "PartnerToken", "TokenEvent", "VaultSecretVersion"]

"""The partner directory and the audit log."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from cpv.clouds import ALL_PARTNER_CLOUDS, GLOBAL


class Partner(models.Model):
    """A Microsoft CSP partner that consents (or is invited to consent) to the vendor's app."""

    class Environment(models.TextChoices):
        PRODUCTION = "production", "Production"
        SANDBOX = "sandbox", "Integration sandbox"

    class Status(models.TextChoices):
        INVITED = "invited", "Invited"
        PENDING = "pending", "Pending consent"
        ACTIVE = "active", "Active"
        RECONSENT_NEEDED = "reconsent_needed", "Re-consent needed"
        DEACTIVATED = "deactivated", "Deactivated"

    # URLs carry this code, never the integer id.
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200)
    contact_email = models.EmailField(max_length=254)
    # Unknown until the partner's admin consents (or an invitation pins it); unique once known.
    tenant_id = models.UUIDField(null=True, blank=True, unique=True)
    default_domain = models.CharField(max_length=253, blank=True)
    cloud = models.CharField(max_length=16, choices=ALL_PARTNER_CLOUDS, default=GLOBAL)
    environment = models.CharField(max_length=16, choices=Environment.choices, default=Environment.PRODUCTION)
    status = models.CharField(max_length=24, choices=Status.choices, default=Status.INVITED, db_index=True)
    status_reason = models.CharField(max_length=500, blank=True)
    # Partner Center's `isMfaCompliant` answer (every call sends `ValidateMfa: true`) on the partner's last call
    # that carried one, and when it came: unknown (None) until Partner Center has been called.
    mfa_compliant = models.BooleanField(null=True, blank=True)
    mfa_checked_at = models.DateTimeField(null=True, blank=True)
    # The required-permission list (microsoft.permissions.fingerprint) of the partner's last successful consent,
    # and what Microsoft reported granting then (API -> permission names): a feature that needs a permission the
    # partner has not granted says so instead of failing.
    permissions_fingerprint = models.CharField(max_length=16, blank=True, db_default="")
    permissions_granted = models.JSONField(default=dict, blank=True, db_default={})
    # The list the partner was last asked (by email and on the portal) to consent to again, so it is asked once.
    permissions_asked_fingerprint = models.CharField(max_length=16, blank=True, db_default="")
    # Self-onboarding: the form's one-time key, so a double submission finds the partner it created.
    signup_key = models.UUIDField(null=True, blank=True, unique=True, editable=False)
    # Which consent link is the partner's live one: a link carries the generation it was issued with, and a newer
    # link, or a consent that succeeds, moves the generation on so that every earlier link stops working.
    link_generation = models.PositiveIntegerField(default=0, db_default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    # A stray invitation that staff deleted: kept for its audit trail (which protects it), shown nowhere else.
    deleted_at = models.DateTimeField(null=True, blank=True)
    # Offboarding (customers/offboarding.py): from its start no consent is applied or repaired for the partner while
    # the vendor's app is taken out of each customer; once that is done the token is revoked and the partner
    # deactivated.
    offboarding_started_at = models.DateTimeField(null=True, blank=True)
    offboarded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name", "id"]
        indexes = [
            models.Index(fields=["cloud", "environment", "status"]),
            # The partner list's default order, a page at a time: read in index order, never sorted whole.
            models.Index(
                fields=["name", "id"], condition=models.Q(deleted_at__isnull=True), name="partner_present_by_name"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Customer(models.Model):
    """A partner's customer tenant as Partner Center last listed it; a vanished one gets `removed_at`."""

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="customers")
    tenant_id = models.UUIDField()
    company_name = models.CharField(max_length=300, blank=True)
    domain = models.CharField(max_length=253, blank=True)
    relationship = models.CharField(max_length=64, blank=True)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    # Set when a complete listing no longer contains the customer; cleared if it reappears.
    removed_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["company_name", "id"]
        constraints = [models.UniqueConstraint(fields=["partner", "tenant_id"], name="customer_unique_per_partner")]
        indexes = [
            models.Index(fields=["partner", "removed_at"]),
            # A partner's page lists its present customers in this order, a page at a time from a sort key.
            models.Index(
                fields=["partner", "company_name", "id"],
                condition=models.Q(removed_at__isnull=True),
                name="customer_present_by_name",
            ),
        ]

    def __str__(self) -> str:
        return self.company_name or str(self.tenant_id)


class AuditEvent(models.Model):
    """An append-only record of who did what. The database refuses updates (and, on PostgreSQL, deletes)."""

    # None means the system (a worker, beat, a management command run by no one in particular).
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_label = models.CharField(max_length=200, help_text="The actor's name when it acted, or 'system'.")
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    partner = models.ForeignKey(Partner, null=True, blank=True, on_delete=models.PROTECT, related_name="audit_events")
    detail = models.JSONField(default=dict, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["partner", "-created_at"]),
            models.Index(fields=["action", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action}"


class StaffIdentity(models.Model):
    """A staff account's Entra identity in the vendor's tenant, matched by `tid` and `oid` (immutable), never by a name
    or an email a tenant admin can reassign."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_identity")
    tenant_id = models.UUIDField()
    object_id = models.UUIDField()
    bound_at = models.DateTimeField(auto_now_add=True)
    # What Microsoft last called the account (for the staff page; never used to match).
    last_username = models.CharField(max_length=254, blank=True)
    last_signed_in_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant_id", "object_id"], name="staff_identity_tenant_object_unique")
        ]

    def __str__(self) -> str:
        return f"{self.object_id} in {self.tenant_id}"


class SignInFailure(models.TextChoices):
    """Why a staff sign-in was refused, as its audit row says."""

    WRONG_PASSWORD = "wrong_password", "Wrong password (or no such account)"
    WRONG_CODE = "wrong_code", "Right password, wrong authenticator code"
    PASSWORD_NOT_ALLOWED = "password_not_allowed", "A password sign-in by an account that signs in with Microsoft"
    FROZEN = "frozen", "Password sign-in frozen after too many wrong codes"
    MICROSOFT_REFUSED = "microsoft_refused", "Microsoft sign-in refused"


class StaffPasswordGuard(models.Model):
    """The break-glass's own count: wrong TOTP codes given after the account's right password. It never expires and
    only a right code resets it; at `WRONG_CODES_FREEZE` the account's password sign-in is frozen until another
    admin (the staff page) or `manage.py staff_unfreeze` releases it."""

    WRONG_CODES_FREEZE = 10

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="password_guard")
    wrong_codes = models.PositiveIntegerField(default=0)
    last_wrong_code_at = models.DateTimeField(null=True, blank=True)
    frozen_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.user_id}: {self.wrong_codes} wrong code(s){' (frozen)' if self.frozen_at else ''}"


class SentEmail(models.Model):
    """An email that went out to a partner's contact (when, to whom, its subject; never its body, which may hold a
    consent link), so staff can see on the partner's page that one did."""

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="sent_emails")
    to = models.EmailField(max_length=254)
    subject = models.CharField(max_length=300)
    sent_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-sent_at", "-id"]
        indexes = [models.Index(fields=["partner", "-sent_at"])]

    def __str__(self) -> str:
        return f"{self.sent_at:%Y-%m-%d %H:%M} to {self.to}: {self.subject}"


class Operation(models.Model):
    """A long staff action on a partner (renew, sync, apply consents): who asked, when, how much it covers, and once
    it is over its outcome, written once and never rewritten by later work on the partner."""

    class Kind(models.TextChoices):
        RENEW = "renew", "Token renewal"
        SYNC = "sync", "Customer sync"
        APPLY = "apply", "ApplicationConsent for every customer that needs it"
        APPLY_FAILED = "apply_failed", "ApplicationConsent again for the failed customers"
        VERIFY = "verify", "Verification in each customer tenant"

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    # The operation's id in URLs, audit rows and the tasks' correlation id.
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="operations")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=200)
    started_at = models.DateTimeField()
    total = models.PositiveIntegerField(default=1)
    task_id = models.CharField(max_length=64, blank=True)
    # The bulk action from the partner list that started it with others (one id for all the partners it covered).
    bulk = models.UUIDField(null=True, blank=True, db_index=True)
    # Written once, when the work is seen to be over.
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    message = models.CharField(max_length=500, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["partner", "kind", "-started_at"])]

    def __str__(self) -> str:
        return f"{self.kind} of {self.partner_id} at {self.started_at:%Y-%m-%d %H:%M}"


class AppKeyRotation(models.Model):
    """One rotation of the vendor app's certificate, recorded step by step as each is done, so that a run cut off
    resumes where it stopped (`partners/app_rotation.py`). At most one unfinished rotation per app."""

    class Step(models.TextChoices):
        STARTED = "started", "Started"
        KEY_ADDED = "key_added", "The new certificate is added to the app registration"
        PROBED = "probed", "Entra accepts the new certificate"
        SWITCHED = "switched", "The control panel signs in with the new certificate"
        DONE = "done", "The old certificate is removed from the app registration"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    client_id = models.CharField(max_length=36)
    # The configured file (CPV_CLIENT_CERTIFICATE's first) that the switch rewrites, and where the new one waits.
    certificate_path = models.CharField(max_length=500)
    new_certificate_path = models.CharField(max_length=500)
    old_thumbprint = models.CharField(max_length=64, help_text="SHA-256 of the certificate being replaced")
    new_thumbprint = models.CharField(max_length=64, help_text="SHA-256 of the new certificate")
    application_object_id = models.CharField(max_length=36, blank=True)
    old_key_id = models.CharField(max_length=36, blank=True)
    new_key_id = models.CharField(max_length=36, blank=True)
    step = models.CharField(max_length=16, choices=Step.choices, default=Step.STARTED)
    overlap = models.DurationField()
    overlap_until = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["client_id"], condition=~models.Q(step="done"), name="one_open_key_rotation_per_app"
            )
        ]

    def __str__(self) -> str:
        return f"rotation of {self.client_id}'s certificate ({self.get_step_display()})"

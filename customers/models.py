"""The vendor app's ApplicationConsent state in each customer tenant, and each partner's coverage counters."""

from __future__ import annotations

from django.db import models

from partners.models import Customer, Partner


class CustomerConsent(models.Model):
    """The vendor app's ApplicationConsent in one customer tenant: what was granted, when, and the last error."""

    class Status(models.TextChoices):
        PENDING = "pending", "Not applied yet"
        APPLIED = "applied", "Applied"
        FAILED = "failed", "Failed"
        REMOVED = "removed", "Removed (offboarding)"

    class ErrorKind(models.TextChoices):
        """What the last failure was, by the error that said it (customers/words.py words it)."""

        PARTNER_INACTIVE = "partner_inactive", "The partner is not active"
        NO_TOKEN = "no_token", "No usable token for the partner"
        RECONSENT_REQUIRED = "reconsent_required", "The partner's consent is no longer valid"
        MFA_REQUIRED = "mfa_required", "MFA required"
        CONDITIONAL_ACCESS = "conditional_access", "Blocked by Conditional Access"
        INVALID_CLIENT = "invalid_client", "The control panel's credential was refused"
        UNAUTHORIZED = "unauthorized", "Partner Center did not accept the token"
        FORBIDDEN = "forbidden", "Partner Center refused (AdminAgents or GDAP)"
        NOT_FOUND = "not_found", "Partner Center does not know the customer"
        BAD_REQUEST = "bad_request", "Partner Center refused the request as invalid"
        THROTTLED = "throttled", "Throttled"
        UNAVAILABLE = "unavailable", "Partner Center unavailable"
        OTHER = "other", "Another error"

    class Access(models.TextChoices):
        """What the GDAP pre-flight found for this customer (customers/access.py); blank until it first ran."""

        OK = "ok", "GDAP allows it"
        ENDING = "ending", "GDAP ends soon"
        NOT_AVAILABLE = "not_available", "Not available in this cloud"
        NOT_CHECKED = "not_checked", "Not checked"
        NO_RELATIONSHIP = "no_relationship", "No GDAP relationship"
        PENDING_APPROVAL = "pending_approval", "GDAP request awaiting approval"
        ENDED = "ended", "GDAP relationship ended"
        TRANSITION_READ_ONLY = "transition_read_only", "DAP-transition GDAP without a consent role"
        NO_CONSENT_ROLE = "no_consent_role", "No role that can consent"
        ROLE_UNASSIGNED = "role_unassigned", "Role not assigned to a group"
        ASSIGNMENT_INACTIVE = "assignment_inactive", "Assignment not active"
        NOT_IN_GROUP = "not_in_group", "Account not in the GDAP group"
        NOT_ADMIN_AGENT = "not_admin_agent", "Account not in AdminAgents"
        REFUSED = "refused", "Refused by Partner Center"

    class Proof(models.TextChoices):
        """What reading the customer tenant in Graph last found (customers/proof.py); blank until first read."""

        VERIFIED = "verified", "Verified"
        MISSING = "missing", "Missing from the tenant"
        DRIFTED = "drifted", "Drifted"
        UNVERIFIABLE = "unverifiable", "Could not verify"

    class ProofReason(models.TextChoices):
        """Why a customer could not be verified (customers/words.py words it)."""

        NO_GDAP_ACCESS = "no_gdap_access", "No GDAP access to the tenant"
        NO_ACCESS = "no_access", "The partner's user has no access to the tenant"
        NO_TOKEN = "no_token", "No usable token for the partner"
        GRAPH_NOT_GRANTED = "graph_not_granted", "The partner's consent grants no Graph permission"
        GRAPH_REFUSED = "graph_refused", "Graph refused to read the tenant"
        SIGN_IN_REFUSED = "sign_in_refused", "The tenant refused the sign-in"
        NOT_AVAILABLE = "not_available", "Not available in this cloud"
        GRAPH_FAILED = "graph_failed", "Graph failed"

    customer = models.OneToOneField(Customer, on_delete=models.CASCADE, related_name="application_consent")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    # The grants (CPV_APPLICATION_GRANTS) last applied with success, and their hash to notice a change.
    grants = models.JSONField(default=dict, blank=True)
    grants_hash = models.CharField(max_length=64, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    error_kind = models.CharField(max_length=24, choices=ErrorKind.choices, blank=True, db_default="")
    # MS-RequestId of the call in progress: the same one is sent again when the call is retried.
    pending_request_id = models.CharField(max_length=36, blank=True)
    # A short claim, so two workers never call Partner Center for one customer at once.
    lease_until = models.DateTimeField(null=True, blank=True)
    # Who holds the claim: a task's id, the same across its retries and a redelivery of its message. (A default in
    # the database too: rows written without the column, by code older than it, stay valid.)
    lease_owner = models.CharField(max_length=64, blank=True, db_default="")
    # The GDAP pre-flight: its verdict, when, the facts its words name (relationship, dates, group), and a digest of
    # the relationships and assignments that allowed it; `refused_evidence` is that digest when Partner Center still
    # answered 403, so the same evidence is not spent again.
    access = models.CharField(max_length=24, choices=Access.choices, blank=True, db_default="", db_index=True)
    access_checked_at = models.DateTimeField(null=True, blank=True)
    access_detail = models.JSONField(default=dict, blank=True, db_default={})
    access_evidence = models.CharField(max_length=16, blank=True, db_default="")
    refused_evidence = models.CharField(max_length=16, blank=True, db_default="")
    # The proof in the customer tenant: what Graph showed (the vendor app's service principal and its grants against
    # the grants applied), when it was read and when last verified, why it could not be, the drift found (which
    # resource lacks which scopes) and the resources the tenant does not have; when to read it next (a throttled read
    # is deferred, never failed); repairs since it was last verified.
    proof = models.CharField(max_length=16, choices=Proof.choices, blank=True, db_default="", db_index=True)
    proof_reason = models.CharField(max_length=24, choices=ProofReason.choices, blank=True, db_default="")
    proof_checked_at = models.DateTimeField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    proof_detail = models.JSONField(default=dict, blank=True, db_default={})
    proof_due_at = models.DateTimeField(null=True, blank=True, db_index=True)
    repairs = models.PositiveSmallIntegerField(default=0, db_default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "consent_customerconsent"

    def __str__(self) -> str:
        return f"ApplicationConsent in {self.customer} ({self.status})"


# The pre-flight's verdicts that hold ApplicationConsent back ("without access").
WITHOUT_ACCESS = frozenset(
    {
        CustomerConsent.Access.NO_RELATIONSHIP,
        CustomerConsent.Access.PENDING_APPROVAL,
        CustomerConsent.Access.ENDED,
        CustomerConsent.Access.TRANSITION_READ_ONLY,
        CustomerConsent.Access.NO_CONSENT_ROLE,
        CustomerConsent.Access.ROLE_UNASSIGNED,
        CustomerConsent.Access.ASSIGNMENT_INACTIVE,
        CustomerConsent.Access.NOT_IN_GROUP,
        CustomerConsent.Access.NOT_ADMIN_AGENT,
        CustomerConsent.Access.REFUSED,
    }
)


class GdapNotice(models.Model):
    """A partner's GDAP relationship that ends within the warning period without auto-extend, or has ended: noticed
    once (one staff alert, one email to the partner), resolved when the pre-flight no longer sees it so."""

    class Kind(models.TextChoices):
        ENDING = "ending", "Ending without auto-extend"
        ENDED = "ended", "Ended"

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="gdap_notices")
    relationship_id = models.CharField(max_length=100)
    display_name = models.CharField(max_length=200, blank=True)
    customer_tenant_id = models.UUIDField()
    kind = models.CharField(max_length=8, choices=Kind.choices)
    ends_at = models.DateTimeField(null=True, blank=True)
    noticed_at = models.DateTimeField()
    emailed_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "consent_gdapnotice"
        constraints = [
            models.UniqueConstraint(fields=["partner", "relationship_id", "kind"], name="gdap_notice_once"),
        ]

    def __str__(self) -> str:
        return f"GDAP {self.display_name or self.relationship_id} of {self.partner_id}: {self.kind}"


class PartnerCoverage(models.Model):
    """A partner's present, consented and failed customers as counters (a missing row reads as zeros), written only
    by customers/coverage.py in the transaction of the change."""

    partner = models.OneToOneField(
        Partner, on_delete=models.CASCADE, primary_key=True, related_name="coverage_counters"
    )
    customers = models.IntegerField(default=0)
    consented = models.IntegerField(default=0)
    failed = models.IntegerField(default=0)
    # When the row was last recounted from scratch (a shift leaves it alone).
    counted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "consent_partnercoverage"

    def __str__(self) -> str:
        return f"coverage of {self.partner_id}: {self.consented}/{self.customers}, {self.failed} failed"


class ConsentWork(models.Model):
    """One customer's pending ApplicationConsent, waiting for the scheduler (customers/scheduling.py) to hand it to a
    worker: its class (new and repair work go before routine re-checks), who holds it and until when."""

    class Kind(models.TextChoices):
        NEW = "new", "A new partner's customers"
        REPAIR = "repair", "A repair"
        ROUTINE = "routine", "A routine re-check"

    customer = models.OneToOneField(Customer, on_delete=models.CASCADE, primary_key=True, related_name="+")
    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    # 0 for new and repair work, 1 for routine: lower goes first.
    priority = models.PositiveSmallIntegerField()
    correlation_id = models.CharField(max_length=36, blank=True)
    queued_at = models.DateTimeField()
    # The puller task holding it (its id, the same across a redelivery) and until when; a transient failure leaves
    # it unheld until `held_until`, its retry time.
    held_by = models.CharField(max_length=64, blank=True, db_index=True)
    held_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)

    class Meta:
        db_table = "consent_consentwork"
        indexes = [
            models.Index(fields=["partner", "priority", "customer"], name="consent_work_next"),
            # A staff operation's customers still pending (its progress page asks).
            models.Index(fields=["correlation_id"], name="consent_work_correlation"),
        ]

    def __str__(self) -> str:
        return f"ApplicationConsent pending for customer {self.customer_id} ({self.kind})"


class ConsentLane(models.Model):
    """A partner's place in the fair schedule: its virtual time (customers handed out since it last had work, the
    partner with the least goes next), its pending customers (all, and new or repair) and, since its work began,
    those done and failed. Written only by customers/scheduling.py, under this row's lock."""

    partner = models.OneToOneField(Partner, on_delete=models.CASCADE, primary_key=True, related_name="consent_lane")
    virtual_time = models.BigIntegerField(default=0)
    pending = models.IntegerField(default=0, db_index=True)
    urgent = models.IntegerField(default=0)
    done = models.IntegerField(default=0)
    failed = models.IntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "consent_consentlane"

    def __str__(self) -> str:
        return f"lane of {self.partner_id}: {self.pending} pending, {self.done} done, {self.failed} failed"


class ConsentPuller(models.Model):
    """One of the scheduler's puller slots: the task that holds it (a chain of tasks, one batch each, handing the
    slot on) and until when; a lapsed slot is started again."""

    slot = models.PositiveSmallIntegerField(primary_key=True)
    owner = models.CharField(max_length=64, blank=True)
    held_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "consent_consentpuller"

    def __str__(self) -> str:
        return f"puller {self.slot} ({self.owner or 'idle'})"


__all__ = [
    "WITHOUT_ACCESS",
    "ConsentLane",
    "ConsentPuller",
    "ConsentWork",
    "CustomerConsent",
    "GdapNotice",
    "PartnerCoverage",
]

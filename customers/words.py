"""A customer's ApplicationConsent failure, and its GDAP pre-flight verdict, in words, from their stored kinds (never
from a message)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.template.defaultfilters import pluralize

from customers.models import WITHOUT_ACCESS, CustomerConsent
from microsoft import permissions

ErrorKind = CustomerConsent.ErrorKind
# The roles Microsoft's pages name for consenting an application in a customer tenant (any of them).
CONSENT_ROLE_NAMES = (
    "Cloud Application Administrator, Application Administrator, Global Administrator or Privileged Role Administrator"
)

WORDS: dict[str, str] = {
    ErrorKind.PARTNER_INACTIVE: "Not applied because the partner is not active.",
    ErrorKind.NO_TOKEN: "The partner has no usable consent: it must consent (again) before this can be applied.",
    ErrorKind.RECONSENT_REQUIRED: "The partner's consent has expired or was revoked: the partner must consent again.",
    ErrorKind.MFA_REQUIRED: "Partner Center requires MFA: the partner must consent again with an account using MFA.",
    ErrorKind.CONDITIONAL_ACCESS: "A Conditional Access policy in the partner's tenant blocks the integration account.",
    ErrorKind.INVALID_CLIENT: "The control panel's own app credential was refused: an operator must rotate it.",
    ErrorKind.UNAUTHORIZED: "Partner Center did not accept the partner's token, even a fresh one.",
    ErrorKind.FORBIDDEN: (
        "Partner Center refused ApplicationConsent for this customer. Both are needed: the consenting account in the "
        f"partner's AdminAgents group, and in a GDAP security group that holds {CONSENT_ROLE_NAMES} in this "
        "customer's tenant (an active relationship)."
    ),
    ErrorKind.NOT_FOUND: "Partner Center does not know this customer (it may have left the partner).",
    ErrorKind.BAD_REQUEST: "Partner Center refused the request as invalid (check the application grants).",
    ErrorKind.THROTTLED: "Partner Center asked us to slow down; it will be retried.",
    ErrorKind.UNAVAILABLE: "Partner Center was unavailable; it will be retried.",
    ErrorKind.OTHER: "An unexpected error; the technical detail is below.",
}


def consent_error_words(consent: CustomerConsent | None) -> str:
    """The customer's last ApplicationConsent failure in words ("" when there is none)."""
    if consent is None or not consent.last_error:
        return ""
    return WORDS.get(consent.error_kind or ErrorKind.OTHER, WORDS[ErrorKind.OTHER])


# --- the GDAP pre-flight -------------------------------------------------------------------------------------------

Access = CustomerConsent.Access
# Microsoft's guide to GDAP, where the partner's admin fixes a relationship in Partner Center.
GDAP_GUIDE = "https://learn.microsoft.com/partner-center/customers/gdap-introduction"
# Verdicts the partner's admin fixes in Partner Center's admin relationships (the guide is linked beside them).
FIXED_IN_PARTNER_CENTER = frozenset(
    {
        Access.NO_RELATIONSHIP,
        Access.PENDING_APPROVAL,
        Access.ENDED,
        Access.ENDING,
        Access.TRANSITION_READ_ONLY,
        Access.NO_CONSENT_ROLE,
        Access.ROLE_UNASSIGNED,
        Access.ASSIGNMENT_INACTIVE,
    }
)


def _date(value: object) -> str:
    if not isinstance(value, str) or not value:
        return "an unknown date"
    try:
        return datetime.fromisoformat(value).strftime("%-d %B %Y")
    except ValueError:
        return value


def _pending(detail: dict[str, Any]) -> str:
    name, status = detail.get("relationship", ""), detail.get("status", "")
    if status == "created":
        return (
            f"The GDAP request “{name}” has not been sent to the customer for approval yet: send it from "
            "Partner Center."
        )
    if status in ("approved", "activating"):
        return (
            f"The customer approved the GDAP request “{name}”; Microsoft is still activating it. It is checked "
            "again at the next run."
        )
    return (
        f"The GDAP request “{name}” (sent {_date(detail.get('requested_at'))}) awaits the customer's approval and "
        f"expires on {_date(detail.get('expires_at'))}. Send the customer's Global Administrator the approval link: "
        f"{detail.get('approval_link', '')}"
    )


def _active_relationships(names: list[str]) -> str:
    quoted = ", ".join(f"“{name}”" for name in names)
    if len(names) == 1:
        return f"The active GDAP relationship {quoted} holds"
    return f"The active GDAP relationships {quoted} hold"


def _not_checked(detail: dict[str, Any]) -> str:
    if detail.get("missing"):
        return (
            f"GDAP was not checked: the partner's consent does not grant {', '.join(detail['missing'])}. "
            "ApplicationConsent is tried directly; the partner's admin should consent again to grant them."
        )
    return (
        f"GDAP was not checked: Microsoft Graph refused to read it ({detail.get('refused', 'no detail')}). "
        "ApplicationConsent is tried directly."
    )


_ACCESS_WORDS: dict[str, Callable[[dict[str, Any]], str]] = {
    Access.OK: lambda d: "GDAP gives the consenting account a role that can consent applications in this customer.",
    Access.ENDING: lambda d: (
        f"GDAP allows it, but the relationship “{d.get('relationship', '')}” ends on {_date(d.get('ends_at'))} and "
        "will not extend itself"
        + (" (a relationship holding Global Administrator cannot)" if d.get("global_admin") else "")
        + ". Before then, have the customer approve a new relationship, or extend this one in Partner Center."
    ),
    Access.NOT_AVAILABLE: lambda d: (
        f"Microsoft does not offer the GDAP API in {d.get('cloud', 'this cloud')}: not available in this cloud. "
        "ApplicationConsent is tried directly."
    ),
    Access.NOT_CHECKED: _not_checked,
    Access.NO_RELATIONSHIP: lambda d: (
        "The partner has no GDAP relationship with this customer. In Partner Center, request one that includes "
        "Cloud Application Administrator (or Application Administrator) and have the customer approve it."
    ),
    Access.PENDING_APPROVAL: _pending,
    Access.ENDED: lambda d: (
        f"The GDAP relationship “{d.get('relationship', '')}” "
        + ("was terminated" if d.get("status", "").startswith("terminat") else "expired")
        + f" ({_date(d.get('ended_at'))}). Request a new relationship in Partner Center and have the customer "
        "approve it."
    ),
    Access.TRANSITION_READ_ONLY: lambda d: (
        f"The only active relationship, “{d.get('relationship', '')}”, is the one Microsoft created when it moved DAP "
        "to GDAP, and it no longer holds a role that can consent applications. Request a new GDAP relationship that "
        "includes Cloud Application Administrator."
    ),
    Access.NO_CONSENT_ROLE: lambda d: (
        _active_relationships(d.get("relationships") or [d.get("relationship", "")])
        + f" no role that can consent applications ({CONSENT_ROLE_NAMES}). Request a relationship that includes one."
    ),
    Access.ROLE_UNASSIGNED: lambda d: (
        f"The relationship “{d.get('relationship', '')}” holds "
        f"{', '.join(d.get('roles', [])) or 'a role that can consent'}, but no security group is assigned that "
        "role. In Partner Center, assign it to a security group that contains "
        "the consenting account."
    ),
    Access.ASSIGNMENT_INACTIVE: lambda d: (
        f"The role assignment in “{d.get('relationship', '')}” is {d.get('status', 'not active')}, not active yet. "
        "Wait for it to finish, or assign the role again if it failed."
    ),
    Access.NOT_IN_GROUP: lambda d: (
        f"The consenting account is not in the security group assigned the role in “{d.get('relationship', '')}” "
        f"(group {', '.join(d.get('groups', []))}). Add it to that group in the partner's Microsoft Entra admin center."
    ),
    Access.NOT_ADMIN_AGENT: lambda d: (
        "The consenting account is not in the AdminAgents group, so Partner Center refuses ApplicationConsent"
        + (" (and Microsoft Graph shows it no GDAP relationship)" if d.get("listing_empty") else "")
        + ". Give it the Admin Agent role in Partner Center, or consent again with an account that has it."
    ),
    Access.REFUSED: lambda d: (
        "GDAP looks right, but Partner Center still refused ApplicationConsent"
        + (f" ({d['message']})" if d.get("message") else "")
        + ". It is not tried again until the relationship or its assignments change, or the partner asks to check "
        "again."
    ),
}


def access_words(consent: CustomerConsent | None) -> str:
    """What the GDAP pre-flight found for the customer, and what the partner's admin must do ("" before it ran)."""
    if consent is None or not consent.access:
        return ""
    words = _ACCESS_WORDS.get(consent.access)
    return words(dict(consent.access_detail or {})) if words else ""


def access_guide(consent: CustomerConsent | None) -> str:
    """Microsoft's GDAP guide where that is where the verdict is fixed, else ""."""
    return GDAP_GUIDE if consent is not None and consent.access in FIXED_IN_PARTNER_CENTER else ""


def access_class(consent: CustomerConsent | None) -> str:
    """The badge class of the verdict: "blocked" for one that holds ApplicationConsent back, else the verdict."""
    if consent is None or not consent.access:
        return ""
    return "blocked" if consent.access in WITHOUT_ACCESS else consent.access


# --- the proof in the customer tenant ------------------------------------------------------------------------------

Proof = CustomerConsent.Proof
Reason = CustomerConsent.ProofReason
# The state a customer's row shows: the proof where the consent is applied, "applied, not verified" before a read.
APPLIED_UNVERIFIED = "applied_unverified"
# The filter of applied consents that left out a resource the tenant does not have.
NOT_AVAILABLE = "not_available"
PROOF_LABELS = {
    Proof.VERIFIED: "Verified",
    APPLIED_UNVERIFIED: "Applied, not verified",
    Proof.DRIFTED: "Drifted",
    Proof.MISSING: "Missing",
    Proof.UNVERIFIABLE: "Applied, not verified",
}

_REASON_WORDS: dict[str, str] = {
    Reason.NO_GDAP_ACCESS: "GDAP gives the partner's account no access to this customer (see GDAP above).",
    Reason.NO_ACCESS: (
        "The partner's account has no access to this customer's tenant: it needs a GDAP role there that can read "
        "applications (Cloud Application Administrator or Global Reader, for example)."
    ),
    Reason.NO_TOKEN: "The partner has no usable consent to read the tenant with.",
    Reason.GRAPH_NOT_GRANTED: "The partner's consent grants no Microsoft Graph permission to read the tenant with.",
    Reason.GRAPH_REFUSED: (
        "Microsoft Graph refused to read the app in this tenant: the application grants need Directory.Read.All "
        "(or Application.Read.All with DelegatedPermissionGrant.ReadWrite.All), and the partner's GDAP role there "
        "must allow reading applications."
    ),
    Reason.SIGN_IN_REFUSED: "This customer's tenant refused the partner's sign-in.",
    Reason.NOT_AVAILABLE: "Microsoft offers no GDAP in this cloud, so the tenant cannot be read as the partner.",
    Reason.GRAPH_FAILED: "Microsoft Graph failed to answer; it is read again later.",
}


def proof_state(consent: CustomerConsent | None) -> str:
    """The customer's proof state for tables and filters: a Proof value, APPLIED_UNVERIFIED for an applied consent not
    read (or not readable) yet, "" when nothing is applied."""
    if consent is None or consent.status != CustomerConsent.Status.APPLIED:
        return ""
    if consent.proof in (Proof.VERIFIED, Proof.DRIFTED, Proof.MISSING):
        return str(consent.proof)
    return APPLIED_UNVERIFIED


# Resource app ids ApplicationConsent commonly grants, by the names Microsoft's admin centers show.
RESOURCE_NAMES = {
    **{app_id: permissions.API_NAMES[api] for api, app_id in permissions.API_APP_IDS.items()},
    "00000002-0000-0ff1-ce00-000000000000": "Office 365 Exchange Online",
    "00000003-0000-0ff1-ce00-000000000000": "Office 365 SharePoint Online",
}


def proof_words(consent: CustomerConsent | None) -> str:
    """What the last read of the customer's tenant found, in words ("" when nothing is applied)."""
    if consent is None or consent.status != CustomerConsent.Status.APPLIED:
        return ""
    if not consent.proof:
        return "Applied by Partner Center; not read back in the customer's tenant yet."
    detail = dict(consent.proof_detail or {})
    unavailable = detail.get("unavailable") or []
    names = ", ".join(RESOURCE_NAMES.get(app_id, app_id) for app_id in unavailable)
    tail = f" Not available in this tenant (not granted): {names}." if unavailable else ""
    if consent.proof == Proof.VERIFIED:
        return "The app is in the customer's tenant with every permission it was granted." + tail
    if consent.proof == Proof.MISSING:
        return (
            "The app is not in the customer's tenant although Partner Center accepted it"
            + (f" after {consent.repairs} repair{pluralize(consent.repairs)}" if consent.repairs else "")
            + "."
        )
    if consent.proof == Proof.DRIFTED:
        parts = [
            f"{item.get('name') or item.get('resource')} is in the tenant now and not granted yet"
            if item.get("unsent")
            else f"{item.get('name') or item.get('resource')} lacks {', '.join(item.get('missing') or [])}"
            for item in detail.get("drift") or []
        ]
        return (
            "The app's permissions in the tenant differ from what was granted: "
            + "; ".join(parts)
            + "."
            + (f" {consent.repairs} repair{pluralize(consent.repairs)} did not hold." if consent.repairs else "")
            + tail
        )
    return _REASON_WORDS.get(consent.proof_reason, "The tenant could not be read.")

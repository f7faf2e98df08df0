"""A customer's ApplicationConsent failure in words, from its stored kind (never from the message)."""

from __future__ import annotations

from customers.models import CustomerConsent

ErrorKind = CustomerConsent.ErrorKind

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
        "partner's AdminAgents group, and in a GDAP security group that holds Cloud Application Administrator, "
        "Application Administrator or Global Administrator in this customer's tenant (an active relationship)."
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

"""Entra ID's and Partner Center's answers, as stored in an error message, explained in words for a person.

Both the staff dashboard and the partner portal show them, so they live with the clients whose answers they read.
"""

from __future__ import annotations

import re

# Partner Center's and Entra's answers, in words for a person. The first pattern that matches wins.
_ERROR_WORDS: list[tuple[str, str]] = [
    (r"AADSTS530034",
     "Microsoft blocked delegated admin access to this customer because of risk on the partner's account."),
    (r"AADSTS50021[23]", "A cross-tenant access policy (the partner's or this customer's) blocks the sign-in."),
    (r"AADSTS(50097|5300[012]|530003)",
     "A Conditional Access policy (device or approved app) blocks the integration account."),
    (r"AADSTS(65001|90099|700016)", "The vendor's app is not consented in this customer's tenant yet."),
    (r"AADSTS(700082|70008|70043|50173|50132|50133)|invalid_grant",
     "The partner's consent has expired or was revoked: the partner must consent again."),
    (r"AADSTS5007[689]|interaction_required", "The partner's sign-in needs MFA: consent again with MFA."),
    (r"AADSTS53003", "A Conditional Access policy in the partner's tenant blocks the integration account."),
    (r"AADSTS(50020|90072)", "The partner's account has no access to this customer's tenant."),
    (r"invalid_client|AADSTS(7000215|7000222|700027)",
     "The control panel's own app credential was refused: an operator must rotate it."),
    (r"answered 401 .*900421",
     "Partner Center requires MFA: the partner must consent again with an account that uses MFA."),
    (r"answered 401", "Partner Center did not accept the partner's token; it is tried again with a fresh one."),
    (r"answered 403 to (POST|DELETE) \S*applicationconsents",
     "Partner Center refused ApplicationConsent for this customer. Both are needed: the consenting account in the "
     "partner's AdminAgents group, and in a GDAP security group that holds Cloud Application Administrator, "
     "Application Administrator or Global Administrator in this customer's tenant (an active relationship)."),
    (r"answered 403",
     "Partner Center refused: the consenting account lacks the Admin Agent role, or the customer has no "
     "relationship with the partner (GDAP/DAP)."),
    (r"answered 404", "Partner Center does not know this customer (it may have left the partner)."),
    (r"answered 429|throttl", "Partner Center asked us to slow down; it will be retried."),
    (r"answered 5\d\d|timeout|timed out|connection", "Partner Center was unavailable; it will be retried."),
    (r"answered 400", "Partner Center refused the request as invalid (check the application grants)."),
    (r"the partner is", "Not applied because the partner is not active."),
]  # fmt: skip


def error_in_words(message: str) -> str:
    """A stored error message explained for a person (the raw message stays available beside it)."""
    if not message:
        return ""
    for pattern, words in _ERROR_WORDS:
        if re.search(pattern, message, flags=re.IGNORECASE):
            return words
    return "An unexpected error; the technical detail is below."

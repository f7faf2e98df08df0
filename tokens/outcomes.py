"""What a renewal did, read the same way by workers, `renew_tokens` and a staff "Renew now"."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class RenewalOutcome(enum.StrEnum):
    RENEWED = "renewed"
    NOT_DUE = "not_due"  # renewed recently: nothing to do
    BUSY = "busy"  # another worker holds the row's lock and is renewing it
    SKIPPED = "skipped"  # nothing to renew: no token, a partner that is not active
    RETRY = "retry"  # a transient failure, tried again after a delay
    FAILED = "failed"  # a permanent failure, or transient ones past the bound, recorded with its reason

    @property
    def ok(self) -> bool:
        """The partner's token is in order after it: renewed now, renewed recently, or being renewed."""
        return self in (RenewalOutcome.RENEWED, RenewalOutcome.NOT_DUE, RenewalOutcome.BUSY)

    @property
    def in_words(self) -> str:
        return OUTCOME_WORDS[self]


OUTCOME_WORDS = {
    RenewalOutcome.RENEWED: "Renewed.",
    RenewalOutcome.NOT_DUE: "Not due: renewed recently.",
    RenewalOutcome.BUSY: "Another worker is renewing it.",
    RenewalOutcome.SKIPPED: "Skipped: the partner has no usable token or is not active.",
    RenewalOutcome.RETRY: "Failed for now; trying again.",
    RenewalOutcome.FAILED: "Failed.",
}


@dataclass(frozen=True)
class RenewalResult:
    """What a renewal of one partner did, and why in words (`message`); `retry_after` for RETRY."""

    partner_id: int
    outcome: RenewalOutcome
    message: str = ""
    retry_after: float | None = None
    # (row id, version) of the previous version a renewal disabled but did not flag, for the caller to flag
    # together with others (renew_one with `flag_later`).
    disabled_previous: tuple[int, str] | None = None

    @property
    def ok(self) -> bool:
        return self.outcome.ok


class RenewalRetry(Exception):
    """A transient failure (429, 5xx, timeout) that should be tried again after `delay` seconds."""

    def __init__(self, message: str, *, delay: float) -> None:
        super().__init__(message)
        self.delay = delay

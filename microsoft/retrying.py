"""How long to wait before retrying a Microsoft call: capped exponential backoff with jitter, honouring Retry-After."""

from __future__ import annotations

import random

from django.conf import settings

# Exponential backoff of 2, 4, 8, 16 ... seconds, each jittered down to half so that workers that failed
# together do not come back together.
BASE_DELAY = 2.0
MAX_DELAY = 300.0


def max_countdown() -> float:
    """The longest a task may wait on the broker: well below Redis's visibility timeout, past which it runs twice."""
    return float(getattr(settings, "CPV_VISIBILITY_TIMEOUT", 3600)) / 2


def backoff_delay(*, attempt: int, retry_after: float | None = None, base: float = BASE_DELAY) -> float:
    """Seconds before attempt `attempt + 1`: at least `retry_after`, at most MAX_DELAY (or max_countdown())."""
    exponential = min(MAX_DELAY, base * 2 ** max(0, attempt - 1))
    delay = random.uniform(exponential / 2, exponential)  # noqa: S311 - jitter, not a secret
    if retry_after is not None:
        # Honour the server's wait, plus a little jitter so that every throttled worker does not return at once.
        delay = max(delay, retry_after + random.uniform(0, 0.5))  # noqa: S311
    return min(delay, max_countdown())

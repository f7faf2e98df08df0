"""How long to wait before trying a failed Microsoft call again: bounded exponential backoff with jitter that
never waits less than the server's `Retry-After`, and never longer than the broker can hold a delayed task.
"""

from __future__ import annotations

import random

from django.conf import settings

# Exponential backoff of 2, 4, 8, 16 ... seconds, each jittered down to half so that workers that failed
# together do not come back together.
BASE_DELAY = 2.0
MAX_DELAY = 300.0


def max_countdown() -> float:
    """The longest a task may be delayed on the broker: Redis hands an unacknowledged ETA task to a second
    worker once the visibility timeout has passed, so delays stay well below it."""
    return float(getattr(settings, "CPV_VISIBILITY_TIMEOUT", 3600)) / 2


def backoff_delay(*, attempt: int, retry_after: float | None = None, base: float = BASE_DELAY) -> float:
    """Seconds to wait before attempt `attempt + 1` (attempt counts from 1).

    Returns at least `retry_after` when the server sent one; the result is capped by MAX_DELAY and by half
    the broker's visibility timeout, except that a longer Retry-After is honoured up to that broker bound.
    """
    exponential = min(MAX_DELAY, base * 2 ** max(0, attempt - 1))
    delay = random.uniform(exponential / 2, exponential)  # noqa: S311 - jitter, not a secret
    if retry_after is not None:
        # Honour the server's wait, plus a little jitter so that every throttled worker does not return at once.
        delay = max(delay, retry_after + random.uniform(0, 0.5))  # noqa: S311
    return min(delay, max_countdown())

"""The simulator's clock: real time plus an offset that tests can move forward."""

from __future__ import annotations

import logging
import time

logger = logging.getLogger(__name__)


class Clock:
    """Wall-clock seconds since the epoch, shifted by `offset`.

    Every expiry the simulator checks (codes, refresh tokens, access tokens, client secrets) reads this
    clock, so `advance(91 * 86400)` makes a refresh token expire without waiting. Throttles use real
    monotonic time instead: moving the clock must not refill a token bucket.
    """

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("the simulator's clock only moves forward")
        self.offset += seconds
        logger.info("clock advanced by %ss (offset now %ss)", seconds, self.offset)
        return self.now()

    def reset(self) -> None:
        self.offset = 0.0

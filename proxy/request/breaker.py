"""A circuit breaker in front of a backend that migrations move to (``to``).

closed ──(``failures`` in a row, or ``failure_ratio`` of the last ``window`` seconds with at
least ``min_requests``)──► open ──(``cooldown``)──► half_open ──(``probes`` successes in a
row)──► closed; a failure while half open opens it again. While it is not closed, requests
that would go to it go to their migration's ``from`` (the proxy decides; the client just
gets an answer).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from cutover.config import BreakerConfig
from cutover.vocabulary import BreakerState

# allow() runs on every request to the backend: the members as module globals, because reading
# ``BreakerState.CLOSED`` goes through the enum class (~0.2 µs on Python 3.11).
CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class CircuitBreaker:
    def __init__(
        self,
        config: BreakerConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState, BreakerState], None] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.on_change = on_change
        self.state = CLOSED
        self.consecutive_failures = 0
        self.opened_at: float | None = None
        self._recent: deque[tuple[float, bool]] = deque()
        self._failed_recently = 0
        self._probing = 0
        self._probe_successes = 0

    def allow(self) -> bool:
        """May this request go to the backend? In half-open, admits at most ``probes`` at once;
        every admitted request must be followed by ``record``."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            if self.clock() - (self.opened_at or 0.0) < self.config.cooldown:
                return False
            self._move(HALF_OPEN)
            self._probing = self._probe_successes = 0
        if self._probing >= self.config.probes:
            return False
        self._probing += 1
        return True

    def record(self, ok: bool) -> None:
        """The outcome of a request that ``allow`` admitted."""
        if self.state == HALF_OPEN:
            self._probing = max(0, self._probing - 1)
            if not ok:
                self._open()
                return
            self._probe_successes += 1
            if self._probe_successes >= self.config.probes:
                self._close()
            return
        if self.state == OPEN:
            return  # answers to requests admitted before it opened
        self._count(ok)
        self.consecutive_failures = 0 if ok else self.consecutive_failures + 1
        if self.consecutive_failures >= self.config.failures or self._ratio_exceeded():
            self._open()

    def forget(self) -> None:
        """An admitted request ended with no verdict on the backend (the client left first)."""
        if self.state == HALF_OPEN:
            self._probing = max(0, self._probing - 1)

    def status(self) -> dict[str, object]:
        return {
            "state": self.state,
            "consecutive_failures": self.consecutive_failures,
            "open_for": None if self.opened_at is None else self.clock() - self.opened_at,
        }

    def _count(self, ok: bool) -> None:
        now = self.clock()
        self._recent.append((now, ok))
        self._failed_recently += not ok
        horizon = now - self.config.window
        while self._recent and self._recent[0][0] < horizon:
            _, old_ok = self._recent.popleft()
            self._failed_recently -= not old_ok

    def _ratio_exceeded(self) -> bool:
        seen = len(self._recent)
        return seen >= self.config.min_requests and (
            self._failed_recently / seen >= self.config.failure_ratio
        )

    def _open(self) -> None:
        self.opened_at = self.clock()
        self._move(OPEN)

    def _close(self) -> None:
        self.opened_at = None
        self.consecutive_failures = 0
        self._recent.clear()
        self._failed_recently = 0
        self._move(CLOSED)

    def _move(self, state: BreakerState) -> None:
        previous, self.state = self.state, state
        if self.on_change is not None and previous != state:
            self.on_change(previous, state)

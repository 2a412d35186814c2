"""Where a deprecated migration's ``from`` is in its lifecycle, on the request path.

A ``DeprecationGate`` per migration with a ``deprecation``: ``state(now)`` is deprecated
(serving), brownout (inside a window) or sunset (past ``sunset_at``). The state is computed
at a boundary (a window's start or end, the sunset) and kept until the next one, so a
request costs one comparison; the refusal a brownout or a sunset sends is built with it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime

from cutover.config import BrownoutSchedule, DeprecationConfig, Settings
from cutover.request.deprecation import deprecation_headers
from cutover.request.problem import problem_body
from cutover.types import RawHeaders, Send
from cutover.vocabulary import AfterSunset, Lifecycle

logger = logging.getLogger("cutover.deprecation")
KEEP_WARNING_EVERY = 86400.0


@dataclass(frozen=True, slots=True)
class Refusal:
    """A whole answer, built once per state: status, headers and a problem+json body."""

    status: int
    headers: RawHeaders
    body: bytes


@dataclass(frozen=True, slots=True)
class GateState:
    lifecycle: Lifecycle
    window_end: float | None  # the brownout's end (its whole chain of windows)
    since: float  # computed at; kept while since <= now < until
    until: float  # the next boundary (inf: none)
    refusal: Refusal | None = field(default=None, repr=False)  # brownout, or sunset with gone


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def http_date(timestamp: float) -> str:
    return format_datetime(datetime.fromtimestamp(timestamp, UTC), usegmt=True)


class DeprecationGate:
    def __init__(self, migration: str, prefix: str, deprecation: DeprecationConfig) -> None:
        self.migration = migration
        self.prefix = prefix
        self.config = deprecation
        self.schedule = BrownoutSchedule(
            deprecation.brownouts, deprecation.deprecated_at, deprecation.sunset_at
        )
        self.sunset = None if deprecation.sunset_at is None else deprecation.sunset_at.timestamp()
        self.exempt = frozenset(deprecation.exempt_clients)
        self.dry_run = deprecation.dry_run
        self.after_sunset = deprecation.after_sunset
        self.headers = deprecation_headers(deprecation)
        self.next_keep_warning = -math.inf
        self._state: GateState | None = None

    def state(self, now: float) -> GateState:
        state = self._state
        if state is None or not state.since <= now < state.until:
            state = self._state = self._compute(now)
            if state.lifecycle == Lifecycle.BROWNOUT and self.dry_run:
                logger.warning(
                    "dry run: %s is in a brownout until %s; its requests to %s are counted, "
                    "not refused", self.migration, iso(state.window_end or now), self.prefix,
                )  # fmt: skip
        return state

    def _compute(self, now: float) -> GateState:
        if self.sunset is not None and now >= self.sunset:
            gone = self.after_sunset == AfterSunset.GONE
            return GateState(Lifecycle.SUNSET, None, now, math.inf,
                             self._sunset_refusal() if gone else None)  # fmt: skip
        window = self.schedule.active(now)
        if window is not None:
            refusal = self._brownout_refusal(window.end)
            return GateState(Lifecycle.BROWNOUT, window.end, now, window.end, refusal)
        upcoming = self.schedule.next_after(now)
        until = math.inf if upcoming is None else upcoming.start
        if self.sunset is not None:
            until = min(until, self.sunset)
        return GateState(Lifecycle.DEPRECATED, None, now, until)

    def keep_warning_due(self, now: float) -> bool:
        """Past the sunset with ``keep``: a warning now and once a day after."""
        if now < self.next_keep_warning:
            return False
        self.next_keep_warning = now + KEEP_WARNING_EVERY
        return True

    def _sunset_date(self) -> str | None:
        return None if self.sunset is None else iso(self.sunset)

    def _brownout_refusal(self, window_end: float) -> Refusal:
        status = self.config.brownout_status
        title = "Gone" if status == 410 else "Service Unavailable"
        detail = f"This API is in a scheduled brownout until {iso(window_end)}"
        if self.sunset is not None:
            detail += f"; it will be removed on {iso(self.sunset)}"
        detail += self._see_link()
        body = problem_body(status, title, detail, slug="brownout", sunset=self._sunset_date(),
                            link=self.config.link, window_end=iso(window_end))  # fmt: skip
        headers = list(self.headers)
        if status == 503:
            headers.append((b"retry-after", http_date(window_end).encode("ascii")))
        return Refusal(status, headers, body)

    def _sunset_refusal(self) -> Refusal:
        detail = f"This API was removed on {self._sunset_date()}{self._see_link()}"
        body = problem_body(410, "Gone", detail, slug="sunset", sunset=self._sunset_date(),
                            link=self.config.link)  # fmt: skip
        return Refusal(410, list(self.headers), body)

    def _see_link(self) -> str:
        return f"; see {self.config.link}." if self.config.link else "."


def build_gates(settings: Settings) -> dict[str, DeprecationGate]:
    """A gate for each migration with a deprecation, by migration name."""
    return {
        m.name: DeprecationGate(m.name, m.match.prefix, m.deprecation)
        for m in settings.migration_list
        if m.deprecation
    }


async def send_refusal(send: Send, refusal: Refusal) -> None:
    await send({
        "type": "http.response.start",
        "status": refusal.status,
        "headers": [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(refusal.body)).encode("ascii")),
            (b"cache-control", b"no-store"),
            *refusal.headers,
        ],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": refusal.body, "more_body": False})

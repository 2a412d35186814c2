"""A migration's ``deprecation`` block in its admin document (``GET /migrations/{name}``,
``cutover status NAME``): the dates, where the lifecycle is now, the next brownout, and
how many clients still called ``from`` in the last 7 days."""

from __future__ import annotations

import math
from typing import Any

from cutover.config import DeprecationConfig
from cutover.request.lifecycle import DeprecationGate, iso
from cutover.vocabulary import Lifecycle


def deprecation_status(
    config: DeprecationConfig | None,
    gate: DeprecationGate | None,
    now: float,
    clients_7d: int | None,
) -> dict[str, Any] | None:
    """None for a migration without a deprecation. ``gate``: the proxy's, whose state is
    cached (one is built when the proxy has none, e.g. right after a reload)."""
    if config is None:
        return None
    if gate is None:
        gate = DeprecationGate("", "", config)
    state = gate.state(now)
    days = None
    if gate.sunset is not None:
        days = max(0, math.ceil((gate.sunset - now) / 86400))
    # The next window after the one in force (windows that touch it are part of it).
    upcoming = gate.schedule.next_after(state.window_end if state.window_end else now)
    if state.lifecycle == Lifecycle.SUNSET:
        upcoming = None
    return {
        "deprecated_at": iso(config.deprecated_at.timestamp()),
        "sunset_at": None if gate.sunset is None else iso(gate.sunset),
        "days_to_sunset": days,
        "lifecycle": state.lifecycle,
        "window_end": None if state.window_end is None else iso(state.window_end),
        "next_brownout": None
        if upcoming is None
        else {"start": iso(upcoming.start), "end": iso(upcoming.end)},
        "after_sunset": config.after_sunset,
        "brownout_status": config.brownout_status,
        "dry_run": config.dry_run,
        "clients_7d": clients_7d,
    }

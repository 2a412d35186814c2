"""A deprecation's ``brownouts``: windows in which the requests ``from`` would serve are
refused, so the clients still calling it notice before the sunset does it for good.

A window is a one-off ``start`` or a cron ``schedule`` (five fields, UTC, read by croniter),
each lasting ``duration``. ``BrownoutSchedule`` answers the two questions the request path
and the status ask: which window is active at ``t`` (overlapping or adjacent windows chain
into one), and which comes next. Times are Unix seconds; cron fires are whole minutes in UTC,
so there is no daylight saving time to get wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any

from croniter import CroniterError, croniter
from pydantic import BeforeValidator, ConfigDict, Field, field_validator, model_validator

from cutover.config.base import SectionConfig

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# How far a chain of windows is followed (a cron firing more often than it lasts, with no
# end, would chain for ever): a window's end is reported as at most this far ahead.
CHAIN_HORIZON = 366 * 86400.0
_CHAIN_STEPS = 10_000


def parse_duration(value: Any) -> float:
    """``"90s"``, ``"30m"``, ``"12h"``, ``"2d"`` or a number of seconds, as seconds > 0."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 90s, 30m, 12h or 2d, or seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (found := _DURATION_RE.match(value)):
        seconds = float(found.group(1)) * _UNITS[found.group(2)]
    else:
        raise ValueError(f"{value!r} is not a duration: write 90s, 30m, 12h, 2d or seconds")
    if not seconds > 0:
        raise ValueError("must be greater than 0")
    return seconds


def utc_datetime(value: Any) -> Any:
    """A date alone is midnight UTC (as ``deprecated_at`` reads it)."""
    if isinstance(value, str) and _DATE_RE.match(value):
        value = date.fromisoformat(value)
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return value


def aware_utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("must include a time zone, e.g. 2027-05-03T14:00:00Z")
    return value.astimezone(UTC) if value is not None else None


Duration = Annotated[float, BeforeValidator(parse_duration)]


class BrownoutConfig(SectionConfig):
    model_config = ConfigDict(populate_by_name=True)

    start: datetime | None = None  # a one-off window
    schedule: str | None = None  # a cron schedule (UTC)
    since: datetime | None = Field(None, alias="from")  # None: deprecated_at
    until: datetime | None = None  # None: sunset_at
    duration: Duration

    @field_validator("start", "since", "until", mode="before")
    @classmethod
    def _dates(cls, value: Any) -> Any:
        return utc_datetime(value)

    @field_validator("start", "since", "until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return aware_utc(value)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(
                f"{value!r} is not a cron schedule of five fields "
                "(minute hour day-of-month month day-of-week, in UTC)"
            )
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> BrownoutConfig:
        if (self.start is None) == (self.schedule is None):
            raise ValueError("set either start (one window) or schedule (a cron), not both")
        if self.start is not None and (self.since is not None or self.until is not None):
            raise ValueError("from and until bound a schedule: a start is one window")
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ValueError("until must be later than from")
        return self


@dataclass(frozen=True, slots=True)
class Window:
    start: float
    end: float


class _OneOff:
    def __init__(self, start: float, duration: float) -> None:
        self.start, self.duration = start, duration

    def last_start(self, t: float) -> float | None:
        return self.start if self.start <= t else None

    def first_start_after(self, t: float) -> float | None:
        return self.start if self.start > t else None


class _Cron:
    """A cron's fires in [low, high) (high None: no end)."""

    def __init__(self, expression: str, low: float, high: float | None, duration: float) -> None:
        self.expression, self.low, self.high, self.duration = expression, low, high, duration

    def _step(self, start: float, forward: bool) -> float | None:
        iterator = croniter(self.expression, datetime.fromtimestamp(start, UTC))
        try:
            return iterator.get_next(float) if forward else iterator.get_prev(float)
        except CroniterError:  # no fire in croniter's search span (e.g. 30 February)
            return None

    def last_start(self, t: float) -> float | None:
        """The latest fire at or before ``t``."""
        if self.high is not None:
            t = min(t, self.high - 1e-3)
        if t < self.low:
            return None
        before = self._step(t, forward=False)  # strictly before t
        after = self._step(before if before is not None else t, forward=True)
        if after is not None and after <= t:
            before = after
        return before if before is not None and before >= self.low else None

    def first_start_after(self, t: float) -> float | None:
        fire = self._step(max(t, self.low - 1e-3), forward=True)
        if fire is None or (self.high is not None and fire >= self.high):
            return None
        return fire


def first_fire(brownout: BrownoutConfig, low: datetime, high: datetime | None) -> float | None:
    """A cron's first fire in [low, high), or None when it never fires there."""
    series = _Cron(brownout.schedule or "", low.timestamp(), _ts(high), brownout.duration)
    return series.first_start_after(low.timestamp() - 1e-3)


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


class BrownoutSchedule:
    """Every window of one deprecation; windows never run past the sunset."""

    def __init__(
        self, brownouts: list[BrownoutConfig], deprecated_at: datetime, sunset_at: datetime | None
    ) -> None:
        self.sunset = _ts(sunset_at)
        self._series: list[_OneOff | _Cron] = []
        for brownout in brownouts:
            if brownout.start is not None:
                self._series.append(_OneOff(brownout.start.timestamp(), brownout.duration))
                continue
            low = (brownout.since or deprecated_at).timestamp()
            ends = [v for v in (_ts(brownout.until), self.sunset) if v is not None]
            high = min(ends) if ends else None
            self._series.append(_Cron(brownout.schedule or "", low, high, brownout.duration))

    def __bool__(self) -> bool:
        return bool(self._series)

    def active(self, t: float) -> Window | None:
        """The window ``t`` is in (start ≤ t < end), its end the end of the whole chain."""
        starts = []
        end = t
        for series in self._series:
            start = series.last_start(t)
            if start is not None and start + series.duration > t:
                starts.append(start)
                end = max(end, start + series.duration)
        if not starts:
            return None
        return Window(min(starts), self._chain_end(end, limit=t + CHAIN_HORIZON))

    def next_after(self, t: float) -> Window | None:
        """The first window that starts after ``t``."""
        best: tuple[float, float] | None = None
        for series in self._series:
            start = series.first_start_after(t)
            if start is not None and (best is None or start < best[0]):
                best = (start, start + series.duration)
        if best is None or (self.sunset is not None and best[0] >= self.sunset):
            return None
        return Window(best[0], self._chain_end(best[1], limit=best[0] + CHAIN_HORIZON))

    def _chain_end(self, end: float, *, limit: float) -> float:
        """Follow the windows that start at or before ``end`` and last longer."""
        for _ in range(_CHAIN_STEPS):
            longer = end
            for series in self._series:
                start = series.last_start(end)
                if start is not None:
                    longer = max(longer, start + series.duration)
            if longer <= end or longer >= limit:
                end = min(longer, limit)
                break
            end = longer
        return end if self.sunset is None else min(end, self.sunset)

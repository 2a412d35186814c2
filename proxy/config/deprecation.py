"""The ``deprecation`` section: the dates and link legacy's answers announce (RFC 9745,
RFC 8594), checked so they can go into a header as they are; the brownouts before the
sunset (``brownouts.py``) and what happens after it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from cutover.config.base import SectionConfig
from cutover.config.brownouts import BrownoutConfig, aware_utc, first_fire, utc_datetime
from cutover.vocabulary import AfterSunset


class DeprecationConfig(SectionConfig):
    deprecated_at: datetime
    sunset_at: datetime | None = None
    link: str | None = None
    legacy_headers: bool = False
    brownouts: list[BrownoutConfig] = []
    brownout_status: Literal[410, 503] = 410
    exempt_clients: list[str] = []  # client keys, as ``cutover usage`` shows them
    dry_run: bool = False  # count and log the would-be refusals, refuse no one
    after_sunset: AfterSunset = AfterSunset.KEEP

    @field_validator("deprecated_at", "sunset_at", mode="before")
    @classmethod
    def _date_is_midnight_utc(cls, value: Any) -> Any:
        return utc_datetime(value)

    @field_validator("deprecated_at", "sunset_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return aware_utc(value)

    @field_validator("sunset_at")
    @classmethod
    def _sunset_after_deprecation(cls, value: datetime | None, info: ValidationInfo) -> Any:
        deprecated_at = info.data.get("deprecated_at")
        if value is not None and deprecated_at is not None and value < deprecated_at:
            raise ValueError("must not be earlier than deprecated_at (RFC 9745 section 3)")
        return value

    @field_validator("link")
    @classmethod
    def _link(cls, value: str | None) -> str | None:
        if value is None:
            return None
        # It goes into a Link header as <URL>: a header carries Latin-1 and no line breaks.
        for char in value:
            if ord(char) < 0x20 or ord(char) == 0x7F:
                raise ValueError(
                    f"must not contain control characters such as CR or LF, found {char!r}"
                )
            if char in ' <>"':
                raise ValueError(f"must not contain {char!r}: percent-encode it")
            if ord(char) > 0xFF:
                encoded = "".join(f"%{byte:02X}" for byte in char.encode("utf-8"))
                raise ValueError(
                    f"contains {char!r}, outside Latin-1 (a header cannot carry it): "
                    f"percent-encode it as {encoded}"
                )
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _brownouts_before_sunset(self) -> DeprecationConfig:
        problems = [*self._window_problems()]
        if self.after_sunset != AfterSunset.KEEP and self.sunset_at is None:
            problems.append(
                (("after_sunset",), f"{self.after_sunset} needs sunset_at: when is the sunset?")
            )
        if problems:
            errors = [
                InitErrorDetails(type=PydanticCustomError("invalid", reason), loc=loc, input=None)
                for loc, reason in problems
            ]
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self

    def _window_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Every brownout inside [deprecated_at, sunset_at], every cron firing there."""
        problems: list[tuple[tuple[str | int, ...], str]] = []
        since, sunset = self.deprecated_at, self.sunset_at
        span = f"[{since.isoformat()}, {'no sunset' if sunset is None else sunset.isoformat()}]"
        for index, brownout in enumerate(self.brownouts):
            at: tuple[str | int, ...] = ("brownouts", index)
            if brownout.start is not None:
                end = brownout.start.timestamp() + brownout.duration
                if brownout.start < since:
                    problems.append((
                        (*at, "start"), f"is before deprecated_at: a brownout must fall in {span}"
                    ))  # fmt: skip
                elif sunset is not None and brownout.start >= sunset:
                    problems.append((
                        (*at, "start"), f"is not before sunset_at: a brownout must fall in {span}"
                    ))  # fmt: skip
                elif sunset is not None and end > sunset.timestamp():
                    problems.append((
                        (*at, "duration"), f"ends after sunset_at: the window must fall in {span}"
                    ))  # fmt: skip
                continue
            low = brownout.since or since
            ends = [value for value in (brownout.until, sunset) if value is not None]
            high = min(ends) if ends else None
            if brownout.since is not None and brownout.since < since:
                problems.append(((*at, "from"), f"is before deprecated_at: it must fall in {span}"))
            elif sunset is not None and brownout.since is not None and brownout.since >= sunset:
                problems.append(((*at, "from"), f"is not before sunset_at: it must fall in {span}"))
            elif sunset is not None and brownout.until is not None and brownout.until > sunset:
                problems.append(((*at, "until"), f"is after sunset_at: it must fall in {span}"))
            elif first_fire(brownout, low, high) is None:
                before = "until" if high != sunset else "sunset_at"
                where = f"after {low.isoformat()}" if high is None else (
                    f"between {low.isoformat()} and {before} ({high.isoformat()})")  # fmt: skip
                problems.append(((*at, "schedule"), f"{brownout.schedule!r} never fires {where}"))
        return problems

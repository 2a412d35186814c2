"""The ``deprecation`` section: the dates and link legacy's answers announce (RFC 9745,
RFC 8594), checked so they can go into a header as they are."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationInfo, field_validator

from cutover.config.base import SectionConfig

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class DeprecationConfig(SectionConfig):
    deprecated_at: datetime
    sunset_at: datetime | None = None
    link: str | None = None
    legacy_headers: bool = False

    @field_validator("deprecated_at", "sunset_at", mode="before")
    @classmethod
    def _date_is_midnight_utc(cls, value: Any) -> Any:
        if isinstance(value, str) and _DATE_RE.match(value):
            value = date.fromisoformat(value)
        if isinstance(value, date) and not isinstance(value, datetime):
            return datetime(value.year, value.month, value.day, tzinfo=UTC)
        return value

    @field_validator("deprecated_at", "sunset_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must include a time zone, e.g. 2026-12-01T00:00:00Z")
        return value.astimezone(UTC) if value is not None else None

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

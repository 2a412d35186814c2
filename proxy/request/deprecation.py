"""RFC 9745 ``Deprecation`` and RFC 8594 ``Sunset`` headers, computed once from config."""

from __future__ import annotations

from email.utils import format_datetime

from cutover.config import DeprecationConfig
from cutover.types import RawHeaders


def deprecation_value(deprecation: DeprecationConfig) -> str:
    """RFC 9745 structured-field Date: ``@`` and Unix seconds."""
    return f"@{int(deprecation.deprecated_at.timestamp())}"


def sunset_value(deprecation: DeprecationConfig) -> str | None:
    """RFC 8594 HTTP-date (IMF-fixdate, always GMT)."""
    if deprecation.sunset_at is None:
        return None
    return format_datetime(deprecation.sunset_at, usegmt=True)


def human_notice(deprecation: DeprecationConfig) -> str:
    since = deprecation.deprecated_at.date().isoformat()
    sentence = f"This API is deprecated since {since}"
    if deprecation.sunset_at is not None:
        sentence += f" and will be removed on {deprecation.sunset_at.date().isoformat()}"
    if deprecation.link:
        sentence += f"; see {deprecation.link}"
    return sentence + "."


def deprecation_headers(deprecation: DeprecationConfig | None) -> RawHeaders:
    """The headers stamped on every response served by legacy (empty when not configured)."""
    if deprecation is None:
        return []
    headers = [("deprecation", deprecation_value(deprecation))]
    sunset = sunset_value(deprecation)
    if sunset is not None:
        headers.append(("sunset", sunset))
    if deprecation.link:
        headers.append(("link", f'<{deprecation.link}>; rel="deprecation"'))
        if sunset is not None:
            headers.append(("link", f'<{deprecation.link}>; rel="sunset"'))
    if deprecation.legacy_headers:
        headers.append(("x-api-deprecation", human_notice(deprecation)))
        if deprecation.sunset_at is not None:
            headers.append(("x-api-sunset", deprecation.sunset_at.date().isoformat()))
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]

"""cutover.config.deprecation: dates in UTC, and a link a header can carry."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cutover.config import DeprecationConfig
from tests.config import BACKENDS, problems


def test_a_date_is_midnight_utc_and_a_time_is_converted_to_utc() -> None:
    section = DeprecationConfig(deprecated_at="2027-01-01", sunset_at="2027-06-01T02:00:00+02:00")
    assert section.deprecated_at == datetime(2027, 1, 1, tzinfo=UTC)
    assert section.sunset_at == datetime(2027, 6, 1, tzinfo=UTC)


def test_sunset_on_the_deprecation_day_is_accepted() -> None:
    section = DeprecationConfig(deprecated_at="2027-01-01", sunset_at="2027-01-01")
    assert section.sunset_at == section.deprecated_at


@pytest.mark.parametrize(
    ("link", "reason"),
    [
        ("https://x/a b", "must not contain ' ': percent-encode it"),
        ("https://x/\r\nSet-Cookie: a", "must not contain control characters such as CR or LF"),
        ("https://x/→", "contains '→', outside Latin-1 (a header cannot carry it): "
                        "percent-encode it as %E2%86%92"),
        ("mailto:a@x", "must be an http:// or https:// URL"),
    ],
)  # fmt: skip
def test_links_a_header_cannot_carry(link: str, reason: str) -> None:
    section = {"deprecated_at": "2027-01-01", "link": link}
    found = problems({"backends": BACKENDS, "deprecation": section})
    assert len(found) == 1 and found[0].startswith(f"deprecation.link: {reason}"), found

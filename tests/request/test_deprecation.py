from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from cutover.config import DeprecationConfig
from cutover.request.deprecation import deprecation_headers, deprecation_value, sunset_value


def make(**kw) -> DeprecationConfig:
    return DeprecationConfig(deprecated_at="2026-12-01T00:00:00Z", **kw)


def test_deprecation_is_an_rfc9745_structured_date() -> None:
    assert deprecation_value(make()) == "@1796083200"
    assert datetime.fromtimestamp(1796083200, UTC) == datetime(2026, 12, 1, tzinfo=UTC)


def test_offsets_are_normalised_to_utc() -> None:
    dep = DeprecationConfig(
        deprecated_at="2026-12-01T02:00:00+02:00", sunset_at="2027-06-01T00:00:00Z"
    )
    assert deprecation_value(dep) == "@1796083200"


def test_sunset_is_an_imf_fixdate_in_gmt() -> None:
    value = sunset_value(make(sunset_at="2027-06-01T12:30:05Z"))
    assert value == "Tue, 01 Jun 2027 12:30:05 GMT"
    assert parsedate_to_datetime(value) == datetime(2027, 6, 1, 12, 30, 5, tzinfo=UTC)


def test_all_headers() -> None:
    headers = deprecation_headers(
        make(
            sunset_at="2027-06-01T00:00:00Z", link="https://example.com/guide", legacy_headers=True
        )
    )
    assert headers == [
        (b"deprecation", b"@1796083200"),
        (b"sunset", b"Tue, 01 Jun 2027 00:00:00 GMT"),
        (b"link", b'<https://example.com/guide>; rel="deprecation"'),
        (b"link", b'<https://example.com/guide>; rel="sunset"'),
        (
            b"x-api-deprecation",
            b"This API is deprecated since 2026-12-01 and will be removed on 2027-06-01;"
            b" see https://example.com/guide.",
        ),
        (b"x-api-sunset", b"2027-06-01"),
    ]


def test_minimal_and_absent() -> None:
    assert deprecation_headers(make()) == [(b"deprecation", b"@1796083200")]
    assert deprecation_headers(None) == []

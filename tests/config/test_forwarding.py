"""cutover.config.forwarding: which forwarding headers go upstream."""

from __future__ import annotations

from cutover.config import parse_settings
from cutover.vocabulary import ForwardedHeader
from tests.config import BACKENDS, problems


def test_the_default_is_x_forwarded_and_each_vocabulary_is_accepted() -> None:
    assert parse_settings({"backends": BACKENDS}).forwarded.header == ForwardedHeader.X_FORWARDED
    for header in ("x-forwarded", "rfc7239", "both"):
        settings = parse_settings({"backends": BACKENDS, "forwarded": {"header": header}})
        assert settings.forwarded.header == header


def test_another_header_is_refused_naming_the_field() -> None:
    assert problems({"backends": BACKENDS, "forwarded": {"header": "x-real-ip"}}) == [
        "forwarded.header: Input should be 'x-forwarded', 'rfc7239' or 'both'"
    ]

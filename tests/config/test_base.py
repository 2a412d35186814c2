"""cutover.config.base: the value checks several sections share."""

from __future__ import annotations

import pytest

from cutover.config.base import http_methods, http_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://h", "http://h"),
        ("https://h:8443/base/", "https://h:8443/base"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_http_urls_are_kept_without_their_trailing_slash(url: str, expected: str) -> None:
    assert http_url(url) == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://h", "must be an http:// or https:// URL"),
        ("h:80", "must be an http:// or https:// URL"),
        ("http://", "must name a host"),
        ("http://h/?q=1", "must not have a query or fragment"),
        ("http://h/#top", "must not have a query or fragment"),
        ("http://h:port", "has an invalid port: "),
    ],
)
def test_http_urls_that_are_refused(url: str, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        http_url(url)
    assert str(info.value).startswith(reason)


def test_http_methods_are_upper_cased_and_checked() -> None:
    assert http_methods(["get", "Post", "PURGE"]) == ["GET", "POST", "PURGE"]
    with pytest.raises(ValueError, match="'GET ME' is not an HTTP method"):
        http_methods(["get me"])

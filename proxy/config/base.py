"""What every config section shares: the base class (unknown keys refused, frozen) and the
value types several sections validate the same way."""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict

BackendName = Literal["legacy", "new"]
BACKEND_NAMES: tuple[BackendName, ...] = ("legacy", "new")
SAFE_METHODS = ("GET", "HEAD")

_METHOD_RE = re.compile(r"^[A-Z]+$")


class SectionConfig(BaseModel):
    # No inf or NaN: a threshold of .inf would be no check at all, and JSON (the admin API,
    # the state file) cannot carry either.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _weight(value: float) -> float:
    if not 0 <= value <= 100:
        raise ValueError("must be between 0 and 100")
    return value


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


def http_url(value: str) -> str:
    """An http:// or https:// URL naming a host, without query, fragment or trailing slash."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("must name a host")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValueError(f"has an invalid port: {exc}") from None
    return value.rstrip("/")


def http_methods(value: list[str]) -> list[str]:
    """HTTP method names, upper-cased."""
    methods = [method.upper() for method in value]
    for method in methods:
        if not _METHOD_RE.match(method):
            raise ValueError(f"{method!r} is not an HTTP method")
    return methods


Weight = Annotated[float, AfterValidator(_weight)]  # percent of traffic to new
PositiveSeconds = Annotated[float, AfterValidator(_positive)]
ServiceUrl = Annotated[str, AfterValidator(http_url)]  # a backend's, Prometheus'
HttpMethods = Annotated[list[str], AfterValidator(http_methods)]

"""What every config section shares: the base class (unknown keys refused, frozen) and the
value types several sections validate the same way."""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict

SAFE_METHODS = ("GET", "HEAD")

_METHOD_RE = re.compile(r"^[A-Z]+$")
_BACKEND_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
_MIGRATION_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


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


def backend_name(value: str) -> str:
    if not _BACKEND_RE.match(value):
        raise ValueError(f"{value!r} is not a backend name ([a-z][a-z0-9_-]*)")
    return value


def migration_name(value: str) -> str:
    if not _MIGRATION_RE.match(value) or len(value) > 63:
        raise ValueError(f"{value!r} is not a migration name ([a-z0-9][a-z0-9-]*, at most 63)")
    return value


def path_prefix(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("must start with '/'")
    if any(char in value for char in "?#") or any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        raise ValueError("must be a path: no query, fragment, spaces or control characters")
    return value


def sticky_spec(value: str) -> str:
    """``header:NAME``, ``cookie:NAME``, ``client_ip`` or ``none``."""
    kind, _, name = value.partition(":")
    if value in ("none", "client_ip"):
        return value
    if kind in ("header", "cookie") and name:
        if not _TOKEN_RE.match(name):
            raise ValueError(f"{name!r} is not a valid {kind} name")
        return value
    raise ValueError("must be header:NAME, cookie:NAME, client_ip or none")


def http_methods(value: list[str]) -> list[str]:
    """HTTP method names, upper-cased."""
    methods = [method.upper() for method in value]
    for method in methods:
        if not _METHOD_RE.match(method):
            raise ValueError(f"{method!r} is not an HTTP method")
    return methods


Weight = Annotated[float, AfterValidator(_weight)]  # percent of a migration's traffic to its ``to``
PositiveSeconds = Annotated[float, AfterValidator(_positive)]
ServiceUrl = Annotated[str, AfterValidator(http_url)]  # a backend's, Prometheus'
HttpMethods = Annotated[list[str], AfterValidator(http_methods)]
BackendName = Annotated[str, AfterValidator(backend_name)]
MigrationName = Annotated[str, AfterValidator(migration_name)]
PathPrefix = Annotated[str, AfterValidator(path_prefix)]
Sticky = Annotated[str, AfterValidator(sticky_spec)]

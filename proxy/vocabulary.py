"""Cutover's vocabularies, one StrEnum each, shared by the request path and the control plane
(both import this module; it imports nothing of Cutover's). Each member is its own string,
so it serialises to JSON, labels metrics and compares with plain strings unchanged."""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    """Where a rollout is."""

    PROGRESSING = "progressing"
    PAUSED = "paused"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    MANUAL = "manual"


class Actor(StrEnum):
    """Who made a transition."""

    GUARD = "guard"
    OPERATOR = "operator"
    STARTUP = "startup"


class Role(StrEnum):
    """Who is signed in to the console: the admin token acts, the view token only looks.
    An operator's transition made from the console carries the role."""

    ADMIN = "admin"
    VIEWER = "viewer"


class TransitionKind(StrEnum):
    START = "start"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    PAUSE = "pause"
    RESUME = "resume"
    RESTART = "restart"
    SET_WEIGHT = "set_weight"


class CheckResult(StrEnum):
    """What one guard check found."""

    PASS = "pass"
    FAIL = "fail"
    NODATA = "nodata"
    ERROR = "error"


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class ShadowResult(StrEnum):
    """How one mirrored request ended."""

    MATCH = "match"
    MISMATCH = "mismatch"
    ERROR = "error"
    DROPPED = "dropped"


class ClientIdentity(StrEnum):
    """How the usage report tells one client of a deprecated API from another."""

    HEADER = "header"
    API_KEY = "api_key"
    BEARER = "bearer"
    CLIENT_IP = "client_ip"


class AfterSunset(StrEnum):
    """What a deprecated migration's ``from`` requests get once its sunset has passed."""

    KEEP = "keep"
    GONE = "gone"
    ROUTE_TO_NEW = "route_to_new"


class Lifecycle(StrEnum):
    """What a migration's deprecation is doing now."""

    DEPRECATED = "deprecated"  # announced, serving
    BROWNOUT = "brownout"  # inside a brownout window
    SUNSET = "sunset"  # past sunset_at


class CohortKind(StrEnum):
    """What of a request a cohort reads."""

    QUERY = "query"
    HEADER = "header"
    COOKIE = "cookie"
    NETWORK = "network"
    USERS_FILE = "users_file"


class ForwardedHeader(StrEnum):
    """Which forwarding headers Cutover writes upstream (and reads from a trusted proxy)."""

    X_FORWARDED = "x-forwarded"  # X-Forwarded-For, -Proto, -Host
    RFC7239 = "rfc7239"  # Forwarded (RFC 7239)
    BOTH = "both"


class HandshakeResult(StrEnum):
    """How a WebSocket handshake sent to a backend ended."""

    ACCEPTED = "accepted"  # the backend's 101: the socket is open
    REFUSED = "refused"  # another answer of the backend's, relayed
    FAILED = "failed"  # no answer (502/504)


class AccessLogFormat(StrEnum):
    """How an access log line is written."""

    JSON = "json"  # one JSON object a line
    COMBINED = "combined"  # nginx/Apache "combined", Cutover's fields after it as key=value

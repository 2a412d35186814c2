"""An access log entry, as the request path leaves it (a plain tuple of references), made
into a line by the writer thread: JSON, or nginx's ``combined`` with Cutover's fields after
it as ``key=value``. Nothing here runs on the request path."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from cutover.request.headers import BACKEND_HEADER
from cutover.request.splitter import Decision
from cutover.types import RawHeaders, Scope
from cutover.vocabulary import AccessLogFormat

# (scope, started (Unix s), duration (s), status (0: no answer began), body bytes sent,
#  decision (None: refused before routing), request id, the answer's headers (None: none
#  began), WebSocket close code (None: an HTTP request))
Entry = tuple[Scope, float, float, int, int, Decision | None, bytes, RawHeaders | None, int | None]


@dataclass(frozen=True)
class AccessRecord:
    time: float
    client: str | None
    method: str
    target: str
    protocol: str
    status: int
    bytes_sent: int
    duration: float
    migration: str | None
    cohort: str | None
    backend: str | None
    fallback: bool
    request_id: str
    user_agent: str | None
    referer: str | None
    close_code: int | None


def _header(headers: RawHeaders | None, name: bytes) -> str | None:
    for key, value in headers or ():
        if key == name:
            return value.decode("latin-1")
    return None


def record(entry: Entry) -> AccessRecord:
    scope, started, duration, status, sent, decision, request_id, answer, close_code = entry
    client = scope.get("client")
    raw_path = scope.get("raw_path") or scope.get("path", "").encode("latin-1", "replace")
    query = scope.get("query_string", b"")
    target = raw_path + b"?" + query if query else raw_path
    request_headers = scope.get("headers", ())
    return AccessRecord(
        time=started,
        client=client[0] if client else None,
        method=scope.get("method", "GET"),  # a WebSocket scope has none: its handshake's
        target=target.decode("latin-1"),
        protocol="HTTP/" + scope.get("http_version", "1.1"),
        status=status,
        bytes_sent=sent,
        duration=duration,
        migration=None if decision is None else decision.label,
        cohort=None if decision is None else decision.cohort,
        backend=_header(answer, BACKEND_HEADER),
        fallback=decision is not None and decision.fallback,
        request_id=request_id.decode("latin-1"),
        user_agent=_header(request_headers, b"user-agent"),
        referer=_header(request_headers, b"referer"),
        close_code=close_code,
    )


def iso_time(when: float) -> str:
    """UTC, to the millisecond: 2026-12-01T19:23:27.123Z."""
    whole = int(when)
    millis = int((when - whole) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def json_line(entry: Entry) -> str:
    r = record(entry)
    line = {
        "time": iso_time(r.time),
        "client": r.client,
        "method": r.method,
        "target": r.target,
        "protocol": r.protocol,
        "status": r.status,
        "bytes_sent": r.bytes_sent,
        "duration_ms": round(r.duration * 1000, 3),
        "migration": r.migration,
        "cohort": r.cohort,
        "backend": r.backend,
        "fallback": r.fallback,
        "request_id": r.request_id,
        "user_agent": r.user_agent,
    }
    if r.close_code is not None:
        line["close_code"] = r.close_code
    return json.dumps(line, separators=(",", ":")) + "\n"


# nginx's escaping in its access log: '"', '\' and bytes outside printable ASCII as \xHH.
_UNSAFE = re.compile(r'["\\\x00-\x1f\x7f-\U0010ffff]')


def _escaped(value: str | None) -> str:
    if value is None:
        return "-"
    return _UNSAFE.sub(lambda m: "".join(f"\\x{b:02X}" for b in m[0].encode()), value)


def combined_line(entry: Entry) -> str:
    r = record(entry)
    when = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(r.time))
    request = f"{r.method} {r.target} {r.protocol}"
    extra = (
        f"duration_ms={r.duration * 1000:.3f} migration={r.migration or '-'} "
        f"cohort={r.cohort or '-'} backend={r.backend or '-'} "
        f"fallback={'true' if r.fallback else 'false'} "
        f'request_id="{_escaped(r.request_id)}"'
    )
    if r.close_code is not None:
        extra += f" close_code={r.close_code}"
    return (
        f'{_escaped(r.client)} - - [{when}] "{_escaped(request)}" {r.status} {r.bytes_sent} '
        f'"{_escaped(r.referer)}" "{_escaped(r.user_agent)}" {extra}\n'
    )


FORMATS: dict[AccessLogFormat, Callable[[Entry], str]] = {
    AccessLogFormat.JSON: json_line,
    AccessLogFormat.COMBINED: combined_line,
}

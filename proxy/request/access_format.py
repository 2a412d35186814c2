"""An access log entry: made on the request path (``entry``: a flat tuple of the request's
fields), made into a line by the writer thread (``json_line``, ``combined_line``): JSON, or
nginx's ``combined`` with Cutover's fields after it as ``key=value``."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from functools import lru_cache
from json.encoder import encode_basestring_ascii as quoted  # type: ignore[attr-defined]

from cutover.request.splitter import Decision
from cutover.types import Scope
from cutover.vocabulary import AccessLogFormat

# (started (Unix s), duration (s), status (0: no answer began), body bytes sent, method, raw
#  path, query, client address, HTTP version, user agent, referer, migration, cohort (both
#  None: refused before routing), fallback, request id, backend (None: the proxy answered),
#  WebSocket close code (None: an HTTP request)). Atoms only: a queued entry holds nothing the
#  garbage collector must walk. Holding the request's scope, headers and decision instead
#  made it collect twenty times as often (5 us a request, bench/access_log_bench.py).
Entry = tuple[
    float, float, int, int, str, bytes, bytes, str | None, str, bytes | None, bytes | None,
    str | None, str | None, bool, bytes, bytes | None, int | None,
]  # fmt: skip


def entry(
    scope: Scope, started: float, duration: float, status: int, sent: int,
    decision: Decision | None, request_id: bytes, backend: bytes | None,
    close_code: int | None = None,
) -> Entry:  # fmt: skip
    user_agent = referer = None
    for name, value in scope["headers"]:
        if name == b"user-agent":
            user_agent = value
        elif name == b"referer":
            referer = value
    client = scope.get("client")
    migration = cohort = None
    fallback = False
    if decision is not None:
        migration, cohort, fallback = decision.label, decision.cohort, decision.fallback
    raw_path = scope.get("raw_path") or scope["path"].encode("latin-1", "replace")
    return (
        started, duration, status, sent,
        scope.get("method", "GET"),  # a WebSocket scope has none: its handshake's
        raw_path, scope.get("query_string", b""), client[0] if client else None,
        scope.get("http_version", "1.1"), user_agent, referer, migration, cohort, fallback,
        request_id, backend, close_code,
    )  # fmt: skip


Fields = tuple[
    float, str | None, str, str, str, int, int, float, str | None, str | None, str | None, bool,
    str, str | None, str | None, int | None,
]  # fmt: skip


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def fields(entry: Entry) -> Fields:
    """(time, client, method, target, protocol, status, bytes sent, duration, migration,
    cohort, backend, fallback, request id, user agent, referer, close code)."""
    (started, duration, status, sent, method, raw_path, query, client, http_version,
     user_agent, referer, migration, cohort, fallback, request_id, backend,
     close_code) = entry  # fmt: skip
    target = raw_path + b"?" + query if query else raw_path
    return (
        started, client, method, target.decode("latin-1"), "HTTP/" + http_version, status,
        sent, duration, migration, cohort, _text(backend), fallback,
        request_id.decode("latin-1"), _text(user_agent), _text(referer), close_code,
    )  # fmt: skip


# Lines come in bursts of the same second: its formatting is kept.
@lru_cache(maxsize=8)
def _utc_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


@lru_cache(maxsize=8)
def _local_second(second: int) -> str:
    return time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(second))


# What repeats from line to line (methods, migrations, cohorts, backends, client addresses,
# user agents) is quoted once. Bounded: a stream of distinct values is only not remembered.
# No lock: a dict's get and set are atomic, and two writer threads racing quote a value twice.
_QUOTED: dict[str | bytes | None, str] = {None: "null"}
_QUOTED_MAX = 4096
_PROTOCOLS = {version: f'"HTTP/{version}"' for version in ("1.0", "1.1")}


def _word(value: str | bytes | None) -> str:
    """``value`` as a JSON string (bytes read as latin-1), or null."""
    found = _QUOTED.get(value)
    if found is None:
        found = quoted(value if type(value) is str else value.decode("latin-1"))  # type: ignore[union-attr]
        if len(_QUOTED) < _QUOTED_MAX:
            _QUOTED[value] = found
    return found


# A JSON line's start: its time (UTC, to the millisecond: 2026-12-01T19:23:27.123Z) between
# the keys around it. The requests of a burst share each millisecond.
_STAMPS: dict[int, str] = {}
# A line's routing fields (migration, cohort, backend, fallback): one of few combinations.
# Both bounded as ``_QUOTED`` is.
_ROUTINGS: dict[tuple[str | None, str | None, bytes | None, bool], str] = {}


def _stamp(when: float) -> str:
    whole = int(when)
    milli = int((when - whole) * 1000)
    key = whole * 1000 + milli
    found = _STAMPS.get(key)
    if found is None:
        if len(_STAMPS) >= _QUOTED_MAX:
            _STAMPS.clear()
        found = _STAMPS[key] = f'{{"time":"{_utc_second(whole)}.{milli:03d}Z","client":'
    return found


def _routing(
    migration: str | None, cohort: str | None, backend: bytes | None, fallback: bool
) -> str:
    key = (migration, cohort, backend, fallback)
    found = _ROUTINGS.get(key)
    if found is None:
        found = (
            f',"migration":{_word(migration)},"cohort":{_word(cohort)},'
            f'"backend":{_word(backend)},"fallback":{"true" if fallback else "false"},'
        )
        if len(_ROUTINGS) < _QUOTED_MAX:
            _ROUTINGS[key] = found
    return found


def json_line(entry: Entry) -> str:
    (started, duration, status, sent, method, raw_path, query, client, version, user_agent,
     _, migration, cohort, fallback, request_id, backend, close_code) = entry  # fmt: skip
    target = raw_path + b"?" + query if query else raw_path
    protocol = _PROTOCOLS.get(version) or quoted("HTTP/" + version)
    close = "" if close_code is None else f',"close_code":{close_code}'
    # By hand rather than json.dumps of a dict: a quarter of the time, the same JSON.
    return (
        f'{_stamp(started)}{_word(client)},"method":{_word(method)},'
        f'"target":{quoted(target.decode("latin-1"))},"protocol":{protocol},'
        f'"status":{status},"bytes_sent":{sent},"duration_ms":{duration * 1000:.3f}'
        f"{_routing(migration, cohort, backend, fallback)}"
        f'"request_id":{quoted(request_id.decode("latin-1"))},'
        f'"user_agent":{_word(user_agent)}{close}}}\n'
    )


# nginx's escaping in its access log: '"', '\' and bytes outside printable ASCII as \xHH.
_UNSAFE = re.compile(r'["\\\x00-\x1f\x7f-\U0010ffff]')


def _escaped(value: str | None) -> str:
    if value is None:
        return "-"
    if _UNSAFE.search(value) is None:
        return value
    return _UNSAFE.sub(lambda m: "".join(f"\\x{b:02X}" for b in m[0].encode()), value)


def combined_line(entry: Entry) -> str:
    (when, client, method, target, protocol, status, sent, duration, migration, cohort,
     backend, fallback, request_id, user_agent, referer, close_code) = fields(entry)  # fmt: skip
    close = "" if close_code is None else f" close_code={close_code}"
    return (
        f"{_escaped(client)} - - [{_local_second(int(when))}] "
        f'"{_escaped(f"{method} {target} {protocol}")}" {status} {sent} '
        f'"{_escaped(referer)}" "{_escaped(user_agent)}" duration_ms={duration * 1000:.3f} '
        f"migration={migration or '-'} cohort={cohort or '-'} backend={backend or '-'} "
        f'fallback={"true" if fallback else "false"} request_id="{_escaped(request_id)}"{close}\n'
    )


FORMATS: dict[AccessLogFormat, Callable[[Entry], str]] = {
    AccessLogFormat.JSON: json_line,
    AccessLogFormat.COMBINED: combined_line,
}

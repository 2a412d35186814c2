"""The access log over respx backends: a JSON or combined line per request with every
field, refusals and failures logged too, the writer thread's bounded queue dropping and
counting, the file reopened after a rotation, a WebSocket session's line."""

from __future__ import annotations

import io
import json
import random
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from prometheus_client import CollectorRegistry, Counter
from starlette.testclient import TestClient

from cutover.config import AccessLogConfig, ConfigError
from cutover.ops.assembly import create_app
from cutover.request import access_format
from cutover.request.access_log import AccessLog, Meter
from tests.clocks import Clock
from tests.conftest import LEGACY_URL, NEW_URL, make_settings

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
COHORTS = {
    "migrations": [{
        "name": "engine", "match": {"prefix": "/api"}, "from": "legacy", "to": "new",
        "weight": 0, "cohorts": [{"name": "beta", "header": {"X-Beta": "yes"}, "backend": "new"}],
    }],
}  # fmt: skip


def served(
    upstreams: respx.MockRouter,
    tmp_path: Path,
    requests: Callable[[TestClient], Any],
    *,
    fmt: str = "json",
    clock: Callable[[], float] | None = None,
    **sections: Any,
) -> list[str]:
    """The access log's lines once the requests were answered and the app shut down."""
    path = tmp_path / "access.log"
    access_log = {"enabled": True, "format": fmt, "path": str(path)}
    settings = make_settings(access_log=access_log, **sections)
    extra = {} if clock is None else {"clock": clock}
    app = create_app(settings, transport=httpx.MockTransport(upstreams.async_handler), **extra)
    with TestClient(app, follow_redirects=False) as client:
        requests(client)
    return path.read_text().splitlines()


def test_a_json_line_has_every_field(upstreams: respx.MockRouter, tmp_path: Path) -> None:
    upstreams.route(url__startswith=NEW_URL).respond(200, text="twelve bytes")
    lines = served(upstreams, tmp_path, lambda c: c.get(
        "/api/x?q=1", headers={"X-Beta": "yes", "X-Request-Id": "r-1", "User-Agent": "probe/1"}
    ), **COHORTS)  # fmt: skip
    (line,) = [json.loads(text) for text in lines]
    assert ISO.fullmatch(line.pop("time"))
    assert 0 < line.pop("duration_ms") < 10_000
    assert line == {
        "client": "testclient", "method": "GET", "target": "/api/x?q=1",
        "protocol": "HTTP/1.1", "status": 200, "bytes_sent": 12, "migration": "engine",
        "cohort": "beta", "backend": "new", "fallback": False, "request_id": "r-1",
        "user_agent": "probe/1",
    }  # fmt: skip


def test_a_combined_line_has_every_field(upstreams: respx.MockRouter, tmp_path: Path) -> None:
    upstreams.route(url__startswith=LEGACY_URL).respond(200, text="legacy")
    headers = {"X-Request-Id": 'say "hi"', "User-Agent": "probe/1", "Referer": "http://r.test/"}
    (line,) = served(upstreams, tmp_path, lambda c: c.get("/api/y", headers=headers),
                     fmt="combined", **COHORTS)  # fmt: skip
    pattern = (
        r"testclient - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "
        r'"GET /api/y HTTP/1\.1" 200 6 "http://r\.test/" "probe/1" '
        r"duration_ms=\d+\.\d{3} migration=engine cohort=weight backend=legacy "
        r'fallback=false request_id="say \\x22hi\\x22"'
    )
    assert re.fullmatch(pattern, line), line


def test_a_fallback_is_logged_with_the_backend_that_answered(
    upstreams: respx.MockRouter, tmp_path: Path
) -> None:
    upstreams.route(url__startswith=NEW_URL).mock(side_effect=httpx.ConnectError("down"))
    upstreams.route(url__startswith=LEGACY_URL).respond(200, text="legacy")
    (line,) = served(upstreams, tmp_path, lambda c: c.get("/api/x"), split={"weight": 100})
    fields = json.loads(line)
    assert (fields["status"], fields["backend"], fields["fallback"]) == (200, "legacy", True)


def test_refusals_and_failures_are_logged(upstreams: respx.MockRouter, tmp_path: Path) -> None:
    upstreams.route(url__startswith=LEGACY_URL).mock(side_effect=httpx.ConnectError("down"))
    answers: list[httpx.Response] = []

    def requests(client: TestClient) -> None:
        answers.append(client.request("TRACE", "/api/x"))
        answers.append(client.post("/api/x", content=b"too large"))
        answers.append(client.get("/api/x", headers={"Host": "bad host"}))
        answers.append(client.get("/api/x"))

    lines = [json.loads(text) for text in served(
        upstreams, tmp_path, requests, limits={"max_request_body": 4}
    )]  # fmt: skip
    seen = [(f["method"], f["status"], f["migration"], f["backend"]) for f in lines]
    assert seen == [
        ("TRACE", 405, None, None),  # refused before routing
        ("POST", 413, "default", None),
        ("GET", 400, "default", None),
        ("GET", 502, "default", "legacy"),  # the backend that failed
    ]
    for fields, answer in zip(lines, answers, strict=True):
        assert fields["request_id"] == answer.headers["x-request-id"]
        assert fields["bytes_sent"] == len(answer.content) > 0


def test_a_brownout_refusal_is_logged(upstreams: respx.MockRouter, tmp_path: Path) -> None:
    upstreams.route(url__startswith=LEGACY_URL).respond(200, text="legacy")
    deprecation = {
        "deprecated_at": "2026-12-01", "sunset_at": "2027-06-01",
        "link": "https://example.com/guide",
        "brownouts": [{"start": "2027-05-03T14:00:00Z", "duration": "12h"}],
    }  # fmt: skip
    in_window = Clock(datetime(2027, 5, 3, 15, tzinfo=UTC).timestamp())
    (line,) = served(upstreams, tmp_path, lambda c: c.get("/api/x"), clock=in_window,
                     deprecation=deprecation)  # fmt: skip
    fields = json.loads(line)
    assert (fields["status"], fields["migration"], fields["backend"]) == (410, "default", None)


def test_an_off_access_log_is_not_built(upstreams: respx.MockRouter) -> None:
    app = create_app(make_settings(), transport=httpx.MockTransport(upstreams.async_handler))
    assert app.access_log is None


def test_a_file_that_cannot_be_opened_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "access.log"
    settings = make_settings(access_log={"enabled": True, "path": str(path)})
    with pytest.raises(ConfigError) as caught:
        create_app(settings)
    reason = "No such file or directory"
    assert caught.value.problems == [f"access_log.path: cannot open {path}: {reason}"]


# --------------------------------------------------------------------------- the writer


def dropped_counter() -> Counter:
    return Counter("dropped", "test", registry=CollectorRegistry())


def count(counter: Counter) -> float:
    return next(s.value for m in counter.collect() for s in m.samples if s.name == "dropped_total")


def entry(log: AccessLog, path: str = "/x", status: int = 200) -> None:
    meter = Meter(lambda message: None, b"rid")  # type: ignore[arg-type, return-value]
    meter.status = status
    scope = {"type": "http", "method": "GET", "path": path, "headers": [],
             "client": ("10.0.0.1", 5)}  # fmt: skip
    log.record(scope, 1_800_000_000.0, 0.001, meter, None)


def test_a_full_queue_drops_and_counts() -> None:
    out, dropped = io.BytesIO(), dropped_counter()
    log = AccessLog(AccessLogConfig(enabled=True, queue=2), dropped, stream=out)
    for i in range(5):
        entry(log, f"/{i}")
    assert count(dropped) == 3
    assert log.write_pending() == 2
    assert [json.loads(line)["target"] for line in out.getvalue().splitlines()] == ["/0", "/1"]
    entry(log, "/5")  # room again
    assert log.write_pending() == 1


def test_a_failed_write_counts_its_lines_as_dropped(caplog: pytest.LogCaptureFixture) -> None:
    out, dropped = io.BytesIO(), dropped_counter()
    log = AccessLog(AccessLogConfig(enabled=True), dropped, stream=out)
    out.close()
    entry(log)
    entry(log)
    assert log.write_pending() == 0
    assert count(dropped) == 2
    assert "access log lines lost" in caplog.text


def test_the_file_is_reopened_after_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(AccessLogConfig(enabled=True, path=str(path)), dropped_counter())
    entry(log, "/before")
    log.write_pending()
    path.rename(tmp_path / "access.log.1")  # logrotate moves it, then sends SIGHUP
    entry(log, "/still-old")
    log.write_pending()
    log.reopen()
    entry(log, "/after")
    log.write_pending()
    log.close()
    targets = [[json.loads(line)["target"] for line in p.read_text().splitlines()]
               for p in (tmp_path / "access.log.1", path)]  # fmt: skip
    assert targets == [["/before", "/still-old"], ["/after"]]


def test_the_thread_writes_and_close_writes_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(AccessLogConfig(enabled=True, path=str(path)), dropped_counter(), interval=60)
    log.start()
    entry(log, "/last")
    log.close()  # the thread waits 60 s between writes: only the close wrote this
    assert json.loads(path.read_text())["target"] == "/last"


def test_a_websocket_session_has_a_line_at_its_end() -> None:
    out = io.BytesIO()
    log = AccessLog(AccessLogConfig(enabled=True, format="combined"), dropped_counter(),
                    stream=out)  # fmt: skip
    scope = {"type": "websocket", "path": "/ws", "raw_path": b"/ws", "query_string": b"",
             "headers": [], "client": ("10.0.0.2", 5), "http_version": "1.1"}  # fmt: skip
    log.session(scope, started=1_800_000_000.0, duration=2.5, status=101, sent=2048,
                decision=None, request_id=b"ws-1", backend="new", close_code=1000)  # fmt: skip
    log.write_pending()
    line = out.getvalue().decode()
    assert '"GET /ws HTTP/1.1" 101 2048 ' in line
    assert "duration_ms=2500.000" in line
    assert 'backend=new fallback=false request_id="ws-1" close_code=1000' in line


def test_json_lines_are_json_with_every_field_as_it_came() -> None:
    """Seeded random entries, hostile characters included, each formatted twice (the second
    time from the quoted values kept): every line parses, and every field reads back."""
    rng = random.Random(17)
    alphabet = ["a", '"', "\\", "\x00", "\x1f", "é", "\u2028", "/", " ", "\x7f", "😀"]

    def text(most: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, most)))

    def raw(most: int) -> bytes:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, most)))

    for _ in range(2000):
        entry = (
            1.8e9 + rng.random() * 1e5, rng.random(), rng.choice([0, 200, 502]),
            rng.randrange(10**9), rng.choice(["GET", text(5)]), raw(20),
            rng.choice([b"", raw(10)]), rng.choice([None, "10.0.0.1", text(8)]),
            rng.choice(["1.1", "1.0", "2"]), rng.choice([None, b"wrk", raw(15)]), None,
            rng.choice([None, "m", text(6)]), rng.choice([None, "weight", text(4)]),
            rng.random() < 0.5, raw(32), rng.choice([None, b"new", raw(6)]),
            rng.choice([None, 1000]),
        )  # fmt: skip
        (when, client, method, target, protocol, status, sent, _, migration, cohort, backend,
         fallback, request_id, user_agent, _, close_code) = access_format.fields(entry)  # fmt: skip
        first, again = access_format.json_line(entry), access_format.json_line(entry)
        for line in (first, again):
            parsed = json.loads(line)
            assert line.endswith("}\n") and "\n" not in line[:-1]
            assert (parsed["client"], parsed["method"], parsed["target"]) == (
                client,
                method,
                target,
            )
            assert (parsed["protocol"], parsed["status"], parsed["bytes_sent"]) == (
                protocol, status, sent)  # fmt: skip
            assert (parsed["migration"], parsed["cohort"], parsed["backend"]) == (
                migration, cohort, backend)  # fmt: skip
            assert (parsed["fallback"], parsed["request_id"]) == (fallback, request_id)
            assert parsed["user_agent"] == user_agent
            assert parsed.get("close_code") == close_code
            assert parsed["time"] == datetime.fromtimestamp(when, UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.") + f"{int((when - int(when)) * 1000):03d}Z"  # fmt: skip

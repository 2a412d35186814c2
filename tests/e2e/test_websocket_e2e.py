"""WebSockets through a migration, end to end: ``cutover run`` in front of two ``websockets``
library servers (tests/ws_servers.py), the ``websockets`` client on the other side, and raw
sockets for the framing. Every wait polls with a deadline or waits on the protocol itself."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from websockets.asyncio.client import connect as aconnect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.certificates import CertFiles, client_context
from tests.processes import ProxyPorts, ProxyProcess, free_port, wait_until, write_config
from tests.ws_servers import WsBackend, ws_backends

pytestmark = pytest.mark.e2e

TOKEN = "e2e-admin-token-websocket-01234"
NAME = "chat"
DEADLINE = 15.0
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def config_for(backends: dict[str, WsBackend], ports: ProxyPorts, tmp: Path, **extra: Any) -> Any:
    migration = {"name": NAME, "match": {"prefix": "/"}, "from": "legacy", "to": "new",
                 "weight": 50, "sticky": "header:X-User-Id"}  # fmt: skip
    migration.update(extra.pop("migration", {}))
    trusted = extra.pop("ca_file", {})  # for wss:// backends: {"ca_file": PATH}
    return {
        "listen": {"host": "127.0.0.1", "port": ports.listen, **extra.pop("listen", {})},
        "admin": {"host": "127.0.0.1", "port": ports.admin},
        "backends": {name: {"url": b.url, **trusted} for name, b in backends.items()},
        "split": {"override_allowed_from": ["127.0.0.1/32"]},
        "migrations": [migration],
        "state": {"path": str(tmp / "state.json")},
        "shutdown": {"grace": 2},
        **extra,
    }


class Setup:
    def __init__(self, tmp: Path, backends: dict[str, WsBackend], **extra: Any) -> None:
        self.backends = backends
        self.ports = ProxyPorts.pick()
        self.config_path = tmp / "cutover.yaml"
        self.tmp = tmp
        write_config(self.config_path, config_for(backends, self.ports, tmp, **extra))
        self.proxy = ProxyProcess(tmp, self.config_path, self.ports, TOKEN).start()
        self.url = f"ws://127.0.0.1:{self.ports.listen}"

    def connect(self, path: str = "/echo", **kwargs: Any) -> ClientConnection:
        return connect(self.url + path, open_timeout=5, close_timeout=5, max_size=None,
                       **kwargs)  # fmt: skip


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    with ws_backends("legacy", "new") as backends:
        running = Setup(tmp_path, backends)
        try:
            yield running
        finally:
            running.proxy.close()


def test_messages_flow_both_ways_as_the_backend_sent_them(setup: Setup) -> None:
    with setup.connect(additional_headers={"X-Cutover-Backend": "new"}) as ws:
        assert ws.response.status_code == 101
        assert ws.response.headers["X-Cutover-Backend"] == "new"
        # permessage-deflate is negotiated end to end: the backend's answer reaches us.
        assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
        ws.send("hello")
        assert ws.recv() == "hello"
        ws.send(b"\x00\x01binary\xff")
        assert ws.recv() == b"\x00\x01binary\xff"
        big = os.urandom(1024 * 1024)  # random: compression cannot shrink it
        ws.send(big)
        assert ws.recv() == big
        ws.ping(b"are you there").wait(5)  # the pong is the backend's, through the proxy
    handshake = setup.backends["new"].handshakes[-1]
    assert handshake["X-Forwarded-For"] == "127.0.0.1"
    assert "cutover" in handshake["Via"]


def test_a_quiet_session_outlives_every_http_deadline(tmp_path: Path) -> None:
    """The HTTP connection's deadlines (keep-alive, head, body) end at the handover: a
    session quiet for longer than all of them stays open."""
    quiet = 0.4
    with ws_backends("legacy", "new") as backends:
        setup = Setup(tmp_path, backends, listen={"keep_alive": quiet},
                      limits={"header_timeout": quiet, "body_timeout": quiet})  # fmt: skip
        try:
            with setup.connect() as ws:
                ws.send("before")
                assert ws.recv(timeout=5) == "before"
                time.sleep(quiet * 4)  # the client's silence, the behaviour under test
                ws.send("after")
                assert ws.recv(timeout=5) == "after"
        finally:
            setup.proxy.close()


def test_fragments_pass_as_fragments(setup: Setup) -> None:
    direct = setup.backends["legacy"].url.replace("http", "ws")
    with connect(direct + "/fragments", open_timeout=5) as ws:
        ws.send(["frag", "men", "ted"])  # one message in fragments (and an empty last one)
        fragments = ws.recv()
    assert int(fragments) >= 3
    with setup.connect("/fragments") as ws:
        ws.send(["frag", "men", "ted"])
        assert ws.recv() == fragments  # the backend got the frames the client sent
        ws.send("whole")
        assert ws.recv() == "1"


def test_the_backend_chooses_the_subprotocol(setup: Setup) -> None:
    with setup.connect(subprotocols=["chat.v1", "chat.v2"]) as ws:
        assert ws.subprotocol == "chat.v2"  # the server's preference, not the client's


def test_close_codes_pass_both_ways(setup: Setup) -> None:
    with setup.connect(additional_headers={"X-Cutover-Backend": "legacy"}) as ws:
        ws.close(4000, "client leaving")
        assert ws.close_code == 4000  # the backend's echo of our close frame
    wait_until(lambda: 4000 in setup.backends["legacy"].closes, DEADLINE, "the backend's close")

    with setup.connect("/close/4001") as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
    assert closed.value.rcvd.reason == "closed by the backend"


def test_a_session_is_one_access_log_line_at_its_end(tmp_path: Path) -> None:
    log_path = tmp_path / "access.log"
    with ws_backends("legacy", "new") as backends:
        setup = Setup(tmp_path, backends, access_log={"enabled": True, "path": str(log_path)})
        try:
            headers = {"X-Cutover-Backend": "legacy", "X-Request-Id": "session-42"}
            with setup.connect(additional_headers=headers) as ws:
                assert ws.response.headers["X-Request-Id"] == "session-42"
                ws.send("hello")
                assert ws.recv(timeout=5) == "hello"
                ws.close(4000, "client leaving")

            def session() -> dict[str, Any] | None:
                lines = log_path.read_text().splitlines() if log_path.exists() else []
                found = [json.loads(line) for line in lines]
                return next((e for e in found if e.get("request_id") == "session-42"), None)

            line = wait_until(session, DEADLINE, "the session's line", setup.proxy)
        finally:
            setup.proxy.close()
    assert (line["status"], line["backend"], line["close_code"]) == (101, "legacy", 4000)
    assert line["migration"] == NAME and line["bytes_sent"] > len("hello")


def test_a_backend_that_dies_mid_socket(setup: Setup) -> None:
    with setup.connect("/die") as ws:
        ws.send("last words")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1014
    wait_until(lambda: "ended without a close frame" in setup.proxy.stderr(), DEADLINE,
               "the proxy's log line")  # fmt: skip
    assert "Traceback" not in setup.proxy.stderr()


def backend_of(setup: Setup, **headers: str) -> str:
    with setup.connect(additional_headers=headers) as ws:
        return ws.response.headers["X-Cutover-Backend"]


def test_the_handshake_is_routed_by_sticky_key_and_override(setup: Setup) -> None:
    users = [f"user-{i}" for i in range(16)]
    first = {user: backend_of(setup, **{"X-User-Id": user}) for user in users}
    assert set(first.values()) == {"legacy", "new"}  # weight 50 splits the users
    for user in users[:4]:
        assert backend_of(setup, **{"X-User-Id": user}) == first[user]  # sticky
    chosen = next(u for u in users if first[u] == "legacy")
    assert backend_of(setup, **{"X-User-Id": chosen, "X-Cutover-Backend": "new"}) == "new"
    handshakes = setup.proxy.metric(
        "cutover_websocket_handshakes_total", migration=NAME, result="accepted"
    )
    assert handshakes == len(users) + 5


def test_the_handshake_follows_the_backends_host_and_forwarding_rules(tmp_path: Path) -> None:
    with ws_backends("legacy", "new") as backends:
        setup = Setup(tmp_path, backends, forwarded={"header": "rfc7239"})
        try:
            with setup.connect(additional_headers={"X-Cutover-Backend": "new"}):
                pass
            sent = backends["new"].handshakes[-1]
            assert sent["Host"] == f"127.0.0.1:{backends['new'].port}"  # the backend's own
            assert sent["Forwarded"].startswith("for=127.0.0.1;proto=http;")
        finally:
            setup.proxy.close()
        config = config_for(backends, setup.ports, tmp_path, forwarded={"header": "rfc7239"})
        config["backends"]["new"]["preserve_host"] = True
        write_config(setup.config_path, config)
        setup.proxy = ProxyProcess(tmp_path, setup.config_path, setup.ports, TOKEN).start()
        try:
            with setup.connect(additional_headers={"X-Cutover-Backend": "new"}):
                pass
            assert backends["new"].handshakes[-1]["Host"] == f"127.0.0.1:{setup.ports.listen}"
        finally:
            setup.proxy.close()


def test_a_refused_handshake_gets_the_backends_answer(setup: Setup) -> None:
    with pytest.raises(InvalidStatus) as refused:
        setup.connect("/forbidden", additional_headers={"X-Cutover-Backend": "new"})
    response = refused.value.response
    assert response.status_code == 403
    assert response.headers["X-Cutover-Backend"] == "new"
    assert response.body == b"new says no\n"
    assert setup.proxy.metric("cutover_websocket_handshakes_total", result="refused") == 1


def test_a_failed_handshake_to_to_counts_and_falls_back(tmp_path: Path) -> None:
    with ws_backends("legacy") as backends:
        dead = WsBackend("new", port=free_port())  # nothing listens there
        running = Setup(tmp_path, {**backends, "new": dead}, migration={"weight": 100})
        try:
            with running.connect() as ws:
                assert ws.response.headers["X-Cutover-Backend"] == "legacy"
                assert ws.response.headers["X-Cutover-Fallback"] == "new-failed"
                ws.send("still served")
                assert ws.recv() == "still served"
            errors = running.proxy.metric("cutover_requests_total", migration=NAME,
                                          backend="new", code="error")  # fmt: skip
            assert errors == 1  # in the migration's error rate, as the guard reads it
            # An override is never moved: the failure is the client's answer.
            with pytest.raises(InvalidStatus) as failed:
                running.connect(additional_headers={"X-Cutover-Backend": "new"})
            assert failed.value.response.status_code == 502
            assert failed.value.response.headers["Content-Type"] == "application/problem+json"
            assert "Traceback" not in running.proxy.stderr()
        finally:
            running.proxy.close()


def raw_exchange(setup: Setup, data: bytes) -> bytes:
    """``data`` sent in one write; everything the proxy answers until it closes (or 3 s of
    silence once something came)."""
    with socket.create_connection(("127.0.0.1", setup.ports.listen), timeout=5) as sock:
        sock.sendall(data)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return received
            if not chunk:
                return received
            received += chunk
            sock.settimeout(3)


def handshake(fields: bytes = b"", key: bytes = KEY, target: bytes = b"/echo") -> bytes:
    return (
        b"GET " + target + b" HTTP/1.1\r\nHost: example.test\r\nConnection: Upgrade\r\n"
        b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key +
        b"\r\n" + fields + b"\r\n"
    )  # fmt: skip


def test_raw_framing_of_handshakes(setup: Setup) -> None:
    before = sum(len(b.handshakes) for b in setup.backends.values())
    answer = raw_exchange(setup, handshake(b"Content-Length: 5\r\n") + b"hello")
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"has no body" in answer
    answer = raw_exchange(setup, handshake(key=b"not-a-key") + handshake())
    assert answer.startswith(b"HTTP/1.1 400 ") and answer.count(b"HTTP/1.1") == 1
    answer = raw_exchange(setup, handshake(b"Sec-WebSocket-Version: 8\r\n"))
    assert answer.startswith(b"HTTP/1.1 426 ")  # two versions: only 13 is spoken
    assert sum(len(b.handshakes) for b in setup.backends.values()) == before

    # After the handshake, bytes are WebSocket bytes: a pipelined request is never HTTP.
    pipelined = b"GET /smuggled HTTP/1.1\r\nHost: example.test\r\n\r\n"
    answer = raw_exchange(setup, handshake() + pipelined)
    assert answer.startswith(b"HTTP/1.1 101 ")
    assert answer.count(b"HTTP/1.1 ") == 1
    # The backend read them as (unmasked, so invalid) frames and closed: 1002.
    assert b"\x88" in answer.split(b"\r\n\r\n", 1)[1][:2]


def test_an_h2c_upgrade_is_not_proxied(setup: Setup) -> None:
    answer = raw_exchange(
        setup,
        b"GET /echo HTTP/1.1\r\nHost: example.test\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    )
    # Forwarded as an ordinary GET (Upgrade removed): the websockets server says 426.
    assert not answer.startswith(b"HTTP/1.1 101")
    assert answer.startswith(b"HTTP/1.1 426 ")
    assert b"x-cutover-backend: " in answer.lower()


def test_open_sockets_survive_a_reload(setup: Setup) -> None:
    user = next(f"user-{i}" for i in range(64) if backend_of(setup, **{"X-User-Id": f"user-{i}"})
                == "legacy")  # fmt: skip
    beta = {"X-User-Id": user, "X-Beta": "yes"}
    assert backend_of(setup, **beta) == "legacy"
    with setup.connect(additional_headers={"X-Cutover-Backend": "new"}) as ws:
        cohorts = [{"header": {"X-Beta": "yes"}, "backend": "new"}]
        config = config_for(setup.backends, setup.ports, setup.tmp,
                            migration={"cohorts": cohorts})  # fmt: skip
        write_config(setup.config_path, config)
        os.kill(setup.proxy.pid, signal.SIGHUP)
        wait_until(lambda: backend_of(setup, **beta) == "new", DEADLINE, "the reload",
                   setup.proxy)  # fmt: skip
        ws.send("after the reload")
        assert ws.recv() == "after the reload"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_200_concurrent_sockets_with_the_memory_flat(setup: Setup) -> None:
    async def sockets(n: int, rounds: int) -> int:
        async def one(i: int) -> None:
            headers = {"X-User-Id": f"user-{i}"}
            async with aconnect(setup.url + "/echo", additional_headers=headers,
                                open_timeout=10) as ws:  # fmt: skip
                for j in range(rounds):
                    await ws.send(f"{i}-{j}" * 100)
                    assert await ws.recv() == f"{i}-{j}" * 100
                opened.set() if len(done) + 1 == n else None
                done.append(i)
                await release.wait()

        opened, release, done = asyncio.Event(), asyncio.Event(), []
        tasks = [asyncio.create_task(one(i)) for i in range(n)]
        await asyncio.wait_for(opened.wait(), 60)
        during = rss_kib(setup.proxy.pid)
        open_now = setup.proxy.metric("cutover_websocket_connections")
        assert open_now == n, open_now
        release.set()
        await asyncio.gather(*tasks)
        return during

    asyncio.run(sockets(20, 5))  # warm up: imports, caches, the first buffers
    before = rss_kib(setup.proxy.pid)
    during = asyncio.run(sockets(200, 20))
    again = asyncio.run(sockets(200, 20))
    after = rss_kib(setup.proxy.pid)
    print(f"proxy RSS: {before} KiB before, {during} KiB with 200 open, "
          f"{again} KiB with 200 open again, {after} KiB after")  # fmt: skip
    assert during - before < 40 * 1024  # 200 sockets: well under 200 KiB each
    assert after - before < 20 * 1024  # nothing kept once they closed (a second round)
    wait_until(lambda: setup.proxy.metric("cutover_websocket_connections") == 0, DEADLINE,
               "the gauge back to 0")  # fmt: skip


def test_a_rollback_closes_the_sockets_on_to_with_1012(tmp_path: Path) -> None:
    with ws_backends("legacy", "new") as backends:
        running = Setup(tmp_path, backends, websocket={"close_on_rollback": True},
                        migration={"weight": 100})  # fmt: skip
        try:
            with running.connect() as ws:
                assert ws.response.headers["X-Cutover-Backend"] == "new"
                response = running.proxy.admin.post(f"/migrations/{NAME}/rollback",
                                                    json={"reason": "test"})  # fmt: skip
                assert response.status_code == 200, response.text
                with pytest.raises(ConnectionClosed) as closed:
                    ws.recv(timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
            wait_until(lambda: 1012 in backends["new"].closes, DEADLINE, "the backend's close")
            assert backend_of(running) == "legacy"  # the client reconnects to from
        finally:
            running.proxy.close()


def test_sockets_get_1001_at_the_end_of_the_shutdown_grace(setup: Setup) -> None:
    with setup.connect() as ws:
        ws.send("before")
        assert ws.recv() == "before"
        setup.proxy.signal_group(signal.SIGTERM)
        ws.send("during the grace")  # the socket works on while the proxy drains
        assert ws.recv() == "during the grace"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    wait_until(lambda: 1001 in setup.backends["legacy"].closes + setup.backends["new"].closes,
               DEADLINE, "the backend's close")  # fmt: skip


def test_a_handshake_pipelined_behind_a_request_waits_its_turn_and_is_refused(
    setup: Setup,
) -> None:
    plain = b"GET /echo HTTP/1.1\r\nHost: example.test\r\n\r\n"
    answer = raw_exchange(setup, plain + handshake())
    first, _, second = answer.partition(b"HTTP/1.1 400 ")
    assert first.startswith(b"HTTP/1.1 426 ")  # the websockets server's answer to a plain GET
    assert b"must not be pipelined" in second
    assert b"HTTP/1.1 101" not in answer


def test_the_admin_listener_does_not_upgrade(setup: Setup) -> None:
    with socket.create_connection(("127.0.0.1", setup.ports.admin), timeout=5) as sock:
        sock.sendall(handshake(target=b"/healthz"))
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200 ")  # an ordinary request to the admin app


def test_wss_from_the_client_to_a_wss_backend(tmp_path: Path) -> None:
    ca = trustme.CA()
    files = CertFiles(tmp_path)
    files.install(ca.issue_cert("127.0.0.1", "localhost"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server)
    with ws_backends("legacy", "new", tls=server) as backends:
        running = Setup(tmp_path, backends, listen={"tls": files.config()},
                        ca_file={"ca_file": str(tmp_path / "ca.pem")})  # fmt: skip
        try:
            url = f"wss://127.0.0.1:{running.ports.listen}/echo"
            with connect(url, ssl=client_context(ca), open_timeout=5) as ws:
                ws.send("over TLS both ways")
                assert ws.recv() == "over TLS both ways"
            handshake = backends[ws.response.headers["X-Cutover-Backend"]].handshakes[-1]
            assert handshake["X-Forwarded-Proto"] == "https"
        finally:
            running.proxy.close()

"""End to end: ``cutover run`` with ``listen.tls`` (trustme certificates) serving HTTPS to
real clients; the certificate rotated under load (SIGHUP, or the files changing) with no
request failing; mutual TLS; TLS 1.1 refused; a pair that does not load stops the start."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import trustme
import yaml

from cutover.cli.main import main
from tests.certificates import CertFiles, client_context, served_serial
from tests.processes import (
    ProxyPorts,
    ProxyProcess,
    clean_env,
    cutover_command,
    wait_until,
)
from tests.servers import echo_backend

pytestmark = pytest.mark.e2e

TOKEN = "tls-admin-token-0123456789abcdef"
DEADLINE = 15.0


@pytest.fixture
def backend() -> Iterator[str]:
    with echo_backend() as url:
        yield url


def write_proxy_config(
    tmp_path: Path, backend: str, tls: dict[str, str]
) -> tuple[Path, ProxyPorts]:
    ports = ProxyPorts.pick()
    config = {
        "listen": {"host": "127.0.0.1", "port": ports.listen, "tls": tls},
        "admin": {"host": "127.0.0.1", "port": ports.admin},
        "backends": {"legacy": {"url": backend}, "new": {"url": backend}},
        "split": {"weight": 0},
        "state": {"path": str(tmp_path / "state.json")},
    }
    path = tmp_path / "cutover.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, ports


@contextmanager
def run_proxy(
    tmp_path: Path, backend: str, tls: dict[str, str], *, workers: int = 1
) -> Iterator[ProxyProcess]:
    path, ports = write_proxy_config(tmp_path, backend, tls)
    proxy = ProxyProcess(tmp_path, path, ports, TOKEN, workers=workers)
    proxy.url = f"https://127.0.0.1:{ports.listen}"
    try:
        yield proxy.start()
    finally:
        proxy.close()


@pytest.fixture
def proxy(tmp_path: Path, backend: str, files: CertFiles) -> Iterator[ProxyProcess]:
    with run_proxy(tmp_path, backend, files.config()) as running:
        yield running


def https_client(ca: trustme.CA, client: trustme.LeafCert | None = None) -> httpx.Client:
    return httpx.Client(verify=client_context(ca, client), trust_env=False, timeout=10)


def no_traceback(proxy: ProxyProcess) -> None:
    assert "Traceback" not in proxy.stderr(), proxy.describe()


# --------------------------------------------------------------------------- serving


def test_https_requests_reach_the_backend_as_https(proxy: ProxyProcess, ca: trustme.CA) -> None:
    with https_client(ca) as client:
        for _ in range(3):  # one keep-alive connection
            response = client.get(f"{proxy.url}/api/v1/strategies")
            assert response.status_code == 200, response.text
            assert response.headers["x-cutover-backend"] == "legacy"
            assert response.json()["x-forwarded-proto"] == "https"
            assert response.extensions["http_version"] == b"HTTP/1.1"
    # Plain HTTP on the TLS port gets no answer from the proxy.
    with (
        httpx.Client(trust_env=False, timeout=5) as plain,
        pytest.raises(httpx.TransportError),
    ):
        plain.get(f"http://127.0.0.1:{proxy.ports.listen}/api/v1/strategies")
    no_traceback(proxy)


def tls_1_1_client(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(context)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_1
    return context


def handshake(port: int, context: ssl.SSLContext) -> str | None:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return tls.version()


def test_tls_1_1_is_refused_at_the_handshake(
    proxy: ProxyProcess, ca: trustme.CA, files: CertFiles
) -> None:
    # The control: this client speaks TLS 1.1 to a server that allows it.
    allowing = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    allowing.load_cert_chain(files.cert, files.key)
    allowing.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        allowing.minimum_version = ssl.TLSVersion.TLSv1_1
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def accept() -> None:
            conn, _ = listener.accept()
            with allowing.wrap_socket(conn, server_side=True):
                pass

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        assert handshake(port, tls_1_1_client(ca)) == "TLSv1.1"
        thread.join(5)

    with pytest.raises((ssl.SSLError, ConnectionError)):
        handshake(proxy.ports.listen, tls_1_1_client(ca))
    assert handshake(proxy.ports.listen, client_context(ca)) in ("TLSv1.2", "TLSv1.3")
    no_traceback(proxy)


# --------------------------------------------------------------------------- rotation


class Load:
    """Threads sending GETs over HTTPS until stopped: half on one keep-alive connection
    each, half on a new connection (a new handshake) for every request."""

    def __init__(self, url: str, ca: trustme.CA, threads: int = 6) -> None:
        self.url = url
        self.ca = ca
        self.ok = 0
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i % 2 == 0,), daemon=True)
            for i in range(threads)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def count(self) -> int:
        with self._lock:
            return self.ok

    def _run(self, keep_alive: bool) -> None:
        headers = {} if keep_alive else {"Connection": "close"}
        with https_client(self.ca) as client:
            while not self._stop.is_set():
                try:
                    response = client.get(f"{self.url}/api/v1/strategies", headers=headers)
                    outcome = None if response.status_code == 200 else str(response.status_code)
                except httpx.HTTPError as exc:
                    outcome = repr(exc)
                with self._lock:
                    if outcome is None:
                        self.ok += 1
                    else:
                        self.failures.append(outcome)


def test_a_certificate_rotated_under_load_on_sighup_fails_no_request(
    proxy: ProxyProcess, ca: trustme.CA, files: CertFiles
) -> None:
    first = served_serial(proxy.ports.listen, ca)
    with https_client(ca) as kept:
        assert kept.get(f"{proxy.url}/api/v1/strategies").status_code == 200
        with Load(proxy.url, ca) as load:
            wait_until(lambda: load.count() >= 50, DEADLINE, "traffic", proxy)
            second = files.install(ca.issue_cert("127.0.0.1", "localhost"))
            os.kill(proxy.pid, signal.SIGHUP)
            wait_until(
                lambda: served_serial(proxy.ports.listen, ca) == second, DEADLINE,
                "the new certificate on a new connection", proxy,
            )  # fmt: skip
            after = load.count()
            wait_until(lambda: load.count() >= after + 50, DEADLINE, "traffic after", proxy)
        # The connection opened before the rotation is still open, on the old certificate.
        response = kept.get(f"{proxy.url}/api/v1/strategies")
        assert response.status_code == 200
        stream = response.extensions["network_stream"]
        assert int(stream.get_extra_info("ssl_object").getpeercert()["serialNumber"], 16) == first
    assert first != second
    assert load.failures == []
    assert proxy.metric("cutover_config_reload_failures_total") == 0
    no_traceback(proxy)


def test_changed_files_are_served_and_a_bad_pair_is_refused_keeping_the_old_one(
    proxy: ProxyProcess, ca: trustme.CA, files: CertFiles
) -> None:
    first = served_serial(proxy.ports.listen, ca)
    # A key that is not the certificate's: refused, counted, the old certificate stays.
    stray = ca.issue_cert("127.0.0.1")
    files.key.write_bytes(stray.private_key_pem.bytes())
    wait_until(
        lambda: proxy.metric("cutover_config_reload_failures_total") == 1, DEADLINE,
        "the refused reload", proxy,
    )  # fmt: skip
    assert "is not the key of cert_file" in proxy.stderr()
    assert served_serial(proxy.ports.listen, ca) == first
    with https_client(ca) as client:
        assert client.get(f"{proxy.url}/api/v1/strategies").status_code == 200
    # The file watcher (no SIGHUP) serves a good pair.
    second = files.install(ca.issue_cert("127.0.0.1"))
    wait_until(
        lambda: served_serial(proxy.ports.listen, ca) == second, DEADLINE,
        "the new certificate", proxy,
    )  # fmt: skip
    assert proxy.metric("cutover_config_reload_failures_total") == 1
    no_traceback(proxy)


def test_two_workers_serve_https_and_both_pick_up_a_new_certificate(
    tmp_path: Path, backend: str, ca: trustme.CA, files: CertFiles
) -> None:
    with run_proxy(tmp_path, backend, files.config(), workers=2) as proxy:
        with https_client(ca) as client:
            assert client.get(f"{proxy.url}/api/v1/strategies").status_code == 200
        second = files.install(ca.issue_cert("127.0.0.1"))

        def every_connection_new() -> bool:
            return all(served_serial(proxy.ports.listen, ca) == second for _ in range(20))

        wait_until(every_connection_new, DEADLINE, "the new certificate in every worker", proxy)
        no_traceback(proxy)


# --------------------------------------------------------------------------- mutual TLS


def test_mutual_tls_accepts_a_client_signed_by_the_ca_and_refuses_any_other(
    tmp_path: Path, backend: str, ca: trustme.CA, files: CertFiles
) -> None:
    clients = trustme.CA()
    ca_file = tmp_path / "clients-ca.pem"
    clients.cert_pem.write_to_path(str(ca_file))
    with run_proxy(tmp_path, backend, files.config(client_ca_file=str(ca_file))) as proxy:
        url = f"{proxy.url}/api/v1/strategies"
        with https_client(ca, clients.issue_cert("client@example.test")) as client:
            assert client.get(url).status_code == 200
        for refused in (https_client(ca), https_client(ca, trustme.CA().issue_cert("x@y.test"))):
            with refused, pytest.raises(httpx.TransportError):
                refused.get(url)
        # A rotated certificate keeps asking for a client certificate.
        client_cert = clients.issue_cert("client@example.test")
        second = files.install(ca.issue_cert("127.0.0.1"))
        os.kill(proxy.pid, signal.SIGHUP)
        wait_until(
            lambda: served_serial(proxy.ports.listen, ca, client_cert) == second, DEADLINE,
            "the new certificate", proxy,
        )  # fmt: skip
        with https_client(ca, client_cert) as client:
            assert client.get(url).status_code == 200
        with https_client(ca) as refused, pytest.raises(httpx.TransportError):
            refused.get(url)
        no_traceback(proxy)


# --------------------------------------------------------------------------- start-up


def run_fails(tmp_path: Path, backend: str, tls: dict[str, str]) -> subprocess.CompletedProcess:
    path, _ = write_proxy_config(tmp_path, backend, tls)
    return subprocess.run(
        [*cutover_command(), "run", "--config", str(path)],
        env=clean_env(CUTOVER_ADMIN_TOKEN=TOKEN), capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_a_pair_that_does_not_load_stops_the_start_with_exit_2(
    tmp_path: Path, backend: str, ca: trustme.CA, files: CertFiles
) -> None:
    stray = tmp_path / "stray.key"
    stray.write_bytes(ca.issue_cert("127.0.0.1").private_key_pem.bytes())
    done = run_fails(tmp_path, backend, {**files.config(), "key_file": str(stray)})
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        f"listen.tls: key_file {stray} is not the key of cert_file {files.cert}"
    )
    missing = tmp_path / "gone.crt"
    done = run_fails(tmp_path, backend, {**files.config(), "cert_file": str(missing)})
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        f"listen.tls: cannot read cert_file {missing}: No such file or directory"
    )


def test_check_config_reads_the_tls_files_as_run_would(
    tmp_path: Path, backend: str, files: CertFiles, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = write_proxy_config(tmp_path, backend, files.config())
    assert main(["check-config", str(path)]) == 0
    files.cert.write_text("not a certificate\n")
    assert main(["check-config", str(path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"listen.tls: cert_file {files.cert} holds no PEM certificate"
    )

"""cutover.ops.tls: the listener's context from ``listen.tls``'s files, the reason a pair does
not load, and a reload that new connections see while open ones keep their certificate."""

from __future__ import annotations

import asyncio
import pickle
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

import pytest
import trustme

from cutover.config import TlsConfig
from cutover.ops.server import server_config, tls_options
from cutover.ops.tls import ServingTls, TlsError, build_context
from cutover.ops.workers import WorkerApp
from tests.certificates import CertFiles, client_context, encrypted_key
from tests.servers import free_socket

pytestmark = pytest.mark.anyio


def reason(config: TlsConfig) -> str:
    with pytest.raises(TlsError) as caught:
        build_context(config)
    assert caught.value.problems == [f"listen.tls: {caught.value.reason}"]
    return caught.value.reason


def test_a_good_pair_serves_tls_1_2_and_up_without_asking_for_a_client_certificate(
    files: CertFiles,
) -> None:
    context = build_context(TlsConfig(**files.config()))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_NONE


def test_a_client_ca_makes_a_client_certificate_required(files: CertFiles, ca: trustme.CA) -> None:
    ca.cert_pem.write_to_path(str(files.cert.with_name("ca.pem")))
    config = TlsConfig(**files.config(client_ca_file=str(files.cert.with_name("ca.pem"))))
    assert build_context(config).verify_mode == ssl.CERT_REQUIRED


def test_each_unusable_file_is_named_with_its_reason(
    files: CertFiles, ca: trustme.CA, tmp_path: Path
) -> None:
    other = ca.issue_cert("127.0.0.1")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    missing = str(tmp_path / "missing.pem")
    good = files.config()

    assert reason(TlsConfig(**{**good, "cert_file": missing})) == (
        f"cannot read cert_file {missing}: No such file or directory"
    )
    assert reason(TlsConfig(**{**good, "key_file": missing})).startswith("cannot read key_file")
    assert reason(TlsConfig(**{**good, "cert_file": str(garbage)})) == (
        f"cert_file {garbage} holds no PEM certificate"
    )
    assert reason(TlsConfig(**{**good, "key_file": str(garbage)})) == (
        f"key_file {garbage} holds no PEM private key"
    )
    other_key = tmp_path / "other.key"
    other_key.write_bytes(other.private_key_pem.bytes())
    assert reason(TlsConfig(**{**good, "key_file": str(other_key)})) == (
        f"key_file {other_key} is not the key of cert_file {files.cert}"
    )
    locked = tmp_path / "locked.key"
    locked.write_bytes(encrypted_key(other, b"secret"))
    locked_reason = reason(TlsConfig(**{**good, "key_file": str(locked)}))
    assert locked_reason.startswith(f"key_file {locked} is encrypted with a passphrase")
    assert reason(TlsConfig(**good, client_ca_file=str(garbage))) == (
        f"client_ca_file {garbage} holds no PEM certificate"
    )
    ca_reason = reason(TlsConfig(**good, client_ca_file=missing))
    assert ca_reason.startswith("cannot read client_ca_file")


@asynccontextmanager
async def tls_server(tls: ServingTls) -> AsyncIterator[int]:
    async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.readline():
            writer.write(b"ok\n")
        writer.close()

    sock = free_socket()
    sock.listen()
    server = await asyncio.start_server(hello, sock=sock, ssl=tls.context)
    try:
        yield sock.getsockname()[1]
    finally:
        server.close()


async def connect(port: int, ca: trustme.CA) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_context(ca), server_hostname="127.0.0.1"
    )


def peer_serial(writer: asyncio.StreamWriter) -> int:
    return int(writer.get_extra_info("ssl_object").getpeercert()["serialNumber"], 16)


async def test_a_reload_serves_new_connections_and_leaves_open_ones_alone(
    files: CertFiles, ca: trustme.CA
) -> None:
    tls = ServingTls(TlsConfig(**files.config()))
    async with tls_server(tls) as port:
        reader, old = await connect(port, ca)
        first = peer_serial(old)
        # No SNI is sent to an IP address: the callback swaps the context all the same.
        second = files.install(ca.issue_cert("127.0.0.1"))
        await tls.reload()
        _, new = await connect(port, ca)
        assert peer_serial(new) == second != first
        old.write(b"still there?\n")
        assert await reader.readline() == b"ok\n"
        assert peer_serial(old) == first
        for writer in (old, new):
            writer.close()


async def test_a_refused_reload_keeps_the_running_certificate(
    files: CertFiles, ca: trustme.CA
) -> None:
    tls = ServingTls(TlsConfig(**files.config()))
    async with tls_server(tls) as port:
        _, before = await connect(port, ca)
        files.key.write_bytes(ca.issue_cert("127.0.0.1").private_key_pem.bytes())  # mismatch
        with pytest.raises(TlsError, match="is not the key of"):
            await tls.reload()
        _, after = await connect(port, ca)
        assert peer_serial(after) == peer_serial(before)
        for writer in (before, after):
            writer.close()


def test_a_worker_serves_the_context_its_reloads_swap(files: CertFiles, tmp_path: Path) -> None:
    """uvicorn pickles its config, the app factory in it, into each worker: the worker's
    WorkerApp and ssl_context_factory must come out as one ServingTls."""
    tls = ServingTls(TlsConfig(**files.config()))
    tls.context  # noqa: B018 - loaded in the parent: contexts are not pickled
    with free_socket() as admin_socket:
        app = WorkerApp(str(tmp_path / "c.yaml"), admin_socket, str(tmp_path), "info", tls)
        config = server_config(app, factory=True, **tls_options(tls))
        # As multiprocessing's spawn pickles a Process (sockets by their descriptor).
        worker = pickle.loads(ForkingPickler.dumps(config))
        worker.app.admin_socket.close()
    assert worker.ssl_context_factory.__self__ is worker.app.tls
    assert worker.app.tls is not tls and worker.app.tls.config == tls.config
    assert worker.ssl_context_factory(worker, None) is worker.app.tls.context

"""https:// backends: the TLS context Cutover's own connections use, and the HTTP/1.1 client
checking a backend's certificate against it."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trustme

from cutover.config import TimeoutsConfig
from cutover.upstream.base import UpstreamConnectError
from cutover.upstream.http1 import Http1Upstream
from cutover.upstream.tls import client_context
from tests.upstream.scripted import OK, Server, answering, body_of

pytestmark = pytest.mark.anyio


def test_the_client_context_checks_the_certificate_and_the_host_name() -> None:
    context = client_context(None)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname


def test_a_configured_bundle_is_what_the_client_context_trusts(tmp_path) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    der = ssl.PEM_cert_to_DER_cert(ca.cert_pem.bytes().decode("ascii"))
    assert client_context(ca_file).get_ca_certs(binary_form=True) == [der]  # and nothing else


@pytest.mark.parametrize("content", [None, "not a certificate"], ids=["missing", "garbage"])
def test_an_unusable_bundle_is_refused(tmp_path, content: str | None) -> None:
    ca_file = tmp_path / "ca.pem"
    if content is not None:
        ca_file.write_text(content)
    with pytest.raises(OSError):  # ssl.SSLError is one
        client_context(ca_file)


@asynccontextmanager
async def tls_server(ca: trustme.CA, host: str) -> AsyncIterator[Server]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(host).configure_cert(context)
    server = Server(answering(OK))
    listener = await asyncio.start_server(server.serve, "127.0.0.1", 0, ssl=context)
    server.url = f"https://localhost:{listener.sockets[0].getsockname()[1]}"
    try:
        yield server
    finally:
        listener.close()


async def test_an_https_backend_is_checked_against_the_configured_ca(tmp_path) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with tls_server(ca, "localhost") as server:
        upstream = Http1Upstream(server.url, TimeoutsConfig(read=5.0), ca_file=ca_file)
        await upstream.start()
        try:
            response = await upstream.send("GET", server.url + "/", [], None)
            assert (response.status, await body_of(response)) == (200, b"ok")
        finally:
            await upstream.aclose()


@pytest.mark.parametrize("trusted", [False, True], ids=["unknown-ca", "wrong-host"])
async def test_an_https_backend_that_fails_the_check_is_a_connect_error(
    tmp_path, trusted: bool
) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with tls_server(ca, "other.example" if trusted else "localhost") as server:
        upstream = Http1Upstream(
            server.url, TimeoutsConfig(read=5.0), ca_file=ca_file if trusted else None
        )
        await upstream.start()
        try:
            with pytest.raises(UpstreamConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await upstream.send("GET", server.url + "/", [], None)
        finally:
            await upstream.aclose()


async def test_a_preserved_host_goes_in_the_head_while_sni_and_the_check_keep_the_urls(
    tmp_path,
) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    names: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: names.append(name)  # type: ignore[assignment]
    heads: list[bytes] = []
    server = Server(answering(OK, heads=heads))
    listener = await asyncio.start_server(server.serve, "127.0.0.1", 0, ssl=context)
    url = f"https://localhost:{listener.sockets[0].getsockname()[1]}"
    upstream = Http1Upstream(url, TimeoutsConfig(read=5.0), ca_file=ca_file)
    await upstream.start()
    try:
        headers = [(b"host", b"shop.example"), (b"accept", b"*/*")]
        response = await upstream.send("GET", url + "/p", headers, None)
        assert (response.status, await body_of(response)) == (200, b"ok")
    finally:
        await upstream.aclose()
        listener.close()
    assert names == ["localhost"]  # the certificate was checked for localhost too
    lines = heads[0].split(b"\r\n")
    assert [line for line in lines if line.lower().startswith(b"host:")] == [b"host: shop.example"]

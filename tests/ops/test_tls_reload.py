"""cutover.ops.tls_reload: the certificate reloaded on SIGHUP (wired through the config
reloader by ``Listeners``) and when its files change and settle; a pair that does not load
refused, counted once, and not tried again until the files change."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme

from cutover.config import TlsConfig, load_settings
from cutover.ops.gateway import Gateway
from cutover.ops.listener import Listeners
from cutover.ops.tls import ServingTls, file_digest
from cutover.ops.tls_reload import CertificateReloader
from cutover.request.metrics import Metrics
from tests.certificates import CertFiles
from tests.ops import conftest as ops

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]

FAILURES = "cutover_config_reload_failures_total"


def serving(files: CertFiles) -> ServingTls:
    tls = ServingTls(TlsConfig(**files.config()))
    tls.context  # noqa: B018 - loaded, as at start-up
    return tls


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def serves_the_files(tls: ServingTls) -> bool:
    return tls.digest == file_digest(tls.config)


async def test_sighup_reloads_the_certificate(
    tmp_path: Path, files: CertFiles, ca: trustme.CA, anyio_backend: str
) -> None:
    path = tmp_path / "cutover.yaml"
    ops.write_config(path)
    gateway = Gateway(load_settings(path), config_path=path)
    tls = serving(files)
    listeners = Listeners(gateway, tls=tls)
    assert listeners.certificates is not None
    listeners.certificates.poll = 3600.0  # only the signal can do it
    await listeners.startup()
    try:
        files.install(ca.issue_cert("127.0.0.1"))
        assert not serves_the_files(tls)
        os.kill(os.getpid(), signal.SIGHUP)
        await wait_for(lambda: serves_the_files(tls))
    finally:
        await listeners.shutdown()


async def test_changed_files_are_reloaded_and_a_bad_pair_is_tried_once(
    files: CertFiles, ca: trustme.CA, anyio_backend: str
) -> None:
    metrics = Metrics()
    tls = serving(files)
    reloader = CertificateReloader(tls, metrics.config_reload_failures, poll=0.02)
    reloader.start()
    try:
        files.key.write_bytes(ca.issue_cert("127.0.0.1").private_key_pem.bytes())
        await wait_for(lambda: metrics.registry.get_sample_value(FAILURES) == 1)
        await asyncio.sleep(0.2)  # ten polls more: the same files are not tried again
        assert metrics.registry.get_sample_value(FAILURES) == 1
        assert not serves_the_files(tls)
        files.install(ca.issue_cert("127.0.0.1"))
        await wait_for(lambda: serves_the_files(tls))
        assert metrics.registry.get_sample_value(FAILURES) == 1
    finally:
        await reloader.stop()


async def test_a_refused_reload_is_logged_with_its_reason(
    files: CertFiles, anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()
    tls = serving(files)
    reloader = CertificateReloader(tls, metrics.config_reload_failures)
    files.cert.write_text("not a certificate\n")
    assert await reloader.reload() is False
    assert metrics.registry.get_sample_value(FAILURES) == 1
    assert (
        f"the running certificate stays: listen.tls: cert_file {files.cert} holds no PEM "
        "certificate" in caplog.text
    )

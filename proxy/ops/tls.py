"""TLS for clients on the proxy listener (``listen.tls``): the server context (TLS 1.2 at
least; with ``client_ca_file``, a client certificate that CA signed is required at the
handshake), and a certificate that can change under a running server.

asyncio hands every new connection the context it was given at start (the front context).
OpenSSL calls the front context's SNI callback on every ClientHello, with or without a
server name; the callback points the connection at the context loaded last. A reload builds
a fresh context from the files (in a thread) and swaps it in at once: connections already
open keep the certificate they were handed, new ones get the new one, and a pair that does
not load changes nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
from pathlib import Path
from typing import Any

from cutover.config import ConfigError, TlsConfig

logger = logging.getLogger("cutover.tls")

ALPN = ["http/1.1"]


class TlsError(ConfigError):
    """The files ``listen.tls`` names do not make a usable certificate (a ConfigError, so
    ``cutover run`` reports it as one and exits 2)."""

    def __init__(self, reason: str) -> None:
        super().__init__([f"listen.tls: {reason}"])
        self.reason = reason


class PassphraseKey(Exception):
    """Raised by OpenSSL's passphrase callback: an encrypted key is refused, never prompted
    for on the terminal."""


def _refuse_passphrase() -> bytes:
    raise PassphraseKey


def _readable(field: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TlsError(f"cannot read {field} {path}: {exc.strerror or exc}") from None


def build_context(config: TlsConfig) -> ssl.SSLContext:
    """A fresh server context from the files ``config`` names; reads them (call it off the
    event loop). Raises TlsError naming the file and what is wrong with it."""
    cert = _readable("cert_file", config.cert_file)
    _readable("key_file", config.key_file)
    try:
        # Parses the certificates alone: a bad cert_file is told apart from a bad key.
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=cert.decode("latin-1"))
    except ssl.SSLError:
        raise TlsError(f"cert_file {config.cert_file} holds no PEM certificate") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    context.set_alpn_protocols(ALPN)
    try:
        context.load_cert_chain(config.cert_file, config.key_file, password=_refuse_passphrase)
    except PassphraseKey:
        raise TlsError(
            f"key_file {config.key_file} is encrypted with a passphrase; Cutover reads "
            "unencrypted keys only"
        ) from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TlsError(
                f"key_file {config.key_file} is not the key of cert_file {config.cert_file}"
            ) from None
        raise TlsError(f"key_file {config.key_file} holds no PEM private key") from None
    except OSError as exc:  # replaced or removed since it was read above
        raise TlsError(f"cannot read cert_file or key_file: {exc.strerror or exc}") from None
    if config.client_ca_file is not None:
        _readable("client_ca_file", config.client_ca_file)
        try:
            context.load_verify_locations(cafile=config.client_ca_file)
        except (ssl.SSLError, OSError):
            raise TlsError(
                f"client_ca_file {config.client_ca_file} holds no PEM certificate"
            ) from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def file_digest(config: TlsConfig) -> bytes:
    """One digest of the files' bytes (an unreadable file counts as empty)."""
    digest = hashlib.sha256()
    for path in (config.cert_file, config.key_file, config.client_ca_file):
        if path is None:
            continue
        try:
            data = Path(path).read_bytes()
        except OSError:
            data = b""
        digest.update(hashlib.sha256(data).digest())
    return digest.digest()


class ServingTls:
    """The proxy listener's TLS: ``context`` is the front context to hand the server,
    ``reload`` swaps a fresh certificate in. Pickled (into a ``--workers`` process) it
    keeps only its config: each process loads the files again on first use."""

    def __init__(self, config: TlsConfig) -> None:
        self.config = config
        self.digest: bytes | None = None  # the files' digest when the serving context was read
        self.attempted: bytes | None = None  # the files' digest at the last load tried
        self._front: ssl.SSLContext | None = None
        self._current: ssl.SSLContext | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"])  # type: ignore[misc]

    @property
    def context(self) -> ssl.SSLContext:
        """The front context, loading the files the first time (blocking; raises TlsError)."""
        if self._front is None:
            digest, context = self._read()
            context.sni_callback = self._on_hello
            self._front = self._current = context
            self.digest = digest
        return self._front

    def context_factory(self, config: object, default: object) -> ssl.SSLContext:
        """uvicorn's ``ssl_context_factory``: the front context."""
        return self.context

    def _read(self) -> tuple[bytes, ssl.SSLContext]:
        digest = file_digest(self.config)  # before reading: a change after it shows later
        self.attempted = digest
        return digest, build_context(self.config)

    async def reload(self) -> None:
        """Read the files again (in a thread) and serve them to the connections that come
        next; raises TlsError (the running certificate stays)."""
        digest, context = await asyncio.to_thread(self._read)
        self._current, self.digest = context, digest

    def _on_hello(
        self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None,
        front: ssl.SSLContext,
    ) -> None:  # fmt: skip
        current = self._current
        if current is not None and current is not front:
            connection.context = current

"""The ``listen.tls`` section: the proxy listener's certificate and key, and the client CA
for mutual TLS. Only the paths are checked here; the files are read where the listener is
built (``cutover.ops.tls``), at start and on every certificate reload."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from cutover.config.base import SectionConfig


def _path(value: str) -> str:
    if not value.strip():
        raise ValueError("must name a file")
    return value


FilePathText = Annotated[str, AfterValidator(_path)]


class TlsConfig(SectionConfig):
    cert_file: FilePathText  # PEM: the certificate, then any intermediates
    key_file: FilePathText  # PEM, unencrypted
    # PEM: when set, a client must present a certificate this CA signed (mutual TLS).
    client_ca_file: FilePathText | None = None

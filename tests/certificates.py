"""trustme certificates on disk for the TLS listener's tests, and what a server serves.

ca = trustme.CA()
files = CertFiles(tmp_path)
serial = files.install(ca.issue_cert("127.0.0.1"))   # atomically, key then certificate
assert served_serial(port, ca) == serial
"""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization


def serial_of(cert: trustme.LeafCert) -> int:
    return x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes()).serial_number


def encrypted_key(cert: trustme.LeafCert, passphrase: bytes) -> bytes:
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class CertFiles:
    """A certificate and key file pair in ``folder``, replaced atomically one at a time."""

    def __init__(self, folder: Path) -> None:
        self.cert = folder / "server.crt"
        self.key = folder / "server.key"

    def install(self, cert: trustme.LeafCert) -> int:
        """Write ``cert``'s key, then its chain; returns its serial number."""
        _replace(self.key, cert.private_key_pem.bytes())
        _replace(self.cert, b"".join(pem.bytes() for pem in cert.cert_chain_pems))
        return serial_of(cert)

    def config(self, **extra: str) -> dict[str, str]:
        return {"cert_file": str(self.cert), "key_file": str(self.key), **extra}


def client_context(ca: trustme.CA, client: trustme.LeafCert | None = None) -> ssl.SSLContext:
    """A client context trusting ``ca`` (presenting ``client`` when given)."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if client is not None:
        client.configure_cert(context)
    return context


def served_serial(
    port: int, ca: trustme.CA, client: trustme.LeafCert | None = None, host: str = "127.0.0.1"
) -> int:
    """The serial number of the certificate a new connection to ``host:port`` is served
    (presenting ``client`` when given)."""
    with (
        socket.create_connection((host, port), timeout=5) as raw,
        client_context(ca, client).wrap_socket(raw, server_hostname=host) as tls,
    ):
        return int(tls.getpeercert()["serialNumber"], 16)

"""The TLS context for Cutover's own connections to https:// backends."""

from __future__ import annotations

import ssl
from pathlib import Path


def client_context(ca_file: Path | None) -> ssl.SSLContext:
    """Certificate and host name checked, against ``ca_file`` (a PEM bundle) when given,
    else the system's store. Raises OSError or ssl.SSLError for an unusable bundle."""
    return ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))

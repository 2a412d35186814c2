"""A backend of the ``backends`` section: where it answers, and how its TLS is checked."""

from __future__ import annotations

import ssl
from pathlib import Path

from pydantic import field_validator

from cutover.config.base import SectionConfig, ServiceUrl
from cutover.upstream.tls import client_context


class BackendConfig(SectionConfig):
    url: ServiceUrl
    metrics_url: ServiceUrl | None = None
    # PEM bundle of the CAs an https:// backend's certificate is checked against;
    # None: the system's store.
    ca_file: Path | None = None
    preserve_host: bool = False  # send the client's Host (TLS still checks the URL's host)
    # Location / Content-Location on this backend's origin → the origin the client used.
    rewrite_location: bool = True

    @field_validator("ca_file")
    @classmethod
    def _ca_bundle(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        try:
            client_context(value)
        except FileNotFoundError:
            raise ValueError(f"no such file: {value}") from None
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"not a PEM bundle of CA certificates: {value} ({exc})") from None
        return value

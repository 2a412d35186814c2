"""cutover.config.backends: the backends' URLs and CA bundles."""

from __future__ import annotations

from pathlib import Path

from cutover.config import parse_settings
from tests.config import BACKENDS, problems


def test_backend_urls() -> None:
    found = problems({"backends": {"legacy": {"url": "ftp://x"}, "new": {"url": "http://h/?q=1"}}})
    assert "backends.legacy.url: must be an http:// or https:// URL" in found
    assert "backends.new.url: must not have a query or fragment" in found
    assert problems({"backends": {"legacy": {"url": "http://x"}}}) == ["backends.new: required"]


def test_backend_ca_files(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("not a certificate")
    found = problems(
        {
            "backends": {
                "legacy": {"url": "https://a", "ca_file": str(tmp_path / "missing.pem")},
                "new": {"url": "https://b", "ca_file": str(not_pem)},
            }
        }
    )
    assert f"backends.legacy.ca_file: no such file: {tmp_path / 'missing.pem'}" in found
    assert any(
        p.startswith("backends.new.ca_file: not a PEM bundle of CA certificates") for p in found
    )


def test_backend_urls_lose_their_trailing_slash() -> None:
    backends = {**BACKENDS, "new": {"url": "https://new.test/", "metrics_url": "http://n:9/m/"}}
    new = parse_settings({"backends": backends}).backends.new
    assert (new.url, new.metrics_url) == ("https://new.test", "http://n:9/m")

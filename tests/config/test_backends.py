"""cutover.config.backends: the backends' URLs and CA bundles."""

from __future__ import annotations

from pathlib import Path

import pytest

from cutover.config import parse_settings
from tests.config import BACKENDS, problems


def test_backend_urls() -> None:
    found = problems({"backends": {"legacy": {"url": "ftp://x"}, "new": {"url": "http://h/?q=1"}}})
    assert "backends.legacy.url: must be an http:// or https:// URL" in found
    assert "backends.new.url: must not have a query or fragment" in found
    assert problems({"backends": {"legacy": {"url": "http://x"}}}) == [
        "backends: without migrations, the default migration goes from legacy to new: "
        "add a backend named 'new', or list migrations"
    ]
    assert problems({"backends": {}}) == ["backends: must name at least one backend"]


@pytest.mark.parametrize("name", ["V3", "3d", "new.v2", "new backend", ""])
def test_an_invalid_backend_name_is_refused_naming_the_field(name: str) -> None:
    found = problems({"backends": {**BACKENDS, name: {"url": "http://v3.test"}}})
    assert found == [f"backends.{name}: {name!r} is not a backend name ([a-z][a-z0-9_-]*)"]


def test_backend_names_may_be_any_valid_name() -> None:
    backends = {**BACKENDS, "v3": {"url": "http://v3.test"}, "data_layer-2": {"url": "http://d"}}
    settings = parse_settings({"backends": backends, "default_backend": "v3"})
    assert list(settings.backends) == ["legacy", "new", "v3", "data_layer-2"]
    assert settings.backends["v3"].url == "http://v3.test"


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
    new = parse_settings({"backends": backends}).backends["new"]
    assert (new.url, new.metrics_url) == ("https://new.test", "http://n:9/m")


def test_host_and_location_rules_default_to_the_backends_host_and_rewriting() -> None:
    settings = parse_settings({"backends": BACKENDS})
    assert all(not b.preserve_host and b.rewrite_location for b in settings.backends.values())
    flipped = {"url": "http://127.0.0.1:8002", "preserve_host": True, "rewrite_location": False}
    backend = parse_settings({"backends": {**BACKENDS, "new": flipped}}).backends["new"]
    assert (backend.preserve_host, backend.rewrite_location) == (True, False)
    assert problems({"backends": {**BACKENDS, "new": {**flipped, "preserve_host": "maybe"}}}) == [
        "backends.new.preserve_host: Input should be a valid boolean, unable to interpret input"
    ]

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cutover.cli.main import main
from cutover.config import ConfigError, load_settings, parse_settings

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = {"legacy": {"url": "http://127.0.0.1:8001"}, "new": {"url": "http://127.0.0.1:8002"}}


def problems(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_settings(data)
    return info.value.problems


def test_example_config_is_valid() -> None:
    settings = load_settings(ROOT / "config" / "cutover.yaml")
    assert settings.listen.port == 8080
    assert settings.admin.port == 9180
    assert settings.split.sticky == "header:X-User-Id"
    assert settings.deprecation is not None and settings.deprecation.legacy_headers


def test_defaults() -> None:
    settings = parse_settings({"backends": BACKENDS})
    assert (settings.listen.host, settings.listen.port) == ("127.0.0.1", 8080)
    assert settings.split.weight == 0
    assert settings.split.override_header == "X-Cutover-Backend"
    assert (settings.timeouts.connect, settings.timeouts.read) == (2, 30)
    assert settings.deprecation is None and settings.routes == []


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"split": {"weight": 101}}, "split.weight: must be between 0 and 100"),
        ({"split": {"weight": -1}}, "split.weight: must be between 0 and 100"),
        ({"split": {"wieght": 5}}, "split.wieght: unknown key"),
        ({"lisen": {"port": 1}}, "lisen: unknown key"),
        ({"split": {"sticky": "header:"}}, "split.sticky: must be header:NAME"),
        ({"split": {"sticky": "header:bad name"}}, "split.sticky: 'bad name' is not a valid"),
        ({"listen": {"port": 70000}}, "listen.port:"),
        ({"timeouts": {"read": 0}}, "timeouts.read: must be greater than 0"),
        ({"routes": [{"prefix": "api"}]}, "routes.0.prefix: must start with '/'"),
        ({"routes": [{"prefix": "/a", "backend": "blue"}]}, "routes.0.backend:"),
        (
            {"routes": [{"prefix": "/a", "backend": "new", "weight": 5}]},
            "routes.0: set either backend (a pin) or weight, not both",
        ),
        (
            {"deprecation": {"deprecated_at": "2027-01-01T00:00:00Z", "sunset_at": "2026-06-01"}},
            "deprecation.sunset_at: must not be earlier than deprecated_at",
        ),
        (
            {"deprecation": {"deprecated_at": "2027-01-01T00:00:00"}},
            "deprecation.deprecated_at: must include a time zone",
        ),
        ({"deprecation": {"deprecated_at": "2027-01-01", "link": "ftp://x"}}, "deprecation.link:"),
    ],
)
def test_invalid_values_name_the_field(data: dict, expected: str) -> None:
    found = problems({"backends": BACKENDS, **data})
    assert any(p.startswith(expected) for p in found), found


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


def test_every_problem_is_reported() -> None:
    found = problems({"backends": BACKENDS, "split": {"weight": 500, "sticky": "x"}, "oops": 1})
    assert len(found) == 3


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "backends: {legacy: {url: 'http://a'}, new: {url: 'http://b'}}\n"
        "split: {weight: 10, sticky: client_ip}\n"
    )
    monkeypatch.setenv("CUTOVER_SPLIT__WEIGHT", "25.5")
    monkeypatch.setenv("CUTOVER_BACKENDS__NEW__URL", "http://c:9")
    settings = load_settings(path)
    assert settings.split.weight == 25.5
    assert settings.split.sticky == "client_ip"  # untouched keys keep the file's value
    assert settings.backends.new.url == "http://c:9"
    monkeypatch.setenv("CUTOVER_SPLIT__WEIGHT", "250")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert info.value.problems == ["split.weight: must be between 0 and 100"]


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("split: {weight: 10\n")
    with pytest.raises(ConfigError, match=r"not valid YAML \(line"):
        load_settings(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_settings(listing)


def test_check_config_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(ROOT / "config" / "cutover.yaml")]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "backends: {legacy: {url: 'http://a'}, new: {url: 'http://b'}}\nsplit: {weight: 120}\n"
    )
    assert main(["check-config", str(bad)]) == 2
    assert capsys.readouterr().err.strip() == "split.weight: must be between 0 and 100"


def test_run_refuses_a_bad_config_before_binding(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        f"listen: {{port: {port}}}\n"
        "backends: {legacy: {url: 'http://a'}, new: {url: 'http://b'}}\nsplit: {weight: 120}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "cutover", "run", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "split.weight: must be between 0 and 100"
    assert "Traceback" not in result.stderr


def test_config_from_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CUTOVER_CONFIG", raising=False)
    assert main(["run"]) == 2
    assert "no config file given" in capsys.readouterr().err
    monkeypatch.setenv("CUTOVER_CONFIG", str(tmp_path / "absent.yaml"))
    assert main(["run"]) == 2
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("listen", "admin"),
    [
        ("127.0.0.1:9180", "127.0.0.1:9180"),
        ("0.0.0.0:9180", "127.0.0.1:9180"),
        ("127.0.0.1:8080", "0.0.0.0:8080"),
        ("[::]:8080", "[::1]:8080"),
        ("[::1]:8080", "[0:0:0:0:0:0:0:1]:8080"),
        ("localhost:8080", "LOCALHOST:8080"),
    ],
)
def test_listeners_that_overlap_are_refused(
    listen: str, admin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUTOVER_ADMIN_TOKEN", "t0ken")  # a wildcard admin host needs one
    sections = {}
    for name, address in (("listen", listen), ("admin", admin)):
        host, _, port = address.rpartition(":")
        sections[name] = {"host": host.strip("[]"), "port": int(port)}
    found = problems({"backends": BACKENDS, **sections})
    assert len(found) == 1 and found[0].startswith("listen: "), found
    assert "overlaps the admin listener" in found[0]


@pytest.mark.parametrize(
    ("listen", "admin"),
    [
        (("127.0.0.1", 8080), ("127.0.0.2", 8080)),  # one port, two loopback addresses
        (("0.0.0.0", 8080), ("127.0.0.1", 9180)),
        (("127.0.0.1", 0), ("127.0.0.1", 0)),  # both pick a free port
    ],
)
def test_listeners_apart_are_accepted(listen: tuple, admin: tuple) -> None:
    settings = parse_settings(
        {
            "backends": BACKENDS,
            "listen": {"host": listen[0], "port": listen[1]},
            "admin": {"host": admin[0], "port": admin[1]},
        }
    )
    assert (settings.admin.host, settings.admin.port) == admin


def test_run_refuses_overlapping_listeners(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "listen: {host: 127.0.0.1, port: 9180}\n"
        "backends: {legacy: {url: 'http://a'}, new: {url: 'http://b'}}\n"
    )
    assert main(["run", "--config", str(path)]) == 2
    assert capsys.readouterr().err.startswith("listen: 127.0.0.1:9180 overlaps the admin listener")


@pytest.mark.parametrize("token", ["sécret", "two words", "tab\there"])
def test_an_admin_token_a_client_could_not_send_is_refused(
    monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    monkeypatch.setenv("CUTOVER_ADMIN_TOKEN", token)
    assert problems({"backends": BACKENDS}) == [
        "admin_token: must be printable ASCII, without spaces (it is a bearer token)"
    ]

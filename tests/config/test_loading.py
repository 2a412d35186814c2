"""cutover.config.loading: a file read, the environment over it, every problem reported
as ``path.to.field: reason``; and the commands that load a config refusing a bad one."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cutover.cli.main import main
from cutover.config import ConfigError, load_settings
from cutover.config.loading import key_problems
from tests.config import BACKENDS, problems

ROOT = Path(__file__).resolve().parents[2]


def test_example_config_is_valid() -> None:
    settings = load_settings(ROOT / "config" / "cutover.yaml")
    assert settings.listen.port == 8080
    assert settings.admin.port == 9180
    assert settings.split.sticky == "header:X-User-Id"
    assert settings.deprecation is not None and settings.deprecation.legacy_headers


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
    assert settings.backends["new"].url == "http://c:9"
    assert settings.backends["legacy"].url == "http://a"  # the other backends keep theirs
    monkeypatch.setenv("CUTOVER_SPLIT__WEIGHT", "250")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert info.value.problems == ["split.weight: must be between 0 and 100"]


def test_the_environment_overrides_any_named_backend_of_a_config_with_migrations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "backends:\n"
        "  legacy: {url: 'http://a'}\n"
        "  v3: {url: 'http://b', metrics_url: 'http://b/metrics'}\n"
        "migrations:\n"
        "  - {name: engine, match: {prefix: /api}, from: legacy, to: v3}\n"
    )
    monkeypatch.setenv("CUTOVER_BACKENDS__V3__URL", "http://c:9/")
    monkeypatch.setenv("CUTOVER_BACKENDS__LEGACY__METRICS_URL", "http://a/metrics")
    settings = load_settings(path)
    v3, legacy = settings.backends["v3"], settings.backends["legacy"]
    assert (v3.url, v3.metrics_url) == ("http://c:9", "http://b/metrics")
    assert (legacy.url, legacy.metrics_url) == ("http://a", "http://a/metrics")
    monkeypatch.setenv("CUTOVER_BACKENDS__V3__URL", "ftp://c")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert info.value.problems == ["backends.v3.url: must be an http:// or https:// URL"]


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


def test_the_admin_token_is_refused_in_the_file() -> None:
    assert problems({"backends": BACKENDS, "admin_token": "t0ken"}) == [
        "admin_token: keep it out of the file; set CUTOVER_ADMIN_TOKEN"
    ]


def test_the_view_token_is_refused_in_the_file() -> None:
    assert problems({"backends": BACKENDS, "view_token": "t0ken"}) == [
        "view_token: keep it out of the file; set CUTOVER_VIEW_TOKEN"
    ]


def test_keys_yaml_did_not_read_as_strings() -> None:
    found = key_problems({"on": 1, True: 2, 3: 4})
    assert found == [
        "True: keys must be strings; YAML reads an unquoted yes/no/on/off/true/false as a "
        "boolean (quote it)",
        "3: keys must be strings; YAML read this one as int (quote it)",
    ]


def test_an_unknown_variable_is_reported_without_validating(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUTOVER_SPLIT__WEIGT", "5")
    found = problems({"backends": BACKENDS, "split": {"weight": 500}})
    assert found == [
        "CUTOVER_SPLIT__WEIGT: names no setting (split has no 'weigt'); "
        "did you mean CUTOVER_SPLIT__WEIGHT?"
    ]


def test_a_misspelt_backend_variable_is_reported_with_a_guess(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # In lower case (matched without regard to case): the scan of the project's CUTOVER_
    # names (tests/cli) knows the upper-case misspellings only.
    monkeypatch.setenv("cutover_backends__new__urll", "http://c:9")
    assert problems({"backends": BACKENDS}) == [
        "cutover_backends__new__urll: names no setting (backends.new has no 'urll'); "
        "did you mean CUTOVER_BACKENDS__NEW__URL?"
    ]


@pytest.mark.parametrize("value", [".inf", ".nan", "-.inf"])
def test_a_number_that_is_not_finite_is_refused(tmp_path: Path, value: str) -> None:
    path = tmp_path / "cutover.yaml"
    path.write_text(
        "backends:\n  legacy: {url: http://127.0.0.1:8001}\n  new: {url: http://127.0.0.1:8002}\n"
        f"guard: {{max_latency_ratio: {value}}}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert info.value.problems == ["guard.max_latency_ratio: Input should be a finite number"]

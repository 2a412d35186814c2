"""The ``access_log`` section: off by default, its format and path checked at load, and a
restart-only section (a reload keeps the running one)."""

from __future__ import annotations

import pytest

from cutover.config import AccessLogConfig, ConfigError, parse_settings
from cutover.ops.reload import reloadable
from cutover.vocabulary import AccessLogFormat
from tests.conftest import make_settings


def test_off_by_default_as_json_to_stdout() -> None:
    config = make_settings().access_log
    assert config == AccessLogConfig(enabled=False, format=AccessLogFormat.JSON, path="stdout")
    assert config.to_stdout


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ({"format": "xml"}, "access_log.format: Input should be 'json' or 'combined'"),
        ({"path": " "}, "access_log.path: must be stdout or a file's path"),
        ({"queue": 0}, "access_log.queue: Input should be greater than or equal to 1"),
        ({"rotate": True}, "access_log.rotate: unknown key"),
    ],
)
def test_a_bad_section_names_the_field(section: dict[str, object], problem: str) -> None:
    base = {"backends": {"legacy": {"url": "http://l.test"}, "new": {"url": "http://n.test"}}}
    with pytest.raises(ConfigError) as caught:
        parse_settings({**base, "access_log": section})
    assert caught.value.problems == [problem]


def test_the_environment_turns_it_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUTOVER_ACCESS_LOG__ENABLED", "true")
    monkeypatch.setenv("CUTOVER_ACCESS_LOG__PATH", "/var/log/cutover/access.log")
    config = make_settings().access_log
    assert (config.enabled, config.path, config.to_stdout) == (
        True, "/var/log/cutover/access.log", False,
    )  # fmt: skip


def test_a_reload_keeps_the_running_access_log() -> None:
    old = make_settings()
    new = make_settings(access_log={"enabled": True, "path": "/tmp/other.log"})
    assert reloadable(old, new).access_log == old.access_log

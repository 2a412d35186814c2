"""cutover.config.state: where the migrations' state lives (a file, or Redis for a fleet),
and the Redis password kept out of the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cutover.config import StateBackend, load_settings, parse_settings
from tests.config import BACKENDS, problems

REDIS = {"backend": "redis", "url": "redis://127.0.0.1:6379/0"}


def state(**section: Any) -> dict[str, Any]:
    return {"backends": BACKENDS, "state": section}


def test_the_file_backend_is_the_default_and_unchanged() -> None:
    settings = parse_settings({"backends": BACKENDS})
    assert settings.state.backend == StateBackend.FILE
    assert settings.state.path == Path("./cutover-state.json")
    assert settings.state.url is None


def test_a_redis_backend_with_its_settings() -> None:
    settings = parse_settings(
        state(**REDIS, key_prefix="cutover:prod", cache_path="/var/lib/cutover/cache.json",
              poll=0.5, lease=3, host_id="proxy-1")
    )  # fmt: skip
    config = settings.state
    assert config.backend == StateBackend.REDIS
    assert config.url == "redis://127.0.0.1:6379/0"
    assert config.key_prefix == "cutover:prod"
    assert config.cache_path == Path("/var/lib/cutover/cache.json")
    assert (config.poll, config.lease, config.host_id) == (0.5, 3.0, "proxy-1")
    assert config.password is None


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "rediss://redis.internal:6380/2",  # TLS
        "redis://redis.internal",  # the default port and database
        "redis://user@redis.internal:6379/0",  # a user name is not a secret
    ],
)
def test_redis_urls_accepted(url: str) -> None:
    assert parse_settings(state(backend="redis", url=url)).state.url == url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:6379/0", "state.url: must be a redis:// or rediss:// URL"),
        ("127.0.0.1:6379", "state.url: must be a redis:// or rediss:// URL"),
        ("redis://:6379/0", "state.url: must name a host"),
        ("redis://127.0.0.1:99999/0", "state.url: has an invalid port"),
        ("redis://127.0.0.1:port/0", "state.url: has an invalid port"),
        ("redis://127.0.0.1:6379/zero", "state.url: the path must be a database number"),
        ("redis://:hunter2@127.0.0.1:6379/0", "state.url: must not carry a password"),
    ],
)
def test_bad_redis_urls(url: str, expected: str) -> None:
    found = problems(state(backend="redis", url=url))
    assert any(problem.startswith(expected) for problem in found), found
    assert not any("hunter2" in problem for problem in found), found


def test_the_redis_backend_needs_a_url() -> None:
    found = problems(state(backend="redis"))
    assert any("backend redis needs url" in problem for problem in found), found


def test_an_unknown_backend_is_refused() -> None:
    found = problems(state(backend="etcd"))
    assert any(problem.startswith("state.backend:") for problem in found), found


@pytest.mark.parametrize("prefix", ["cutover", "cutover:prod", "team-a.cutover_v2"])
def test_key_prefixes_accepted(prefix: str) -> None:
    assert parse_settings(state(**REDIS, key_prefix=prefix)).state.key_prefix == prefix


@pytest.mark.parametrize("prefix", ["", ":prod", "cutover prod", "cutover*", "a" * 101])
def test_bad_key_prefixes(prefix: str) -> None:
    found = problems(state(**REDIS, key_prefix=prefix))
    assert any(problem.startswith("state.key_prefix:") for problem in found), found


@pytest.mark.parametrize(("key", "value"), [("poll", 0), ("lease", -1)])
def test_poll_and_lease_must_be_positive(key: str, value: float) -> None:
    found = problems(state(**REDIS, **{key: value}))
    assert any(problem.startswith(f"state.{key}:") for problem in found), found


def test_a_password_in_the_file_is_refused() -> None:
    found = problems(state(**REDIS, password="hunter2"))
    assert found == ["state.password: keep it out of the file; set CUTOVER_STATE__PASSWORD"]


def test_the_password_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "cutover.yaml"
    path.write_text(
        "backends:\n"
        "  legacy: {url: 'http://127.0.0.1:8001'}\n"
        "  new: {url: 'http://127.0.0.1:8002'}\n"
        "state: {backend: redis, url: 'redis://127.0.0.1:6379/0'}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("CUTOVER_STATE__PASSWORD", "hunter2")
    settings = load_settings(path)
    assert settings.state.password is not None
    assert settings.state.password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(settings.state)  # never printed with the settings

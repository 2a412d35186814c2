"""The ``state`` section: where every migration's state lives. ``file`` (the embedded
default) is one JSON file shared by the worker processes of one host; ``redis`` is one
Redis shared by a fleet of hosts, with a local copy of the last known state for a start
while Redis is unreachable."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from cutover.config.base import PositiveSeconds, SectionConfig

_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._-]*$")


class StateBackend(StrEnum):
    FILE = "file"
    REDIS = "redis"


class StateConfig(SectionConfig):
    backend: StateBackend = StateBackend.FILE
    path: Path = Path("./cutover-state.json")  # the file backend's state file
    url: str | None = None  # redis:// or rediss://, with the database number
    # From CUTOVER_STATE__PASSWORD only (load_settings refuses it in the file).
    password: SecretStr | None = None
    key_prefix: str = "cutover"
    cache_path: Path = Path(
        "./cutover-state.json"
    )  # the last known state, for a start without Redis
    poll: PositiveSeconds = 1.0
    lease: PositiveSeconds = 5.0
    # How each host names itself to the fleet; None: hostname and process id.
    host_id: str | None = Field(None, min_length=1, max_length=100)

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError("must be a redis:// or rediss:// URL")
        if not parts.hostname:
            raise ValueError("must name a host")
        if parts.password:
            raise ValueError("must not carry a password: set CUTOVER_STATE__PASSWORD")
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise ValueError(f"has an invalid port: {exc}") from None
        database = parts.path.strip("/")
        if database and not database.isdigit():
            raise ValueError(f"the path must be a database number, got {parts.path!r}")
        return value

    @field_validator("key_prefix")
    @classmethod
    def _key_prefix(cls, value: str) -> str:
        if not _PREFIX_RE.match(value) or len(value) > 100:
            raise ValueError("letters, digits and : . _ - only, at most 100 (e.g. cutover:prod)")
        return value

    @model_validator(mode="after")
    def _redis_needs_url(self) -> StateConfig:
        if self.backend == StateBackend.REDIS and self.url is None:
            raise ValueError("backend redis needs url (e.g. redis://127.0.0.1:6379/0)")
        return self

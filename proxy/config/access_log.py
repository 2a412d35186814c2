"""The ``access_log`` section: one line per request (and per WebSocket session), written
by a thread off the request path (``cutover.request.access_log``)."""

from __future__ import annotations

from pydantic import Field, field_validator

from cutover.config.base import SectionConfig
from cutover.vocabulary import AccessLogFormat

STDOUT = "stdout"
# Lines waiting for the writer; more than this and new lines are dropped (and counted).
DEFAULT_QUEUE = 16384


class AccessLogConfig(SectionConfig):
    enabled: bool = False
    format: AccessLogFormat = AccessLogFormat.JSON
    # "stdout", or a file appended to (reopened on SIGHUP, for logrotate).
    path: str = STDOUT
    queue: int = Field(DEFAULT_QUEUE, ge=1)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be stdout or a file's path")
        if "\x00" in value:
            raise ValueError("must not contain a NUL character")
        return value

    @property
    def to_stdout(self) -> bool:
        return self.path == STDOUT

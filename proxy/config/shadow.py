"""The dual run's settings: a route's ``shadow`` (what to mirror and how to compare) and the
top-level ``shadow`` section shared by every route (the mismatch log, the mirror's bounds)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from cutover.config.base import SAFE_METHODS, HttpMethods, PositiveSeconds, SectionConfig
from cutover.shadow.paths import IgnorePathError, check_ignore_paths


class ToleranceConfig(SectionConfig):
    relative: float = Field(0.01, ge=0)
    absolute: float = Field(1e-9, ge=0)


class RouteShadowConfig(SectionConfig):
    """Mirror a sample of this route's requests to the other backend and compare."""

    enabled: bool = True
    sample: float = Field(0.1, ge=0, le=1)
    tolerance: ToleranceConfig = ToleranceConfig()
    ignore: list[str] = []
    methods: HttpMethods = list(SAFE_METHODS)

    @field_validator("ignore")
    @classmethod
    def _json_paths(cls, value: list[str]) -> list[str]:
        try:
            check_ignore_paths(value)
        except IgnorePathError as exc:
            raise ValueError(str(exc)) from None
        return value


class ShadowConfig(SectionConfig):
    """Settings shared by every route's shadow comparison."""

    log_path: Path = Path("./cutover-shadow.jsonl")
    log_max_bytes: int = Field(10 * 2**20, ge=1024)
    log_backups: int = Field(3, ge=1)
    timeout: PositiveSeconds = 10.0
    max_in_flight: int = Field(64, ge=1)
    max_body: int = Field(64 * 1024, ge=0)
    max_response_body: int = Field(2**20, ge=0)
    max_mismatch_rate: float = Field(0.01, ge=0, le=1)
    rollback_on_mismatch: bool = False

"""The ``guard`` section: how often and against what thresholds the rollout is checked, and
where the readings come from (the embedded metrics or Prometheus, with its queries)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from cutover.config.base import PositiveSeconds, SectionConfig, ServiceUrl

# Each query is run per migration: $migration, $to and $from are its name and backends.
_REQUESTS = 'cutover_requests_total{migration="$migration",backend="$to"}'
_ERRORS = 'cutover_requests_total{migration="$migration",backend="$to",code=~"5xx|error"}'
_SHADOW = 'cutover_shadow_requests_total{migration="$migration"'
DEFAULT_QUERIES = {
    "new_requests": f"sum(increase({_REQUESTS}[$window]))",
    # "or 0 * …": the error series exist only after the first failure; without it a
    # healthy rollout would read "no data" forever and never promote.
    "new_errors": f"sum(increase({_ERRORS}[$window])) or 0 * sum(increase({_REQUESTS}[$window]))",
    "legacy_requests": 'sum(increase(cutover_requests_total{migration="$migration",'
    'backend="$from"}[$window]))',
    "new_p95": "histogram_quantile(0.95, sum by (le) (rate(cutover_request_duration_seconds_bucket"
    '{migration="$migration",backend="$to"}[$window])))',
    "legacy_p95": "histogram_quantile(0.95, sum by (le) (rate("
    'cutover_request_duration_seconds_bucket{migration="$migration",backend="$from"}[$window])))',
    "new_memory": 'max(cutover_backend_resident_memory_bytes{backend="$to"})',
    "shadow_comparisons": f'sum(increase({_SHADOW},result=~"match|mismatch"}}[$window]))',
    "shadow_mismatches": f'sum(increase({_SHADOW},result="mismatch"}}[$window]))'
    f' or 0 * sum(increase({_SHADOW},result="match"}}[$window]))',
}


class PrometheusQueriesConfig(SectionConfig):
    """PromQL for each reading, run per migration: ``$window`` becomes the guard window
    (e.g. ``60s``), ``$migration`` the migration's name, ``$to`` and ``$from`` its backends.
    The ``new_*`` readings are of the migration's ``to``, the ``legacy_*`` of its ``from``."""

    new_requests: str = DEFAULT_QUERIES["new_requests"]
    new_errors: str = DEFAULT_QUERIES["new_errors"]
    legacy_requests: str = DEFAULT_QUERIES["legacy_requests"]
    new_p95: str = DEFAULT_QUERIES["new_p95"]
    legacy_p95: str = DEFAULT_QUERIES["legacy_p95"]
    new_memory: str = DEFAULT_QUERIES["new_memory"]
    shadow_comparisons: str = DEFAULT_QUERIES["shadow_comparisons"]
    shadow_mismatches: str = DEFAULT_QUERIES["shadow_mismatches"]


class PrometheusConfig(SectionConfig):
    url: ServiceUrl = "http://127.0.0.1:9090"
    timeout: PositiveSeconds = 5.0
    queries: PrometheusQueriesConfig = PrometheusQueriesConfig()


class GuardConfig(SectionConfig):
    interval: PositiveSeconds = 5.0
    window: PositiveSeconds = 60.0
    min_requests: int = Field(50, ge=1)
    failures_to_rollback: int = Field(2, ge=1)
    max_error_rate: float = Field(0.05, ge=0, le=1)
    max_latency_ratio: float = Field(2.0, gt=0)
    max_memory_ratio: float = Field(1.5, gt=0)
    rollback_on_source_error: bool = False
    source: Literal["embedded", "prometheus"] = "embedded"
    prometheus: PrometheusConfig = PrometheusConfig()
    webhook: str | None = None

    @field_validator("webhook")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _window_covers_interval(self) -> GuardConfig:
        if self.window < self.interval:
            raise ValueError("window must be at least as long as interval")
        return self

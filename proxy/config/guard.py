"""The ``guard`` section: how often and against what thresholds the rollout is checked, and
where the readings come from (the embedded metrics or Prometheus, with its queries)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from cutover.config.base import PositiveSeconds, SectionConfig, ServiceUrl

DEFAULT_QUERIES = {
    "new_requests": 'sum(increase(cutover_requests_total{backend="new"}[$window]))',
    # "or 0 * …": the error series exist only after new's first failure; without it a
    # healthy rollout would read "no data" forever and never promote.
    "new_errors": 'sum(increase(cutover_requests_total{backend="new",code=~"5xx|error"}[$window]))'
    ' or 0 * sum(increase(cutover_requests_total{backend="new"}[$window]))',
    "legacy_requests": 'sum(increase(cutover_requests_total{backend="legacy"}[$window]))',
    "new_p95": "histogram_quantile(0.95, sum by (le) "
    '(rate(cutover_request_duration_seconds_bucket{backend="new"}[$window])))',
    "legacy_p95": "histogram_quantile(0.95, sum by (le) "
    '(rate(cutover_request_duration_seconds_bucket{backend="legacy"}[$window])))',
    "new_memory": 'max(cutover_backend_resident_memory_bytes{backend="new"})',
    "shadow_comparisons": "sum(increase("
    'cutover_shadow_requests_total{result=~"match|mismatch"}[$window]))',
    "shadow_mismatches": 'sum(increase(cutover_shadow_requests_total{result="mismatch"}[$window]))'
    ' or 0 * sum(increase(cutover_shadow_requests_total{result="match"}[$window]))',
}


class PrometheusQueriesConfig(SectionConfig):
    """PromQL for each reading; ``$window`` becomes the guard window (e.g. ``60s``)."""

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

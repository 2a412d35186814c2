"""Cutover's configuration: one validated object, loaded once.

Sources, highest priority first: environment variables (``CUTOVER_`` prefix, nested
with ``__``, e.g. ``CUTOVER_SPLIT__WEIGHT=25``), then the YAML file.

Each section's model lives in the module named after it; ``settings`` holds the root,
``loading`` reads a file and ``environment`` checks the CUTOVER_* variables. Import the
names from here.
"""

from cutover.config.access_log import AccessLogConfig
from cutover.config.backends import BackendConfig
from cutover.config.base import (
    SAFE_METHODS,
    BackendName,
    HttpMethods,
    PositiveSeconds,
    SectionConfig,
    ServiceUrl,
    Weight,
)
from cutover.config.brownouts import BrownoutConfig, BrownoutSchedule, Window, parse_duration
from cutover.config.clients import ClientsConfig, UsageConfig
from cutover.config.cohorts import CohortConfig, RegexConfig
from cutover.config.deprecation import DeprecationConfig
from cutover.config.environment import NOT_SETTINGS, unknown_setting
from cutover.config.failover import BreakerConfig, FallbackConfig
from cutover.config.forwarding import ForwardedConfig
from cutover.config.guard import (
    DEFAULT_QUERIES,
    GuardConfig,
    PrometheusConfig,
    PrometheusQueriesConfig,
)
from cutover.config.limits import LimitsConfig, ShutdownConfig, TimeoutsConfig
from cutover.config.listeners import (
    AdminConfig,
    ListenConfig,
    ListenerConfig,
    is_loopback,
    listeners_overlap,
)
from cutover.config.loading import ConfigError, load_settings, parse_settings
from cutover.config.migrations import (
    DEFAULT_MIGRATION,
    GUARD_OVERRIDES,
    MatchConfig,
    MigrationConfig,
    MigrationGuardConfig,
    mirrored,
)
from cutover.config.rollout import RolloutConfig, StageConfig
from cutover.config.routing import RouteConfig, SplitConfig
from cutover.config.settings import ENV_PREFIX, Settings
from cutover.config.shadow import RouteShadowConfig, ShadowConfig, ToleranceConfig
from cutover.config.state import StateBackend, StateConfig
from cutover.config.tls import TlsConfig
from cutover.config.websocket import WebSocketConfig

__all__ = [
    "DEFAULT_MIGRATION",
    "DEFAULT_QUERIES",
    "ENV_PREFIX",
    "GUARD_OVERRIDES",
    "NOT_SETTINGS",
    "SAFE_METHODS",
    "AccessLogConfig",
    "AdminConfig",
    "BackendConfig",
    "BackendName",
    "BreakerConfig",
    "BrownoutConfig",
    "BrownoutSchedule",
    "ClientsConfig",
    "CohortConfig",
    "ConfigError",
    "DeprecationConfig",
    "FallbackConfig",
    "ForwardedConfig",
    "GuardConfig",
    "HttpMethods",
    "LimitsConfig",
    "ListenConfig",
    "ListenerConfig",
    "MatchConfig",
    "MigrationConfig",
    "MigrationGuardConfig",
    "PositiveSeconds",
    "PrometheusConfig",
    "PrometheusQueriesConfig",
    "RegexConfig",
    "RolloutConfig",
    "RouteConfig",
    "RouteShadowConfig",
    "SectionConfig",
    "ServiceUrl",
    "Settings",
    "ShadowConfig",
    "ShutdownConfig",
    "SplitConfig",
    "StageConfig",
    "StateBackend",
    "StateConfig",
    "TimeoutsConfig",
    "TlsConfig",
    "ToleranceConfig",
    "UsageConfig",
    "WebSocketConfig",
    "Weight",
    "Window",
    "is_loopback",
    "listeners_overlap",
    "load_settings",
    "mirrored",
    "parse_duration",
    "parse_settings",
    "unknown_setting",
]

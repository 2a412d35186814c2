"""Cutover's configuration: one validated object, loaded once.

Sources, highest priority first: environment variables (``CUTOVER_`` prefix, nested
with ``__``, e.g. ``CUTOVER_SPLIT__WEIGHT=25``), then the YAML file.
"""

from __future__ import annotations

import difflib
import ipaddress
import itertools
import os
import re
import ssl
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from cutover.shadow.paths import IgnorePathError, check_ignore_paths
from cutover.upstream.tls import client_context

BackendName = Literal["legacy", "new"]
BACKEND_NAMES: tuple[BackendName, ...] = ("legacy", "new")

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]+")
_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class ConfigError(Exception):
    """A configuration could not be loaded; ``problems`` lists ``path.to.field: reason``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _SectionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _weight(value: float) -> float:
    if not 0 <= value <= 100:
        raise ValueError("must be between 0 and 100")
    return value


Weight = Annotated[float, AfterValidator(_weight)]


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


PositiveSeconds = Annotated[float, AfterValidator(_positive)]


class ListenConfig(_SectionConfig):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    keep_alive: PositiveSeconds = 5.0  # idle seconds before a client connection is closed


class AdminConfig(ListenConfig):
    port: int = Field(9180, ge=0, le=65535)


def _host_key(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | str:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return host.lower()


def _wildcard(host: str) -> bool:
    key = _host_key(host)
    return host == "" or (not isinstance(key, str) and key.is_unspecified)


def listeners_overlap(listen: ListenConfig, admin: ListenConfig) -> bool:
    """Whether one address could be both listeners': the same port (0 picks a free one,
    so never) on the same host, or on a wildcard host (0.0.0.0, ::) on either side."""
    if listen.port == 0 or listen.port != admin.port:
        return False
    if _wildcard(listen.host) or _wildcard(admin.host):
        return True
    return _host_key(listen.host) == _host_key(admin.host)


class BackendConfig(_SectionConfig):
    url: str
    metrics_url: str | None = None
    # PEM bundle of the CAs an https:// backend's certificate is checked against;
    # None: the system's store.
    ca_file: Path | None = None

    @field_validator("ca_file")
    @classmethod
    def _ca_bundle(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        try:
            client_context(value)
        except FileNotFoundError:
            raise ValueError(f"no such file: {value}") from None
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"not a PEM bundle of CA certificates: {value} ({exc})") from None
        return value

    @field_validator("url", "metrics_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        if not parts.hostname:
            raise ValueError("must name a host")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or fragment")
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise ValueError(f"has an invalid port: {exc}") from None
        return value.rstrip("/")


class BackendsConfig(_SectionConfig):
    legacy: BackendConfig
    new: BackendConfig


class SplitConfig(_SectionConfig):
    weight: Weight = 0.0
    sticky: str = "none"
    override_header: str = "X-Cutover-Backend"
    # Who may use the override header (client addresses); empty means anyone.
    override_allowed_from: list[IPvAnyNetwork] = []

    @field_validator("sticky")
    @classmethod
    def _sticky(cls, value: str) -> str:
        kind, _, name = value.partition(":")
        if value in ("none", "client_ip"):
            return value
        if kind in ("header", "cookie") and name:
            if not _TOKEN_RE.match(name):
                raise ValueError(f"{name!r} is not a valid {kind} name")
            return value
        raise ValueError("must be header:NAME, cookie:NAME, client_ip or none")

    @field_validator("override_header")
    @classmethod
    def _override_header(cls, value: str) -> str:
        if value and not _TOKEN_RE.match(value):
            raise ValueError(f"{value!r} is not a valid header name")
        return value


class DeprecationConfig(_SectionConfig):
    deprecated_at: datetime
    sunset_at: datetime | None = None
    link: str | None = None
    legacy_headers: bool = False

    @field_validator("deprecated_at", "sunset_at", mode="before")
    @classmethod
    def _date_is_midnight_utc(cls, value: Any) -> Any:
        if isinstance(value, str) and _DATE_RE.match(value):
            value = date.fromisoformat(value)
        if isinstance(value, date) and not isinstance(value, datetime):
            return datetime(value.year, value.month, value.day, tzinfo=UTC)
        return value

    @field_validator("deprecated_at", "sunset_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must include a time zone, e.g. 2026-12-01T00:00:00Z")
        return value.astimezone(UTC) if value is not None else None

    @field_validator("sunset_at")
    @classmethod
    def _sunset_after_deprecation(cls, value: datetime | None, info: ValidationInfo) -> Any:
        deprecated_at = info.data.get("deprecated_at")
        if value is not None and deprecated_at is not None and value < deprecated_at:
            raise ValueError("must not be earlier than deprecated_at (RFC 9745 section 3)")
        return value

    @field_validator("link")
    @classmethod
    def _link(cls, value: str | None) -> str | None:
        if value is None:
            return None
        # It goes into a Link header as <URL>: a header carries Latin-1 and no line breaks.
        for char in value:
            if ord(char) < 0x20 or ord(char) == 0x7F:
                raise ValueError(
                    f"must not contain control characters such as CR or LF, found {char!r}"
                )
            if char in ' <>"':
                raise ValueError(f"must not contain {char!r}: percent-encode it")
            if ord(char) > 0xFF:
                encoded = "".join(f"%{byte:02X}" for byte in char.encode("utf-8"))
                raise ValueError(
                    f"contains {char!r}, outside Latin-1 (a header cannot carry it): "
                    f"percent-encode it as {encoded}"
                )
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        return value


SAFE_METHODS = ("GET", "HEAD")
_METHOD_RE = re.compile(r"^[A-Z]+$")


class ToleranceConfig(_SectionConfig):
    relative: float = Field(0.01, ge=0)
    absolute: float = Field(1e-9, ge=0)


class RouteShadowConfig(_SectionConfig):
    """Mirror a sample of this route's requests to the other backend and compare."""

    enabled: bool = True
    sample: float = Field(0.1, ge=0, le=1)
    tolerance: ToleranceConfig = ToleranceConfig()
    ignore: list[str] = []
    methods: list[str] = list(SAFE_METHODS)

    @field_validator("ignore")
    @classmethod
    def _json_paths(cls, value: list[str]) -> list[str]:
        try:
            check_ignore_paths(value)
        except IgnorePathError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: list[str]) -> list[str]:
        methods = [method.upper() for method in value]
        for method in methods:
            if not _METHOD_RE.match(method):
                raise ValueError(f"{method!r} is not an HTTP method")
        return methods


class RouteConfig(_SectionConfig):
    prefix: str
    backend: BackendName | None = None
    weight: Weight | None = None
    deprecation: bool = True
    shadow: RouteShadowConfig | None = None
    # The methods that may be served by legacy when new fails. Default: fallback.methods,
    # and none on a route pinned to a backend (it opts in by listing them).
    fallback_methods: list[str] | None = None

    @field_validator("fallback_methods")
    @classmethod
    def _fallback_methods(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else RouteShadowConfig._methods.__func__(cls, value)  # type: ignore[attr-defined]

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value

    @model_validator(mode="after")
    def _pin_or_weight(self) -> RouteConfig:
        if self.backend is not None and self.weight is not None:
            raise ValueError("set either backend (a pin) or weight, not both")
        return self

    @property
    def name(self) -> str:
        return self.prefix


class TimeoutsConfig(_SectionConfig):
    connect: PositiveSeconds = 2.0
    read: PositiveSeconds = 30.0
    # The whole wait for a backend's response headers (connect, send, first byte); None: no cap.
    total: PositiveSeconds | None = None
    # How long an unused keep-alive connection to a backend is kept. Below the 5 s after
    # which uvicorn (and Node) close idle connections, so a reused one is rarely stale.
    pool_idle: PositiveSeconds = 4.0


class LimitsConfig(_SectionConfig):
    # Bytes of request body; None: no limit (bodies stream, so memory stays flat either way).
    max_request_body: int | None = Field(None, ge=0)
    # Requests in flight to one backend; the rest wait up to queue_timeout, then get 503.
    max_concurrent_per_backend: int = Field(1024, ge=1)
    queue_timeout: PositiveSeconds = 5.0
    # The request head: a longer target gets 414, larger headers 431.
    max_url_bytes: int = Field(8 * 1024, ge=256)
    max_header_bytes: int = Field(64 * 1024, ge=1024)


class FallbackConfig(_SectionConfig):
    """Retry a request that failed on new once on legacy, when that is safe."""

    enabled: bool = True
    methods: list[str] = ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]
    max_replay_body: int = Field(64 * 1024, ge=0)
    statuses: list[int] = [502, 503, 504]

    _methods = field_validator("methods")(RouteShadowConfig._methods.__func__)  # type: ignore[attr-defined]


class BreakerConfig(_SectionConfig):
    """Stop sending requests to new while it is failing; probe before trusting it again."""

    enabled: bool = True
    failures: int = Field(5, ge=1)  # consecutive failures that open it
    failure_ratio: float = Field(0.5, gt=0, le=1)  # or this share over `window` ...
    window: PositiveSeconds = 10.0
    min_requests: int = Field(20, ge=1)  # ... with at least this many requests
    cooldown: PositiveSeconds = 10.0
    probes: int = Field(3, ge=1)  # successes in a row, while half open, that close it


class ShutdownConfig(_SectionConfig):
    grace: PositiveSeconds = 30.0


class StageConfig(_SectionConfig):
    weight: Weight
    hold: PositiveSeconds | None = None

    @field_validator("weight")
    @classmethod
    def _above_zero(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("a stage must send some traffic to new (weight above 0)")
        return value


class RolloutConfig(_SectionConfig):
    stages: list[StageConfig]
    hold: PositiveSeconds = 300.0

    @field_validator("stages", mode="before")
    @classmethod
    def _numbers_are_stages(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"weight": item} if isinstance(item, int | float) else item for item in value]
        return value

    @field_validator("stages")
    @classmethod
    def _ascending(cls, value: list[StageConfig]) -> list[StageConfig]:
        if not value:
            raise ValueError("must list at least one stage")
        weights = [stage.weight for stage in value]
        if any(b <= a for a, b in itertools.pairwise(weights)):
            raise ValueError(f"weights must rise from stage to stage, got {weights}")
        return value

    def hold_for(self, index: int) -> float:
        return self.stages[index].hold or self.hold


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


class PrometheusQueriesConfig(_SectionConfig):
    """PromQL for each reading; ``$window`` becomes the guard window (e.g. ``60s``)."""

    new_requests: str = DEFAULT_QUERIES["new_requests"]
    new_errors: str = DEFAULT_QUERIES["new_errors"]
    legacy_requests: str = DEFAULT_QUERIES["legacy_requests"]
    new_p95: str = DEFAULT_QUERIES["new_p95"]
    legacy_p95: str = DEFAULT_QUERIES["legacy_p95"]
    new_memory: str = DEFAULT_QUERIES["new_memory"]
    shadow_comparisons: str = DEFAULT_QUERIES["shadow_comparisons"]
    shadow_mismatches: str = DEFAULT_QUERIES["shadow_mismatches"]


class PrometheusConfig(_SectionConfig):
    url: str = "http://127.0.0.1:9090"
    timeout: PositiveSeconds = 5.0
    queries: PrometheusQueriesConfig = PrometheusQueriesConfig()

    _url = field_validator("url")(BackendConfig._http_url.__func__)  # type: ignore[attr-defined]


class GuardConfig(_SectionConfig):
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


class ShadowConfig(_SectionConfig):
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


class StateConfig(_SectionConfig):
    path: Path = Path("./cutover-state.json")


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CUTOVER_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    listen: ListenConfig = ListenConfig()
    admin: AdminConfig = AdminConfig()
    backends: BackendsConfig
    split: SplitConfig = SplitConfig()
    deprecation: DeprecationConfig | None = None
    routes: list[RouteConfig] = []
    timeouts: TimeoutsConfig = TimeoutsConfig()
    limits: LimitsConfig = LimitsConfig()
    fallback: FallbackConfig = FallbackConfig()
    breaker: BreakerConfig = BreakerConfig()
    shutdown: ShutdownConfig = ShutdownConfig()
    rollout: RolloutConfig | None = None
    guard: GuardConfig = GuardConfig()
    shadow: ShadowConfig = ShadowConfig()
    state: StateConfig = StateConfig()
    # From CUTOVER_ADMIN_TOKEN only (load_settings refuses it in the file).
    admin_token: SecretStr | None = Field(None, validate_default=True)

    @field_validator("admin_token")
    @classmethod
    def _public_admin_needs_token(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            value = None
        admin = info.data.get("admin")
        if value is None and admin is not None and not is_loopback(admin.host):
            raise ValueError(
                f"required when admin.host ({admin.host}) is not loopback: set CUTOVER_ADMIN_TOKEN"
            )
        if value is not None and not _PRINTABLE_ASCII.fullmatch(value.get_secret_value()):
            # A bearer token travels in a header: clients could never send anything else.
            raise ValueError("must be printable ASCII, without spaces (it is a bearer token)")
        return value

    @model_validator(mode="after")
    def _listeners_apart(self) -> Settings:
        listen, admin = self.listen, self.admin
        if listeners_overlap(listen, admin):
            reason = (
                f"{listen.host}:{listen.port} overlaps the admin listener "
                f"(admin: {admin.host}:{admin.port}), so clients could reach the admin API; "
                "use different ports, or hosts that do not overlap"
            )
            # A model-level check, reported at the field it is about.
            error = InitErrorDetails(
                type=PydanticCustomError("listeners_overlap", reason),
                loc=("listen",),
                input=listen.model_dump(),
            )
            raise ValidationError.from_exception_data(type(self).__name__, [error])
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's contents arrive as init kwargs; the environment overrides them.
        return env_settings, init_settings


_FRIENDLY = {
    "extra_forbidden": "unknown key",
    "missing": "required",
}


def _problems(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors():
        loc = ".".join(str(part) for part in error["loc"]) or "config"
        message = _FRIENDLY.get(error["type"], error["msg"])
        message = message.removeprefix("Value error, ")
        problems.append(f"{loc}: {message}")
    return problems


# CUTOVER_* variables that are not settings, read where they are named: the config file's
# path (cutover run/demo), the admin commands' address (CUTOVER_ADMIN_TOKEN is the
# admin_token setting, which the admin commands read too) and the admin port a
# `cutover run --workers N` parent hands its workers. Any other CUTOVER_* variable must name
# a setting: a misspelt one is an error, as an unknown key in the file is.
NOT_SETTINGS = frozenset({"CUTOVER_CONFIG", "CUTOVER_ADMIN_URL"})
ENV_PREFIX = "CUTOVER_"


def _section(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds (``X | None`` included), or None for a plain value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, UnionType):
        models = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(models) == 1:
            return _section(models[0])
    return None


def unknown_setting(name: str) -> str | None:
    """Why the variable ``name`` (CUTOVER_...) names no setting, or None if it names one.
    Matched without regard to case, as the settings source matches."""
    keys = name[len(ENV_PREFIX) :].lower().split("__")
    model: type[BaseModel] = Settings
    for depth, key in enumerate(keys):
        fields = model.model_fields
        if key not in fields:
            where = ".".join(keys[:depth]) or "the config"
            guess = difflib.get_close_matches(key, list(fields), n=1)
            hint = ""
            if guess:
                suggestion = ENV_PREFIX + "__".join([*keys[:depth], guess[0]]).upper()
                hint = f"; did you mean {suggestion}?"
            return f"names no setting ({where} has no {key!r}){hint}"
        if depth == len(keys) - 1:
            return None
        annotation = fields[key].annotation
        section = _section(annotation)
        if section is None:
            path = ".".join(keys[: depth + 1])
            if get_origin(annotation) is list:
                whole = ENV_PREFIX + "__".join(keys[: depth + 1]).upper()
                return f"names no setting ({path} is a list: set {whole} to all of it, as JSON)"
            return f"names no setting ({path} is a value, not a section)"
        model = section
    return None


def _environment_problems(environ: Mapping[str, str]) -> list[str]:
    problems = []
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX) or name.upper() in NOT_SETTINGS:
            continue
        reason = unknown_setting(name)
        if reason is not None:
            problems.append(f"{name}: {reason}")
    return problems


def _key_problems(data: dict[Any, Any]) -> list[str]:
    problems = []
    for key in data:
        if isinstance(key, str):
            continue
        if isinstance(key, bool):
            why = "YAML reads an unquoted yes/no/on/off/true/false as a boolean"
        else:
            why = f"YAML read this one as {type(key).__name__}"
        problems.append(f"{key}: keys must be strings; {why} (quote it)")
    return problems


def parse_settings(data: Any) -> Settings:
    """Validate an already-parsed mapping, with the CUTOVER_* environment over it; raise
    ConfigError listing every problem."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"config: must be a mapping of keys, got {type(data).__name__}"])
    if "admin_token" in data:
        raise ConfigError(["admin_token: keep it out of the file; set CUTOVER_ADMIN_TOKEN"])
    problems = _environment_problems(os.environ) + _key_problems(data)
    if problems:
        # Validating would only repeat an unknown variable's problem in other words.
        raise ConfigError(problems)
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_problems(exc)) from None


def load_settings(path: str | Path) -> Settings:
    """Read and validate a YAML config file; raise ConfigError on any problem."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"config: cannot read {path}: {exc.strerror or exc}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            [f"config: {path} is not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line})"]
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" (line {mark.line + 1}, column {mark.column + 1})"
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"config: {path} is not valid YAML{where}: {reason}"]) from None
    return parse_settings(data)

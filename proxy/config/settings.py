"""The root of the configuration: every section, the checks that span sections, and where
values come from (the CUTOVER_* environment over the file's contents)."""

from __future__ import annotations

import re
from functools import cached_property

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from cutover.config.access_log import AccessLogConfig
from cutover.config.backends import BackendConfig
from cutover.config.base import BackendName
from cutover.config.clients import ClientsConfig, UsageConfig
from cutover.config.cohorts import cohort_problems
from cutover.config.deprecation import DeprecationConfig
from cutover.config.failover import BreakerConfig, FallbackConfig
from cutover.config.forwarding import ForwardedConfig
from cutover.config.guard import GuardConfig
from cutover.config.limits import LimitsConfig, ShutdownConfig, TimeoutsConfig
from cutover.config.listeners import AdminConfig, ListenConfig, is_loopback, listeners_overlap
from cutover.config.migrations import DEFAULT_MIGRATION, MatchConfig, MigrationConfig, mirrored
from cutover.config.rollout import RolloutConfig
from cutover.config.routing import RouteConfig, SplitConfig
from cutover.config.shadow import ShadowConfig
from cutover.config.state import StateConfig
from cutover.config.websocket import WebSocketConfig
from cutover.request.matcher import Rule, conflicts, matches

ENV_PREFIX = "CUTOVER_"

_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]+")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    listen: ListenConfig = ListenConfig()
    admin: AdminConfig = AdminConfig()
    backends: dict[BackendName, BackendConfig]
    default_backend: BackendName = "legacy"
    split: SplitConfig = SplitConfig()
    migrations: list[MigrationConfig] | None = None
    deprecation: DeprecationConfig | None = None
    routes: list[RouteConfig] = []
    timeouts: TimeoutsConfig = TimeoutsConfig()
    limits: LimitsConfig = LimitsConfig()
    fallback: FallbackConfig = FallbackConfig()
    breaker: BreakerConfig = BreakerConfig()
    shutdown: ShutdownConfig = ShutdownConfig()
    forwarded: ForwardedConfig = ForwardedConfig()
    rollout: RolloutConfig | None = None
    guard: GuardConfig = GuardConfig()
    shadow: ShadowConfig = ShadowConfig()
    state: StateConfig = StateConfig()
    clients: ClientsConfig = ClientsConfig()
    usage: UsageConfig = UsageConfig()
    websocket: WebSocketConfig = WebSocketConfig()
    access_log: AccessLogConfig = AccessLogConfig()
    # From CUTOVER_ADMIN_TOKEN only (load_settings refuses it in the file).
    admin_token: SecretStr | None = Field(None, validate_default=True)
    # From CUTOVER_VIEW_TOKEN only: signs in to the console read-only (proxy/console/).
    view_token: SecretStr | None = None

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

    @field_validator("view_token")
    @classmethod
    def _view_token(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            return None
        if value is not None and not _PRINTABLE_ASCII.fullmatch(value.get_secret_value()):
            raise ValueError("must be printable ASCII, without spaces (like the admin token)")
        admin = info.data.get("admin_token")
        if value is not None and admin is not None and value == admin:
            raise ValueError("must differ from the admin token (it signs in read-only)")
        return value

    @field_validator("backends")
    @classmethod
    def _some_backend(cls, value: dict[str, BackendConfig]) -> dict[str, BackendConfig]:
        if not value:
            raise ValueError("must name at least one backend")
        return value

    @model_validator(mode="after")
    def _backends_named(self) -> Settings:
        """Every backend a migration, route or default names is configured, and
        migration names and prefixes are unique."""
        problems: list[tuple[tuple[str | int, ...], str]] = []
        known = self.backends
        names = ", ".join(known)

        def check(loc: tuple[str | int, ...], backend: str | None) -> None:
            if backend is not None and backend not in known:
                problems.append((loc, f"no backend named {backend!r} (backends: {names})"))

        check(("default_backend",), self.default_backend)
        prefixes = [m.match.prefix for m in self.migration_list]
        for index, route in enumerate(self.routes):
            check(("routes", index, "backend"), route.backend)
            if route.weight is not None and not any(matches(p, route.prefix) for p in prefixes):
                reason = (
                    f"{route.prefix} is under no migration: a weight splits a migration's "
                    "from and to; pin the route with backend instead"
                )
                problems.append((("routes", index, "weight"), reason))
        if self.migrations is None:
            for backend in ("legacy", "new"):
                if backend not in known:
                    problems.append((
                        ("backends",),
                        f"without migrations, the default migration goes from legacy to new: "
                        f"add a backend named {backend!r}, or list migrations",
                    ))  # fmt: skip
        else:
            if self.rollout is not None:
                problems.append(
                    (("rollout",), "with migrations, each migration has its own rollout")
                )
            if self.split.weight:
                problems.append(
                    (("split", "weight"), "with migrations, each migration has its own weight")
                )
            seen: dict[str, int] = {}
            for index, migration in enumerate(self.migrations):
                check(("migrations", index, "from"), migration.source)
                check(("migrations", index, "to"), migration.target)
                if migration.name in seen:
                    reason = (
                        f"{migration.name!r} is also the name of migrations.{seen[migration.name]}"
                    )
                    problems.append((("migrations", index, "name"), reason))
                seen.setdefault(migration.name, index)
            for conflict in conflicts(
                Rule(m.name, m.match.prefix, _methods(m.match), index)
                for index, m in enumerate(self.migrations)
            ):
                reason = (
                    f"migrations {conflict.first} and {conflict.second} both match "
                    f"{conflict.prefix} with overlapping methods; give one other methods or prefix"
                )
                problems.append((("migrations",), reason))
        if problems:
            raise _at_fields(type(self).__name__, problems)
        return self

    @model_validator(mode="after")
    def _cohorts_fit(self) -> Settings:
        """Each cohort names its migration's from or to; a users file needs a sticky key
        (the migration's, or split.sticky)."""
        problems = [
            (("migrations", index, *loc), reason)
            for index, m in enumerate(self.migration_list if self.migrations else [])
            for loc, reason in cohort_problems(m.cohorts, m.source, m.target, m.sticky or "none")
        ]
        if problems:
            raise _at_fields(type(self).__name__, problems)
        return self

    @cached_property
    def migration_list(self) -> list[MigrationConfig]:
        """The migrations in config order, each complete (its sticky and deprecation filled in
        from the top level); a config without ``migrations`` has one, named ``default``, from
        legacy to new over every path."""
        if self.migrations is None:
            default = MigrationConfig(
                name=DEFAULT_MIGRATION,
                match=MatchConfig(prefix="/"),
                source="legacy",
                target="new",
                sticky=self.split.sticky,
                rollout=self.rollout,
                weight=self.split.weight,
                deprecation=self.deprecation,
            )
            return [default]
        return [
            m.model_copy(
                update={
                    "sticky": m.sticky or self.split.sticky,
                    "deprecation": None
                    if m.deprecation is False
                    else m.deprecation or self.deprecation,
                }
            )
            for m in self.migrations
        ]

    def mirrored(self, migration: MigrationConfig) -> bool:
        """Whether some of ``migration``'s requests are mirrored (``migrations.mirrored``)."""
        return mirrored(migration, self.routes)

    @property
    def shadowing(self) -> bool:
        """Whether any request is mirrored (then the dual run is needed)."""
        return any(self.mirrored(m) for m in self.migration_list)

    def migration(self, name: str) -> MigrationConfig | None:
        return next((m for m in self.migration_list if m.name == name), None)

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


def _methods(match: MatchConfig) -> frozenset[str] | None:
    return None if match.methods is None else frozenset(match.methods)


def _at_fields(title: str, problems: list[tuple[tuple[str | int, ...], str]]) -> ValidationError:
    """Model-level problems, each reported at the field it is about."""
    errors = [
        InitErrorDetails(type=PydanticCustomError("invalid", reason), loc=loc, input=None)
        for loc, reason in problems
    ]
    return ValidationError.from_exception_data(title, errors)

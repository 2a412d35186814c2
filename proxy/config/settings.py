"""The root of the configuration: every section, the checks that span sections, and where
values come from (the CUTOVER_* environment over the file's contents)."""

from __future__ import annotations

import re

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

from cutover.config.backends import BackendsConfig
from cutover.config.deprecation import DeprecationConfig
from cutover.config.failover import BreakerConfig, FallbackConfig
from cutover.config.guard import GuardConfig
from cutover.config.limits import LimitsConfig, ShutdownConfig, TimeoutsConfig
from cutover.config.listeners import AdminConfig, ListenConfig, is_loopback, listeners_overlap
from cutover.config.rollout import RolloutConfig, StateConfig
from cutover.config.routing import RouteConfig, SplitConfig
from cutover.config.shadow import ShadowConfig

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

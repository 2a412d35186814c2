"""The ``clients`` and ``usage`` sections: how a caller of a deprecated API is told apart
(a header, an API key, a bearer token or the address), and where its calls are counted.

API keys and bearer tokens are secrets: they are kept only as keyed hashes, with a key
from ``CUTOVER_CLIENTS__HASH_KEY`` (load_settings refuses it in the file)."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from cutover.config.base import PositiveSeconds, SectionConfig
from cutover.vocabulary import ClientIdentity

_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
MIN_HASH_KEY = 16  # characters: a shorter key is guessable, and so would the hashes be
SECRET_KINDS = (ClientIdentity.API_KEY, ClientIdentity.BEARER)


def parse_identify(value: str) -> tuple[ClientIdentity, str | None]:
    """``header:NAME`` → (header, NAME); ``bearer`` → (bearer, None); ValueError otherwise."""
    kind, sep, name = value.partition(":")
    if value in (ClientIdentity.BEARER, ClientIdentity.CLIENT_IP):
        return ClientIdentity(value), None
    if sep and kind in (ClientIdentity.HEADER, ClientIdentity.API_KEY):
        if not name or not _TOKEN_RE.match(name):
            raise ValueError(f"{name!r} is not a valid header name")
        return ClientIdentity(kind), name
    raise ValueError("must be header:NAME, api_key:NAME, bearer or client_ip")


class ClientsConfig(SectionConfig):
    identify: str = "client_ip"
    # From CUTOVER_CLIENTS__HASH_KEY only (load_settings refuses it in the file).
    hash_key: SecretStr | None = Field(None, validate_default=True)

    @field_validator("identify")
    @classmethod
    def _identify(cls, value: str) -> str:
        parse_identify(value)
        return value

    @field_validator("hash_key")
    @classmethod
    def _secret_kinds_need_a_key(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            value = None
        identify = info.data.get("identify")
        if identify is None:
            return value  # identify failed: its own error says why
        kind, _ = parse_identify(identify)
        if value is None and kind in SECRET_KINDS:
            raise ValueError(f"identify {kind} needs a secret: set CUTOVER_CLIENTS__HASH_KEY")
        if value is not None and len(value.get_secret_value()) < MIN_HASH_KEY:
            raise ValueError(f"must be at least {MIN_HASH_KEY} characters")
        return value

    @property
    def kind(self) -> ClientIdentity:
        return parse_identify(self.identify)[0]

    @property
    def header(self) -> str | None:
        """The header named by ``header:NAME`` or ``api_key:NAME``."""
        return parse_identify(self.identify)[1]


class UsageConfig(SectionConfig):
    # The embedded store's database (with state.backend redis the counts go to Redis).
    path: Path = Path("./cutover-usage.sqlite3")
    retention_days: int = Field(90, ge=1)
    flush_interval: PositiveSeconds = 1.0
    # Distinct clients counted per migration per day (per process); the calls of any further
    # one count as (overflow): a client naming itself anew on every call cannot fill the disk.
    max_clients: int = Field(10_000, ge=1)

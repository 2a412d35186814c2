"""Who is calling: a STAND-IN for issue 14's client identification (H2's module replaces it
at merge). It identifies by ``header:NAME`` or by the client's address, nothing more."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cutover.types import RawHeaders


@dataclass(frozen=True, slots=True)
class ClientId:
    key: str
    hint: str | None


UNIDENTIFIED = ClientId("-", None)


class ClientIdentifier:
    def __init__(self, config: Any) -> None:
        identify = getattr(config, "identify", "client_ip")
        kind, _, name = identify.partition(":")
        self.header = name.lower().encode("latin-1") if kind == "header" else None

    def identify(self, headers: RawHeaders, client: tuple[str, int] | None) -> ClientId:
        if self.header is not None:
            for name, value in headers:
                if name == self.header:
                    return ClientId(value.decode("latin-1"), None)
            return UNIDENTIFIED
        return ClientId(client[0], None) if client is not None else UNIDENTIFIED

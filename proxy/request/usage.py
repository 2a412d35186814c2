"""Counting the calls to a deprecated ``from``: a STAND-IN for issue 14's usage recorder
(H2's module replaces it at merge). It keeps the calls in a list, for the tests."""

from __future__ import annotations

from dataclasses import dataclass

from cutover.request.clients import ClientId


@dataclass(frozen=True, slots=True)
class UsageRow:
    migration: str
    client: ClientId
    method: str
    prefix: str
    user_agent: bytes | None
    brownout: bool
    now: float


class UsageRecorder:
    def __init__(self) -> None:
        self._rows: list[UsageRow] = []

    def record(self, migration: str, client: ClientId, method: str, prefix: str,
               user_agent: bytes | None, brownout: bool, now: float) -> None:  # fmt: skip
        self._rows.append(UsageRow(migration, client, method, prefix, user_agent, brownout, now))

    def drain(self) -> list[UsageRow]:
        rows, self._rows = self._rows, []
        return rows

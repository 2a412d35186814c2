"""The names of one deployment's keys in Redis, all under ``state.key_prefix``; two
deployments with different prefixes never share a key."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RedisKeys:
    prefix: str

    def migration(self, name: str) -> str:
        """A hash: ``rev`` (the document's revision) and ``state`` (its JSON)."""
        return f"{self.prefix}:migration:{name}"

    @property
    def migrations(self) -> str:
        """A set: every migration that has a document (removed ones too)."""
        return f"{self.prefix}:migrations"

    @property
    def changes(self) -> str:
        """The pub/sub channel a migration's name is published on when it is written."""
        return f"{self.prefix}:changes"

    @property
    def epoch(self) -> str:
        """The guard leader's lease epoch, incremented by every new leader (fencing token)."""
        return f"{self.prefix}:guard:epoch"

    @property
    def leader(self) -> str:
        """``<host> <epoch>`` of the guard leader, expiring with its lease."""
        return f"{self.prefix}:guard:leader"

    @property
    def evaluations(self) -> str:
        return f"{self.prefix}:guard:evaluations"

    def host(self, host: str) -> str:
        return f"{self.prefix}:host:{host}"

    @property
    def hosts(self) -> str:
        return f"{self.prefix}:hosts"

    def counters(self, host: str) -> str:
        return f"{self.prefix}:counters:{host}"

    @property
    def counter_hosts(self) -> str:
        """A set: the hosts that published counters (each host's ``counters`` key expires)."""
        return f"{self.prefix}:counter-hosts"

"""Why a write to the fleet's shared state store (Redis) was refused: each a SaveError, so
whoever handles a failed save handles these too; nothing was changed by any of them."""

from __future__ import annotations

from cutover.rollout.state import SaveError


class StoreUnavailable(SaveError):
    """The shared state store could not be reached; nothing was written."""


class StateConflict(SaveError):
    """Another host wrote the migration's state first; its document is now the one held."""


class Fenced(SaveError):
    """A newer guard leader holds the lease: this write of an older one is refused."""

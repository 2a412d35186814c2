"""What a migration's document in Redis is, apart from the book that reads and writes it:
the compare-and-set script, its parsing, and the rules of a write made while Redis was
unreachable."""

from __future__ import annotations

import json
from collections.abc import Mapping

import redis

from cutover.rollout.state import RolloutState, StateError, parse_states
from cutover.vocabulary import Phase

# KEYS: the document, the epoch, the set of names. ARGV: the revision the writer read, the
# new state's JSON, the writer's lease epoch ("" for an operator's write), the name.
CAS_SCRIPT = """
local rev = tonumber(redis.call('HGET', KEYS[1], 'rev') or '0')
if rev ~= tonumber(ARGV[1]) then return {'conflict', rev} end
if ARGV[3] ~= '' then
  local epoch = tonumber(redis.call('GET', KEYS[2]) or '0')
  if epoch ~= tonumber(ARGV[3]) then return {'fenced', epoch} end
end
redis.call('HSET', KEYS[1], 'rev', rev + 1, 'state', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[4])
return {'ok', rev + 1}
"""

UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, OSError)


def document(name: str, raw: Mapping[bytes, bytes]) -> tuple[int, RolloutState]:
    """A migration's hash as (revision, state); StateError naming the field."""
    try:
        rev = int(raw[b"rev"])
        data = json.loads(raw[b"state"])
    except (KeyError, ValueError) as exc:
        raise StateError([f"migrations.{name}: not a Cutover state document ({exc})"]) from None
    return rev, parse_states({"version": 2, "migrations": {name: data}})[name]


def towards_from(old: RolloutState | None, new: RolloutState) -> bool:
    """Whether ``new`` only moves traffic back (a rollback, or a lower weight)."""
    if new.phase == Phase.ROLLED_BACK:
        return True
    return old is not None and new.weight < old.weight


def on_top(remote: RolloutState, held: RolloutState) -> RolloutState:
    """A state held during an outage written on top of the fleet's since: the fleet's
    history kept, the held transitions added, the held phase and weight (a move back)."""
    seen = {(t.at, t.kind) for t in remote.history}
    extra = [t for t in held.history if (t.at, t.kind) not in seen]
    return RolloutState(
        phase=held.phase, weight=held.weight,
        baseline_memory_bytes=remote.baseline_memory_bytes,
        last_legacy_p95=remote.last_legacy_p95, reason=held.reason,
        failure=held.failure, history=[*remote.history, *extra],
    )  # fmt: skip

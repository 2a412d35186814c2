"""The ``cutover demo`` driver's copy of the config: the file the proxy child runs, with the
demo's addresses and short holds written in, so the ramp is visible in a minute while the
config file keeps its production values.

These go into a file because no CUTOVER_* variable reaches them: a hold is inside a list
item (each migration's rollout), a backend inside a mapping of names. The guard's pace is a
plain section, so it stays a CUTOVER_* variable (DEMO_GUARD), which beats the file.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from cutover.config.rollout import RolloutConfig
from cutover_demo.new_backend.driver_ports import Addresses

# A quick guard: judged every second on the last 8 s. Each migration sees about half of the
# traffic, so 10 requests to new in the window are enough to judge it.
DEMO_INTERVAL = 1
DEMO_WINDOW = 8
DEMO_MIN_REQUESTS = 10
DEMO_GUARD = {
    "CUTOVER_GUARD__INTERVAL": str(DEMO_INTERVAL),
    "CUTOVER_GUARD__WINDOW": str(DEMO_WINDOW),
    "CUTOVER_GUARD__MIN_REQUESTS": str(DEMO_MIN_REQUESTS),
}
# Holds shrink in proportion: the default 300 s becomes 8 s, 600 s 16 s; so migrations on
# different holds still ramp on different schedules. Never below 2 guard intervals.
DEFAULT_HOLD: float = RolloutConfig.model_fields["hold"].default
HOLD_SCALE = 8 / 300
MIN_HOLD = 2.0 * DEMO_INTERVAL
DEFAULT_NAME = "default"  # the one migration of a config without ``migrations``
# The CUTOVER_* variables whose values the copy carries (with the demo's ports): left in the
# proxy child's environment, they would beat the copy.
CARRIED = frozenset(
    {
        "CUTOVER_BACKENDS__LEGACY__URL",
        "CUTOVER_BACKENDS__NEW__URL",
        "CUTOVER_BACKENDS__NEW__METRICS_URL",
    }
)


class DemoConfigError(Exception):
    """The config file could not be read again for the demo's copy."""


def demo_hold(hold: float) -> float:
    return max(MIN_HOLD, round(hold * HOLD_SCALE, 1))


def shortened(rollout: dict[str, Any]) -> dict[str, Any]:
    """A rollout section with its hold and each stage's own hold scaled down."""
    short = dict(rollout)
    short["hold"] = demo_hold(float(rollout.get("hold", DEFAULT_HOLD)))
    short["stages"] = [
        {**stage, "hold": demo_hold(float(stage["hold"]))}
        if isinstance(stage, dict) and stage.get("hold") is not None
        else stage
        for stage in rollout.get("stages") or []
    ]
    return short


def demo_config(raw: dict[str, Any], addresses: Addresses) -> dict[str, Any]:
    """``raw`` (the parsed YAML) with the demo's backend addresses and short holds, and no
    migration's guard asking for more requests than the demo's window holds."""
    config = copy.deepcopy(raw)
    backends = config.setdefault("backends", {})
    backends.setdefault("legacy", {})["url"] = addresses.legacy_url
    new = backends.setdefault("new", {})
    new["url"] = addresses.new_url
    if addresses.new_metrics_url is not None:
        new["metrics_url"] = addresses.new_metrics_url
    if isinstance(config.get("rollout"), dict):
        config["rollout"] = shortened(config["rollout"])
    for migration in config.get("migrations") or []:
        if isinstance(migration.get("rollout"), dict):
            migration["rollout"] = shortened(migration["rollout"])
        guard = migration.get("guard")
        if isinstance(guard, dict) and "min_requests" in guard:
            guard["min_requests"] = min(int(guard["min_requests"]), DEMO_MIN_REQUESTS)
    return config


def holds(config: dict[str, Any]) -> dict[str, float]:
    """Each migration's hold (of its first stage) in ``config``, by name."""
    if "migrations" not in config:
        rollouts = {DEFAULT_NAME: config.get("rollout")}
    else:
        rollouts = {m.get("name", "?"): m.get("rollout") for m in config["migrations"] or []}
    found = {}
    for name, rollout in rollouts.items():
        if isinstance(rollout, dict):
            stages = rollout.get("stages") or [None]
            first = stages[0] if isinstance(stages[0], dict) else {}
            found[name] = float(first.get("hold") or rollout.get("hold", DEFAULT_HOLD))
    return found


def holds_line(config: dict[str, Any]) -> str:
    found = holds(config)
    if not found:
        return "demo: no migration has a rollout: set its weight with cutover set-weight"
    each = ", ".join(f"{name} {hold:g} s" for name, hold in found.items())
    return f"demo: holds shortened for the demo (checks passing before each promotion): {each}"


def without_carried(environ: dict[str, str]) -> dict[str, str]:
    """``environ`` without the variables the copy carries (matched regardless of case, as
    the settings read them)."""
    return {name: value for name, value in environ.items() if name.upper() not in CARRIED}


def write_demo_config(
    config_path: str | Path, addresses: Addresses, scratch: Path
) -> tuple[Path, dict[str, Any]]:
    """Write the demo's copy of ``config_path`` into ``scratch``: its path and contents."""
    try:
        raw = yaml.safe_load(Path(config_path).read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DemoConfigError(f"cannot read {config_path} again: {exc}") from None
    if not isinstance(raw, dict):
        raise DemoConfigError(f"{config_path} is not a mapping of keys")
    config = demo_config(raw, addresses)
    path = scratch / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path, config

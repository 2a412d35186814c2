"""What the admin commands print: pure functions from the admin API's rollout status document
to text. Fields the document lacks print as ``?`` or ``-``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from cutover.vocabulary import Actor, CheckResult

if TYPE_CHECKING:
    from cutover.cli.client import Status

HISTORY_SHOWN = 5
# The columns of a check's result and of a transition's actor fit the longest word.
RESULT_WIDTH = max(len(result) for result in CheckResult)
ACTOR_WIDTH = max(len(actor) for actor in Actor)


def format_status(status: Status) -> str:
    lines = [
        f"phase     {status.get('phase', '?')}",
        f"weight    {number(status.get('weight'))}% to new",
        f"stage     {stage_line(status)}",
        f"reason    {status.get('reason') or '-'}",
    ]
    failure = status.get("failure")
    if failure:
        lines.append(f"failure   {failure_line(failure)}")
    lines.append(f"next      {next_line(status)}")
    breaker = status.get("breaker")
    if breaker:
        lines.append(f"breaker   {breaker.get('state', '?')} (new)")
    lines += check_lines(status.get("checks") or {})
    lines += history_lines(status.get("history") or [])
    return "\n".join(lines)


def format_action(status: Status) -> str:
    """The status after an action: the phase, the weight and why."""
    line = f"{status.get('phase', '?')}, weight {number(status.get('weight'))}% to new"
    reason = status.get("reason")
    return f"{line}\nreason: {reason}" if reason else line


def format_json(status: Status) -> str:
    return json.dumps(status, indent=2)


def number(value: Any) -> str:
    """Whole numbers without a fraction, others to 4 significant digits, None as ``-``."""
    if value is None:
        return "-"
    if isinstance(value, int | float) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def duration(seconds: float) -> str:
    """Whole seconds as ``1h 2m 3s``, leaving out the zero parts (``0s`` for none)."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h"] if hours else []
    if minutes:
        parts.append(f"{minutes}m")
    if secs or not parts:
        parts.append(f"{secs}s")
    return " ".join(parts)


def stage_line(status: Status) -> str:
    stages = status.get("stages") or []
    index = status.get("stage")
    if not stages:
        return "none (no rollout configured)"
    if index is None or not 0 <= index < len(stages):
        return f"none of {len(stages)}"
    stage = stages[index]
    line = f"{index + 1}/{len(stages)} ({number(stage.get('weight'))}%)"
    hold = stage.get("hold")
    return line if hold is None else f"{line}, hold {duration(hold)}"


def failure_line(failure: dict[str, Any]) -> str:
    line = (
        f"{failure.get('check', '?')} {number(failure.get('value'))} "
        f"vs threshold {number(failure.get('threshold'))}"
    )
    detail = failure.get("detail")
    return f"{line} ({detail})" if detail else line


def next_line(status: Status) -> str:
    next_in = status.get("next_promotion_in")
    line = (
        "no automatic promotion pending" if next_in is None else f"promotion in {duration(next_in)}"
    )
    healthy_for = status.get("healthy_for")
    if healthy_for is not None:
        line += f" (checks passing for {duration(healthy_for)})"
    return line


def check_lines(checks: dict[str, dict[str, Any]]) -> list[str]:
    if not checks:
        return ["checks    none"]
    width = max(len(name) for name in checks)
    lines = ["checks"]
    for name, check in checks.items():
        reading = f"{number(check.get('value'))} (threshold {number(check.get('threshold'))})"
        line = f"  {name:<{width}}  {check.get('result', '?'):<{RESULT_WIDTH}}  {reading}"
        detail = check.get("detail")
        lines.append(f"{line}  {detail}" if detail else line)
    return lines


def history_line(entry: dict[str, Any]) -> str:
    change = (
        f"{entry.get('from_phase')} {number(entry.get('from_weight'))}% -> "
        f"{entry.get('to_phase')} {number(entry.get('to_weight'))}%"
    )
    line = f"  {entry.get('at', '?')}  {entry.get('actor', '?'):<{ACTOR_WIDTH}}  {change}"
    reason = entry.get("reason")
    return f"{line}  {reason}" if reason else line


def history_lines(history: list[dict[str, Any]]) -> list[str]:
    """The last HISTORY_SHOWN transitions, oldest first."""
    if not history:
        return ["history   none"]
    shown = history[-HISTORY_SHOWN:]
    header = (
        "history"
        if len(shown) == len(history)
        else f"history (last {len(shown)} of {len(history)})"
    )
    return [header, *(history_line(entry) for entry in shown)]

"""What the admin commands print: pure functions from the admin API's migration documents
(and its fleet document) to text. Fields a document lacks print as ``?`` or ``-``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from cutover.cli.render_lifecycle import deprecation_lines
from cutover.vocabulary import Actor, CheckResult

if TYPE_CHECKING:
    from cutover.cli.client import Fleet, Migration, Migrations

HISTORY_SHOWN = 5
# The columns of a check's result and of a transition's actor fit the longest word.
RESULT_WIDTH = max(len(result) for result in CheckResult)
ACTOR_WIDTH = max(len(actor) for actor in Actor)
# Which check's verdict the table shows: the worst, in this order; ties go to the first listed.
SEVERITY = (CheckResult.FAIL, CheckResult.ERROR, CheckResult.NODATA, CheckResult.PASS)
TABLE_HEADER = ("NAME", "PHASE", "WEIGHT", "STAGE", "NEXT", "WORST CHECK")
HOSTS_HEADER = ("HOST", "PROXY", "ADMIN", "LAST SEEN", "VERSION")


def format_status(document: Migrations) -> str:
    """``cutover status``: a line per migration; with exactly one, its detail below; then
    the fleet, when there is one (the file backend's is this host alone: ``--json`` has it)."""
    migrations = document.get("migrations") or []
    blocks = [format_table(migrations)]
    if len(migrations) == 1:
        blocks.append(format_detail(migrations[0]))
    fleet = document.get("fleet")
    if fleet is not None and fleet.get("backend") != "file":
        blocks.append(format_fleet(fleet))
    return "\n\n".join(blocks)


def format_table(migrations: list[Migration]) -> str:
    if not migrations:
        return "no migrations configured"
    return columns([TABLE_HEADER, *(table_row(migration) for migration in migrations)])


def columns(rows: list[tuple[str, ...]]) -> str:
    """Every column but the last padded to its widest cell; the last is left ragged."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def format_fleet(fleet: Fleet) -> str:
    """The hosts sharing the state, which one answered, the guard leader and its epoch."""
    hosts = fleet.get("hosts") or []
    store = fleet.get("store") or {}
    backend = fleet.get("backend", "?")
    where = store.get("url") or store.get("path") or "?"
    count = f"{len(hosts)} host{'' if len(hosts) == 1 else 's'}"
    if fleet.get("error"):
        line = f"{backend} {where} unreachable ({fleet['error']}); {count} known"
    else:
        line = f"{backend} {where}, {count}"
    answering = [str(host.get("id", "?")) for host in hosts if host.get("local")]
    if answering:
        line += f", answered by {answering[0]}"
    rows = [HOSTS_HEADER, *(host_row(host) for host in hosts)]
    return "\n".join([f"fleet     {line}", f"leader    {leader_line(fleet)}", columns(rows)])


def host_row(host: dict[str, Any]) -> tuple[str, ...]:
    ago = host.get("last_seen_ago")
    return (
        str(host.get("id", "?")),
        str(host.get("proxy", "?")),
        str(host.get("admin", "?")),
        "?" if not isinstance(ago, int | float) else f"{duration(ago)} ago",
        str(host.get("version", "?")),
    )


def leader_line(fleet: Fleet) -> str:
    leader = fleet.get("leader")
    if leader is not None:
        epoch = leader.get("epoch")
        host = leader.get("host", "?")
        return str(host) if epoch is None else f"{host} (epoch {epoch})"
    if fleet.get("error"):
        return "unknown while the store is unreachable"
    if fleet.get("backend") == "file":
        return "not the process that answered (another worker of this host may lead)"
    return "none (no host holds the guard's lease)"


def table_row(migration: Migration) -> tuple[str, ...]:
    stages = migration.get("stages") or []
    index = migration.get("stage")
    if not stages:
        stage = "-"
    elif isinstance(index, int) and 0 <= index < len(stages):
        stage = f"{index + 1}/{len(stages)}"
    else:
        stage = f"-/{len(stages)}"
    next_in = migration.get("next_promotion_in")
    return (
        str(migration.get("name", "?")),
        str(migration.get("phase", "?")),
        f"{number(migration.get('weight'))}%",
        stage,
        "-" if next_in is None else duration(next_in),
        worst_check(migration.get("checks") or {}),
    )


def worst_check(checks: dict[str, dict[str, Any]]) -> str:
    """The worst verdict as ``result check value vs threshold``, ``-`` without checks."""
    if not checks:
        return "-"

    def severity(item: tuple[str, dict[str, Any]]) -> int:
        result = item[1].get("result")
        return SEVERITY.index(result) if result in SEVERITY else len(SEVERITY)

    name, check = min(checks.items(), key=severity)
    return (
        f"{check.get('result', '?')} {name} {number(check.get('value'))} "
        f"vs {number(check.get('threshold'))}"
    )


def format_migration(migration: Migration) -> str:
    """``cutover status NAME``: which requests and backends, then the detail."""
    heading = [
        f"migration {migration.get('name', '?')}",
        f"match     {match_line(migration.get('match') or {})}",
        f"backends  {migration.get('from', '?')} -> {migration.get('to', '?')}",
    ]
    return "\n".join([*heading, format_detail(migration)])


def match_line(match: dict[str, Any]) -> str:
    methods = match.get("methods")
    which = ", ".join(methods) if methods else "all methods"
    return f"{match.get('prefix', '?')} ({which})"


def format_detail(migration: Migration) -> str:
    to = migration.get("to", "?")
    lines = [
        f"phase     {migration.get('phase', '?')}",
        f"weight    {number(migration.get('weight'))}% to {to}",
        f"stage     {stage_line(migration)}",
        f"reason    {migration.get('reason') or '-'}",
    ]
    failure = migration.get("failure")
    if failure:
        lines.append(f"failure   {failure_line(failure)}")
    lines.append(f"next      {next_line(migration)}")
    breaker = migration.get("breaker")
    if breaker:
        lines.append(f"breaker   {breaker.get('state', '?')} ({to})")
    lines += deprecation_lines(migration.get("deprecation"))
    lines += check_lines(migration.get("checks") or {})
    lines += history_lines(migration.get("history") or [])
    return "\n".join(lines)


def format_action(migration: Migration) -> str:
    """A migration after an action: its name, phase, weight and why."""
    line = (
        f"{migration.get('name', '?')}: {migration.get('phase', '?')}, "
        f"{number(migration.get('weight'))}% to {migration.get('to', '?')}"
    )
    reason = migration.get("reason")
    return f"{line}\nreason: {reason}" if reason else line


def format_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2)


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


def stage_line(migration: Migration) -> str:
    stages = migration.get("stages") or []
    index = migration.get("stage")
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


def next_line(migration: Migration) -> str:
    next_in = migration.get("next_promotion_in")
    line = (
        "no automatic promotion pending" if next_in is None else f"promotion in {duration(next_in)}"
    )
    healthy_for = migration.get("healthy_for")
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
    line = f"{line}  {reason}" if reason else line
    role = entry.get("role")  # made from the console, by that role
    return f"{line}  [console: {role}]" if role else line


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

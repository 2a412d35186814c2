"""The ``deprecation`` block of ``cutover status NAME``: a pure function from the admin
document's block to lines (fields it lacks print as ``?``)."""

from __future__ import annotations

from typing import Any

LIFECYCLE_WORDS = {
    "deprecated": "deprecated since {deprecated_at}, serving",
    "brownout": "brownout until {window_end}",
    "sunset": "past its sunset ({sunset_at}), after sunset: {after_sunset}",
}


def deprecation_lines(block: dict[str, Any] | None) -> list[str]:
    if not block:
        return []
    values = {key: block.get(key) or "?" for key in
              ("deprecated_at", "sunset_at", "window_end", "after_sunset")}  # fmt: skip
    template = LIFECYCLE_WORDS.get(str(block.get("lifecycle")), "{lifecycle}")
    lifecycle = template.format(lifecycle=block.get("lifecycle", "?"), **values)
    if block.get("lifecycle") == "brownout":
        if block.get("dry_run"):
            lifecycle += " (dry run: counted, not refused)"
        else:
            lifecycle += f" (answering {block.get('brownout_status', '?')})"
    lines = [f"lifecycle {lifecycle}", f"sunset    {sunset_line(block)}"]
    upcoming = block.get("next_brownout")
    if upcoming:
        lines.append(f"brownout  next {upcoming.get('start', '?')} to {upcoming.get('end', '?')}")
    else:
        lines.append("brownout  none scheduled")
    clients = block.get("clients_7d")
    counted = "not counted" if clients is None else f"{clients} called from in the last 7 days"
    lines.append(f"clients   {counted}")
    return lines


def sunset_line(block: dict[str, Any]) -> str:
    sunset = block.get("sunset_at")
    if not sunset:
        return "none set"
    days = block.get("days_to_sunset")
    when = "" if days is None else (" (passed)" if days == 0 else f" (in {days} days)")
    return f"{sunset}{when}, then {block.get('after_sunset', '?')}"

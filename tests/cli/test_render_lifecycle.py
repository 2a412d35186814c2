"""The deprecation block of ``cutover status NAME``."""

from __future__ import annotations

from cutover.cli.render import format_migration
from cutover.cli.render_lifecycle import deprecation_lines

BLOCK = {
    "deprecated_at": "2026-12-01T00:00:00Z",
    "sunset_at": "2027-06-01T00:00:00Z",
    "days_to_sunset": 57,
    "lifecycle": "brownout",
    "window_end": "2027-04-05T15:00:00Z",
    "next_brownout": {"start": "2027-04-12T14:00:00Z", "end": "2027-04-12T15:00:00Z"},
    "after_sunset": "gone",
    "brownout_status": 410,
    "dry_run": False,
    "clients_7d": 3,
}


def test_a_brownout_in_force() -> None:
    assert deprecation_lines(BLOCK) == [
        "lifecycle brownout until 2027-04-05T15:00:00Z (answering 410)",
        "sunset    2027-06-01T00:00:00Z (in 57 days), then gone",
        "brownout  next 2027-04-12T14:00:00Z to 2027-04-12T15:00:00Z",
        "clients   3 called from in the last 7 days",
    ]


def test_a_dry_run_between_windows_and_after_the_sunset() -> None:
    dry = {**BLOCK, "dry_run": True}
    assert deprecation_lines(dry)[0].endswith("(dry run: counted, not refused)")
    calm = {**BLOCK, "lifecycle": "deprecated", "window_end": None, "next_brownout": None,
            "clients_7d": None}  # fmt: skip
    assert deprecation_lines(calm) == [
        "lifecycle deprecated since 2026-12-01T00:00:00Z, serving",
        "sunset    2027-06-01T00:00:00Z (in 57 days), then gone",
        "brownout  none scheduled",
        "clients   not counted",
    ]
    past = {**BLOCK, "lifecycle": "sunset", "days_to_sunset": 0, "next_brownout": None}
    assert deprecation_lines(past)[:2] == [
        "lifecycle past its sunset (2027-06-01T00:00:00Z), after sunset: gone",
        "sunset    2027-06-01T00:00:00Z (passed), then gone",
    ]


def test_status_name_shows_it_and_nothing_without_a_deprecation() -> None:
    document = {"name": "orders", "from": "legacy", "to": "new", "deprecation": BLOCK}
    assert "brownout  next 2027-04-12T14:00:00Z" in format_migration(document)
    assert "lifecycle" not in format_migration({**document, "deprecation": None})

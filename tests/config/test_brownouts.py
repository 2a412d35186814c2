"""cutover.config.brownouts: durations, one-off and cron windows, chains, what comes next;
and the deprecation's checks of its brownouts (inside [deprecated_at, sunset_at])."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cutover.config import BrownoutConfig, BrownoutSchedule, DeprecationConfig, parse_duration
from cutover.vocabulary import AfterSunset
from tests.config import BACKENDS, problems

DEPRECATED = datetime(2026, 12, 1, tzinfo=UTC)
SUNSET = datetime(2027, 6, 1, tzinfo=UTC)


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def schedule(*brownouts: dict, sunset: datetime | None = SUNSET) -> BrownoutSchedule:
    configs = [BrownoutConfig.model_validate(b) for b in brownouts]
    return BrownoutSchedule(configs, DEPRECATED, sunset)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("90s", 90), ("30m", 1800), ("12h", 43200), ("2d", 172800), (45, 45), (1.5, 1.5),
     ("120", 120), ("1.5h", 5400)],
)  # fmt: skip
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["0s", 0, -5, "12 hours", "h", True, "1h30m"])
def test_durations_refused(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_a_one_off_window_and_its_boundaries() -> None:
    windows = schedule({"start": "2027-05-03T14:00:00Z", "duration": "12h"})
    start, end = at("2027-05-03T14:00:00"), at("2027-05-04T02:00:00")
    assert windows.active(start - 0.001) is None
    assert windows.active(start).end == end  # type: ignore[union-attr]
    assert windows.active(end - 0.001).end == end  # type: ignore[union-attr]
    assert windows.active(end) is None  # the end is not in the window
    assert windows.next_after(start - 1).start == start  # type: ignore[union-attr]
    assert windows.next_after(start) is None


def test_a_cron_fires_weekly_in_utc_from_its_from() -> None:
    # 2027-03-28 is the European switch to summer time: UTC has none.
    windows = schedule({"schedule": "0 14 * * 1", "duration": "1h", "from": "2027-03-22"})
    assert windows.next_after(at("2027-01-01T00:00:00")).start == at("2027-03-22T14:00:00")  # type: ignore[union-attr]
    after_switch = windows.next_after(at("2027-03-22T15:00:00"))
    assert after_switch is not None
    assert (after_switch.start, after_switch.end) == (
        at("2027-03-29T14:00:00"), at("2027-03-29T15:00:00"),
    )  # fmt: skip
    assert windows.active(at("2027-03-29T14:30:00")).end == at("2027-03-29T15:00:00")  # type: ignore[union-attr]
    assert windows.active(at("2027-03-29T15:00:00")) is None
    assert windows.active(at("2027-03-15T14:30:00")) is None  # before its from


def test_a_cron_stops_at_its_until_and_at_the_sunset() -> None:
    windows = schedule({"schedule": "0 14 * * *", "duration": "1h", "until": "2027-02-01"})
    assert windows.next_after(at("2027-01-31T14:00:00")) is None
    assert windows.active(at("2027-02-01T14:10:00")) is None
    daily = schedule({"schedule": "0 23 * * *", "duration": "2h"})
    last = daily.active(at("2027-05-31T23:30:00"))
    assert last is not None and last.end == SUNSET.timestamp()  # cut at the sunset
    assert daily.next_after(at("2027-05-31T23:30:00")) is None


def test_overlapping_and_adjacent_windows_chain_into_one() -> None:
    windows = schedule(
        {"start": "2027-05-03T14:00:00Z", "duration": "1h"},
        {"start": "2027-05-03T14:30:00Z", "duration": "1h"},  # overlaps the first
        {"start": "2027-05-03T15:30:00Z", "duration": "30m"},  # starts as the second ends
        {"start": "2027-05-03T17:00:00Z", "duration": "1h"},  # a gap before it
    )
    chained = windows.active(at("2027-05-03T14:10:00"))
    assert chained is not None and chained.end == at("2027-05-03T16:00:00")
    upcoming = windows.next_after(at("2027-05-03T13:00:00"))
    assert upcoming is not None and upcoming.end == at("2027-05-03T16:00:00")
    after = windows.next_after(chained.end)
    assert after is not None and after.start == at("2027-05-03T17:00:00")


def test_a_cron_longer_than_its_period_chains_to_its_last_fire() -> None:
    windows = schedule({"schedule": "*/10 * * * *", "duration": "15m", "from": "2027-05-01",
                        "until": "2027-05-01T01:00:00Z"})  # fmt: skip
    active = windows.active(at("2027-05-01T00:05:00"))
    assert active is not None and active.end == at("2027-05-01T01:05:00")  # 00:50 + 15m


def test_a_one_off_and_a_cron_chain_together() -> None:
    windows = schedule(
        {"start": "2027-05-03T13:00:00Z", "duration": "1h"},
        {"schedule": "0 14 * * 1", "duration": "1h", "from": "2027-04-01"},
    )
    active = windows.active(at("2027-05-03T13:30:00"))
    assert active is not None and active.end == at("2027-05-03T15:00:00")


def config(**brownout_section: object) -> dict:
    section = {"deprecated_at": "2026-12-01", "sunset_at": "2027-06-01", **brownout_section}
    return {"backends": BACKENDS, "deprecation": section}


@pytest.mark.parametrize(
    ("brownout", "problem"),
    [
        ({"start": "2026-11-30T00:00:00Z", "duration": "1h"},
         "deprecation.brownouts.0.start: is before deprecated_at"),
        ({"start": "2027-06-01T00:00:00Z", "duration": "1h"},
         "deprecation.brownouts.0.start: is not before sunset_at"),
        ({"start": "2027-05-31T23:00:00Z", "duration": "2h"},
         "deprecation.brownouts.0.duration: ends after sunset_at"),
        ({"schedule": "0 14 * * 1", "duration": "1h", "from": "2026-01-01"},
         "deprecation.brownouts.0.from: is before deprecated_at"),
        ({"schedule": "0 14 * * 1", "duration": "1h", "until": "2027-07-01"},
         "deprecation.brownouts.0.until: is after sunset_at"),
        ({"schedule": "0 14 * * 1", "duration": "1h", "from": "2027-05-31T15:00:00Z"},
         "deprecation.brownouts.0.schedule: '0 14 * * 1' never fires between "
         "2027-05-31T15:00:00+00:00 and sunset_at"),
        ({"schedule": "0 0 30 2 *", "duration": "1h"},
         "deprecation.brownouts.0.schedule: '0 0 30 2 *' never fires"),
        ({"schedule": "0 14 * *", "duration": "1h"},
         "deprecation.brownouts.0.schedule: '0 14 * *' is not a cron schedule of five fields"),
        ({"schedule": "0 14 * * 1", "start": "2027-05-03T14:00:00Z", "duration": "1h"},
         "deprecation.brownouts.0: set either start"),
        ({"start": "2027-05-03T14:00:00Z", "duration": "1h", "from": "2027-05-01"},
         "deprecation.brownouts.0: from and until bound a schedule"),
        ({"start": "2027-05-03T14:00:00", "duration": "1h"},
         "deprecation.brownouts.0.start: must include a time zone"),
        ({"start": "2027-05-03T14:00:00Z", "duration": "soon"},
         "deprecation.brownouts.0.duration: 'soon' is not a duration"),
    ],
)  # fmt: skip
def test_brownouts_refused(brownout: dict, problem: str) -> None:
    good = {"start": "2027-05-01T00:00:00Z", "duration": 60}
    found = problems(config(brownouts=[good, brownout]))
    problem = problem.replace("brownouts.0", "brownouts.1")  # the index of the bad one
    assert len(found) == 1 and found[0].startswith(problem), found


def test_a_cron_without_a_sunset_is_fine_while_it_fires() -> None:
    section = DeprecationConfig(
        deprecated_at="2026-12-01", brownouts=[{"schedule": "0 14 * * 1", "duration": "1h"}]
    )
    assert section.brownouts[0].duration == 3600


@pytest.mark.parametrize("mode", ["gone", "route_to_new"])
def test_gone_and_route_to_new_need_a_sunset(mode: str) -> None:
    section = {"deprecated_at": "2026-12-01", "after_sunset": mode}
    found = problems({"backends": BACKENDS, "deprecation": section})
    assert found == [f"deprecation.after_sunset: {mode} needs sunset_at: when is the sunset?"]


def test_the_issue_example_loads_with_its_defaults() -> None:
    section = DeprecationConfig.model_validate({
        "deprecated_at": "2026-12-01", "sunset_at": "2027-06-01",
        "link": "https://example.com/migration-guide",
        "brownouts": [{"start": "2027-05-03T14:00:00Z", "duration": "12h"},
                      {"schedule": "0 14 * * 1", "duration": "1h", "from": "2027-04-01"}],
        "exempt_clients": ["partner-42"],
    })  # fmt: skip
    assert section.brownout_status == 410 and section.dry_run is False
    assert section.after_sunset is AfterSunset.KEEP
    assert section.brownouts[1].since == datetime(2027, 4, 1, tzinfo=UTC)
    with pytest.raises(ValueError):
        DeprecationConfig(deprecated_at="2026-12-01", brownout_status=500)  # type: ignore[arg-type]

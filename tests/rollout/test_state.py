from __future__ import annotations

import json
import os
from pathlib import Path

import anyio
import pytest
import yaml

from cutover.cli.main import main
from cutover.rollout import transitions
from cutover.rollout.registry import Migrations
from cutover.rollout.state import (
    RolloutState,
    SaveError,
    StateError,
    StateStore,
    Transition,
    dumps,
)
from cutover.vocabulary import Actor, Phase, Role, TransitionKind
from tests.conftest import LEGACY_URL, NEW_URL, make_settings
from tests.processes import free_port


def sample() -> RolloutState:
    return RolloutState(
        phase="progressing",
        weight=50.0,
        baseline_memory_bytes=1e8,
        history=[Transition(1.0, None, "progressing", None, 10.0, "start", "startup")],
    )


def test_round_trip(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.json")
    assert store.load() is None
    store.save({"default": sample()})
    assert store.load() == {"default": sample()}


def test_round_trip_of_two_migrations(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store = StateStore(path)
    other = RolloutState(
        phase=Phase.ROLLED_BACK,
        weight=0.0,
        reason="error_rate 0.3 > 0.05",
        failure={"check": "error_rate", "result": "fail", "value": 0.3},
        history=[Transition(2.0, Phase.PROGRESSING, Phase.ROLLED_BACK, 25.0, 0.0,
                            "error_rate 0.3 > 0.05", Actor.GUARD, TransitionKind.ROLLBACK)],
    )  # fmt: skip
    store.save({"trade-engine": sample(), "strategies": other})
    assert store.load() == {"trade-engine": sample(), "strategies": other}
    document = json.loads(path.read_text())
    assert document["version"] == 2
    assert list(document["migrations"]) == ["trade-engine", "strategies"]
    assert document["migrations"]["strategies"]["phase"] == "rolled_back"


def test_save_replaces_atomically_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "state.json"
    store = StateStore(path)
    store.save({"default": sample()})
    inode = path.stat().st_ino
    state = sample()
    state.weight = 100.0
    store.save({"default": state})
    assert path.stat().st_ino != inode  # a new file renamed over, not rewritten in place
    assert os.listdir(path.parent) == ["state.json"]
    assert json.loads(path.read_text())["migrations"]["default"]["weight"] == 100.0


def full_disk(path: Path, payload: bytes) -> None:
    raise OSError(28, "No space left on device")


def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = StateStore(tmp_path / "state.json")
    store.save({"default": sample()})

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    state = sample()
    state.weight = 0.0
    with pytest.raises(SaveError, match="No space left on device"):
        store.save({"default": state})
    assert store.load() == {"default": sample()}
    assert os.listdir(tmp_path) == ["state.json"]


def test_a_failing_writer_is_a_save_error_naming_the_file(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.json", writer=full_disk)
    with pytest.raises(SaveError) as caught:
        store.save({"default": sample()})
    assert str(caught.value) == (
        f"could not save the rollout state to {tmp_path / 'state.json'}: No space left on device"
    )
    assert store.load() is None


def test_history_is_bounded(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.json", history_limit=3)
    state = sample()
    state.history = [
        Transition(i, None, "paused", None, 1.0, str(i), "operator") for i in range(10)
    ]
    store.save({"default": state, "other": sample()})
    loaded = store.load()
    assert [t.reason for t in loaded["default"].history] == ["7", "8", "9"]
    assert loaded["other"].history == sample().history


# A state file exactly as the version before strict validation wrote it (a start, a guard
# rollback with its failing verdict, a restart): it must load unchanged.
TODAYS_FILE = """{
  "version": 1,
  "phase": "progressing",
  "weight": 10.0,
  "baseline_memory_bytes": null,
  "last_legacy_p95": 0.0075,
  "reason": "restarted by operator",
  "failure": null,
  "history": [
    {"at": 1763780000.123, "from_phase": null, "to_phase": "progressing", "from_weight": null,
     "to_weight": 10.0, "reason": "no saved state: starting", "actor": "startup",
     "kind": "start", "failure": null},
    {"at": 1763780100.5, "from_phase": "progressing", "to_phase": "rolled_back",
     "from_weight": 10.0, "to_weight": 0.0, "reason": "error_rate 0.3 > 0.05",
     "actor": "guard", "kind": "rollback",
     "failure": {"check": "error_rate", "result": "fail", "value": 0.3, "threshold": 0.05,
                 "detail": "30 of 100 requests failed", "rolls_back": true}},
    {"at": 1763780200, "from_phase": "rolled_back", "to_phase": "progressing",
     "from_weight": 0.0, "to_weight": 10, "reason": "restarted by operator",
     "actor": "operator", "kind": "restart", "failure": null}
  ]
}"""


def todays_state() -> dict:
    """TODAYS_FILE's rollout state: the file without its version."""
    return {k: v for k, v in json.loads(TODAYS_FILE).items() if k != "version"}


def test_a_file_written_by_the_previous_version_loads_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(TODAYS_FILE)
    states = StateStore(path).load()
    assert states is not None and list(states) == ["default"]
    state = states["default"]
    assert state.to_json() == todays_state()
    assert [t.kind for t in state.history] == ["start", "rollback", "restart"]
    assert state.history[1].failure["check"] == "error_rate"


def test_the_next_save_writes_version_2_with_the_previous_history_kept(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(TODAYS_FILE)
    store = StateStore(path)
    states = store.load()
    assert states is not None
    _, paused = transitions.pause(states["default"], 1763780300.0)
    store.save({"default": paused})
    document = json.loads(path.read_text())
    assert document["version"] == 2 and list(document["migrations"]) == ["default"]
    saved = document["migrations"]["default"]
    assert saved["history"][:3] == todays_state()["history"]
    assert [t["kind"] for t in saved["history"]] == ["start", "rollback", "restart", "pause"]
    assert (saved["phase"], saved["weight"]) == ("paused", 10.0)
    assert store.load() == {"default": paused}


def test_the_vocabularies_load_as_their_enums_and_are_written_as_before(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(TODAYS_FILE)
    loaded = StateStore(path).load()
    assert loaded is not None
    state = loaded["default"]
    assert state.phase is Phase.PROGRESSING
    rollback = state.history[1]
    assert (rollback.from_phase, rollback.to_phase) == (Phase.PROGRESSING, Phase.ROLLED_BACK)
    assert rollback.actor is Actor.GUARD and rollback.kind is TransitionKind.ROLLBACK
    assert state.history[0].from_phase is None
    # Saved again, the file holds the same state, each enum written as its string.
    StateStore(path).save({"default": state})
    assert json.loads(path.read_text()) == {"version": 2, "migrations": {"default": todays_state()}}
    as_strings = json.loads(json.dumps(state.to_json()))
    assert type(as_strings["phase"]) is str
    of_strings = RolloutState(
        **{**as_strings, "history": [Transition(**t) for t in as_strings["history"]]}
    )
    assert type(of_strings.phase) is str
    assert path.read_text() == dumps({"default": state}) == dumps({"default": of_strings})


def test_a_console_action_keeps_its_role_and_others_are_written_as_before(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.json"
    paused = Transition(3.0, Phase.PROGRESSING, Phase.PAUSED, 50.0, 50.0, "paused by operator",
                        Actor.OPERATOR, TransitionKind.PAUSE, role=Role.ADMIN)  # fmt: skip
    state = sample()
    state.history.append(paused)
    StateStore(path).save({"default": state})
    saved = json.loads(path.read_text())["migrations"]["default"]["history"]
    assert "role" not in saved[0] and saved[1]["role"] == "admin"
    loaded = StateStore(path).load()
    assert loaded is not None and loaded["default"].history[1].role is Role.ADMIN
    saved[1]["role"] = "root"
    path.write_text(json.dumps({"version": 2, "migrations": {"default": {
        **state.to_json(), "history": saved}}}))  # fmt: skip
    with pytest.raises(StateError, match=r"history\.1\.role"):
        StateStore(path).load()


def test_a_removed_migrations_state_stays_when_another_migration_saves(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    retired = sample()
    StateStore(path).save({"default": sample(), "retired": retired})
    before = json.loads(path.read_text())["migrations"]["retired"]
    # The config names only the default migration: "retired" was removed by an edit.
    settings = make_settings(
        rollout={"stages": [10, 50, 100], "hold": 60}, state={"path": str(path)}
    )
    migrations = Migrations.restore(settings, StateStore(path))
    assert migrations.names == ["default"]
    anyio.run(migrations.get("default").pause)
    document = json.loads(path.read_text())
    assert document["migrations"]["default"]["phase"] == "paused"
    assert document["migrations"]["retired"] == before
    assert StateStore(path).load()["retired"] == retired


def with_history_entry(**change: object) -> str:
    data = json.loads(TODAYS_FILE)
    data["history"].append({**data["history"][2], **change})
    return json.dumps(data)


def with_migration_entry(name: str, **change: object) -> str:
    """A version-2 file of two migrations, ``name``'s history gaining an entry."""
    entry = json.loads(with_history_entry(**change))
    del entry["version"]
    states = {other: todays_state() for other in ("trade-engine", "strategies")}
    return json.dumps({"version": 2, "migrations": {**states, name: entry}})


PHASE_PROBLEM = (
    "phase: Input should be 'progressing', 'paused', 'promoted', 'rolled_back' or 'manual'"
)


@pytest.mark.parametrize(
    ("content", "problems"),
    [
        ("[]", ["must be a JSON object, got list"]),
        ('{"version": 99, "phase": "paused", "weight": 1}',
         ["version: unsupported state version 99 (this Cutover reads versions 1 and 2)"]),
        ('{"version": 1, "phase": "dancing", "weight": 1}',
         ["phase: Input should be 'progressing', 'paused', 'promoted', 'rolled_back' or 'manual'"]),
        ('{"version": 1, "phase": "paused", "weight": 400}',
         ["weight: must be between 0 and 100"]),
        ('{"version": 1, "phase": "paused"}', ["weight: required"]),
        ('{"version": 1, "phase": "paused", "weight": 1, "wieght": 2}', ["wieght: unknown key"]),
        # strict types: what /status shows is not what the file holds, and nothing is coerced
        (with_history_entry(at="2025-11-22T02:38:00.000Z"),
         ["history.3.at: Input should be a valid number"]),
        ('{"version": 1, "phase": "paused", "weight": "10.0"}',
         ["weight: Input should be a valid number"]),
        ('{"version": 1, "phase": "paused", "weight": true}',
         ["weight: Input should be a valid number"]),
        ('{"version": 1, "phase": "paused", "weight": NaN}',
         ["weight: Input should be a finite number"]),
        (with_history_entry(kind="teleport", actor="someone"),
         ["history.3.actor: Input should be 'guard', 'operator' or 'startup'",
          "history.3.kind: Input should be 'start', 'promote', 'rollback', 'pause', 'resume', "
          "'restart' or 'set_weight'"]),
        # the vocabularies take the file's strings and nothing else
        ('{"version": 1, "phase": 1, "weight": 1}', [PHASE_PROBLEM]),
        ('{"version": 1, "phase": null, "weight": 1}', [PHASE_PROBLEM]),
        ('{"version": 1, "phase": ["paused"], "weight": 1}', [PHASE_PROBLEM]),
        ('{"version": 1, "phase": "PAUSED", "weight": 1}', [PHASE_PROBLEM]),
        (with_history_entry(from_phase=True, actor=0, kind=None),
         ["history.3.from_phase: " + PHASE_PROBLEM.removeprefix("phase: "),
          "history.3.actor: Input should be 'guard', 'operator' or 'startup'",
          "history.3.kind: Input should be 'start', 'promote', 'rollback', 'pause', 'resume', "
          "'restart' or 'set_weight'"]),
        # version 2: each problem named inside its migration
        (with_migration_entry("trade-engine", at="2025-11-22T02:38:00.000Z"),
         ["migrations.trade-engine.history.3.at: Input should be a valid number"]),
        (with_migration_entry("strategies", to_weight=140),
         ["migrations.strategies.history.3.to_weight: must be between 0 and 100"]),
        ('{"version": 2, "migrations": {"a": {"phase": "paused"}}}',
         ["migrations.a.weight: required"]),
        ('{"version": 2}', ["migrations: required"]),
        ('{"version": 2, "migrations": {}, "phase": "paused"}', ["phase: unknown key"]),
        ('{"version": 2, "migrations": []}',
         ["migrations: Input should be a valid dictionary"]),
        ('{"version": 1, "phase": "paused", "weight": 1, "history": [{"x": 1}]}',
         ["history.0.at: required", "history.0.from_phase: required",
          "history.0.to_phase: required", "history.0.from_weight: required",
          "history.0.to_weight: required", "history.0.reason: required",
          "history.0.actor: required", "history.0.x: unknown key"]),
    ],
)  # fmt: skip
def test_unusable_files_are_errors_naming_each_field(
    tmp_path: Path, content: str, problems: list[str]
) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(StateError) as caught:
        StateStore(path).load()
    assert caught.value.problems == problems
    assert caught.value.path == path
    assert str(path) in str(caught.value)


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{not json")
    with pytest.raises(StateError, match="not valid JSON") as caught:
        StateStore(path).load()
    assert caught.value.problems[0].startswith(f"{path} is not valid JSON")


def test_cutover_run_refuses_a_state_file_with_a_wrong_type(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before strict validation this file loaded; then /status answered 500 and every
    guard evaluation raised, so automatic rollback stopped without a word."""
    state = tmp_path / "state.json"
    state.write_text(with_history_entry(at="2025-11-22T02:38:00.000Z"))
    config = tmp_path / "cutover.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "listen": {"host": "127.0.0.1", "port": free_port()},
                "admin": {"host": "127.0.0.1", "port": free_port()},
                "backends": {"legacy": {"url": LEGACY_URL}, "new": {"url": NEW_URL}},
                "state": {"path": str(state)},
            }
        )
    )
    assert main(["run", "--config", str(config)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "state: history.3.at: Input should be a valid number",
        f"state: fix or move {state} away to start fresh (its history is lost then)",
    ]


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.mkdir()
    with pytest.raises(StateError, match="cannot read"):
        StateStore(path).load()

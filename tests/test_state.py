from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from proxy.state import RolloutState, StateError, StateStore, Transition


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
    store.save(sample())
    loaded = store.load()
    assert loaded == sample()


def test_save_replaces_atomically_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "state.json"
    store = StateStore(path)
    store.save(sample())
    inode = path.stat().st_ino
    state = sample()
    state.weight = 100.0
    store.save(state)
    assert path.stat().st_ino != inode  # a new file renamed over, not rewritten in place
    assert os.listdir(path.parent) == ["state.json"]
    assert json.loads(path.read_text())["weight"] == 100.0


def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = StateStore(tmp_path / "state.json")
    store.save(sample())

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    state = sample()
    state.weight = 0.0
    with pytest.raises(OSError):
        store.save(state)
    assert store.load() == sample()
    assert os.listdir(tmp_path) == ["state.json"]


def test_history_is_bounded(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.json", history_limit=3)
    state = sample()
    state.history = [
        Transition(i, None, "paused", None, 1.0, str(i), "operator") for i in range(10)
    ]
    store.save(state)
    assert [t.reason for t in store.load().history] == ["7", "8", "9"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "not a JSON object"),
        ('{"version": 99, "phase": "paused", "weight": 1}', "unsupported state version"),
        ('{"version": 1, "phase": "dancing", "weight": 1}', "unknown phase"),
        ('{"version": 1, "phase": "paused", "weight": 400}', "not between 0 and 100"),
        ('{"version": 1, "phase": "paused"}', "malformed"),
        ('{"version": 1, "phase": "paused", "weight": 1, "history": [{"x": 1}]}', "malformed"),
    ],
)
def test_unusable_files_are_errors_not_resets(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(StateError, match=message):
        StateStore(path).load()


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.mkdir()
    with pytest.raises(StateError, match="cannot read"):
        StateStore(path).load()

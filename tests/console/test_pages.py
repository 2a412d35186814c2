"""The pages' parts that need a fleet on Redis or a dual run, rendered from documents."""

from __future__ import annotations

from pathlib import Path

from cutover.console.app import HERE
from cutover.console.pages import Pages
from cutover.console.samples import Sampler
from cutover.request.metrics import Metrics


def pages() -> Pages:
    sampler = Sampler(Metrics(), lambda: {})
    return Pages(None, lambda: None, sampler, HERE / "templates", None, None)  # type: ignore[arg-type]


def test_with_redis_the_overview_names_the_hosts_and_the_guard_leader() -> None:
    fleet = {
        "backend": "redis",
        "hosts": [
            {"id": "host-a", "proxy": "10.0.0.1:8080", "admin": "10.0.0.1:9180",
             "version": "0.1.0", "last_seen": "2026-12-01T19:00:00Z", "local": True},
            {"id": "host-b", "proxy": "10.0.0.2:8080", "admin": "10.0.0.2:9180",
             "version": "0.1.0", "last_seen": "2026-12-01T19:00:01Z", "local": False},
        ],
        "leader": {"host": "host-b", "epoch": 7},
    }  # fmt: skip
    html = pages().render("_fleet.html", fleet=fleet)
    assert 'id="leader">host-b</strong> (epoch 7)' in html
    assert "host-a (this one)" in html and "host-b</td>" in html
    assert "2026-12-01 19:00:01 UTC" in html
    # The file backend's one host: no fleet block.
    assert pages().render("_fleet.html", fleet={**fleet, "backend": "file"}).strip() == ""


def test_what_an_attacker_names_is_escaped(tmp_path: Path) -> None:
    history = [{"at": "2026-12-01T19:00:00Z", "kind": "rollback", "actor": "operator",
                "role": "admin", "from_phase": "progressing", "from_weight": 25.0,
                "to_phase": "rolled_back", "to_weight": 0.0, "host": None, "failure": None,
                "reason": "<script>alert(1)</script>"}]  # fmt: skip
    html = pages().render("_history.html", history=history)
    assert "<script>" not in html and "&lt;script&gt;" in html

"""The splitter's cohorts: after the override header and a route's pin, before the weight;
the rollback rule; the decision's cohort label."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cutover.request import cohorts as cohorts_module
from cutover.request.splitter import Splitter
from cutover.vocabulary import Phase
from tests.conftest import make_settings

BETA = {"header": {"X-Beta-Tester": "yes"}, "backend": "new", "name": "beta"}
V1 = {"query": {"version": "1"}, "backend": "legacy"}
CANARY = {"cookie": {"canary": "1"}, "backend": "new", "survive_rollback": True}


def splitter(*cohorts: dict[str, Any], weight: float = 0, **sections: Any) -> Splitter:
    engine = {"name": "trade-engine", "match": {"prefix": "/api/"}, "from": "legacy",
              "to": "new", "weight": weight, "cohorts": list(cohorts)}  # fmt: skip
    plain = {"name": "strategies", "match": {"prefix": "/strategies/"}, "from": "legacy",
             "to": "new", "weight": weight}  # fmt: skip
    return Splitter(make_settings(migrations=[engine, plain], **sections))


def decide(s: Splitter, path: str = "/api/x", headers=(), query: bytes = b"",
           client=("10.0.0.1", 5000)):  # fmt: skip
    return s.decide(path, "GET", list(headers), client, query)


def test_a_cohort_decides_before_the_weight() -> None:
    s = splitter(BETA, V1, weight=100)
    beta = decide(s, headers=[(b"x-beta-tester", b"yes")])
    assert (beta.backend, beta.reason, beta.cohort) == ("new", "cohort", "beta")
    assert beta.label == "trade-engine"  # counted for the migration: the guard sees it
    pinned_back = decide(s, query=b"version=1")
    assert (pinned_back.backend, pinned_back.cohort) == ("legacy", "1")
    rest = decide(s)
    assert (rest.backend, rest.reason, rest.cohort) == ("new", "weight", "weight")


def test_the_override_header_still_wins() -> None:
    s = splitter(BETA)
    headers = [(b"x-beta-tester", b"yes"), (b"x-cutover-backend", b"legacy")]
    decision = decide(s, headers=headers)
    assert (decision.backend, decision.reason, decision.cohort) == ("legacy", "override", "weight")


def test_a_routes_pin_wins_over_a_cohort_and_a_cohort_over_a_routes_weight() -> None:
    routes = [{"prefix": "/api/pinned", "backend": "legacy"}, {"prefix": "/api/half", "weight": 0}]
    s = splitter(BETA, routes=routes)
    beta = [(b"x-beta-tester", b"yes")]
    assert decide(s, "/api/pinned/1", beta).reason == "pin"
    assert decide(s, "/api/half/1", beta).backend == "new"


def test_cohorts_belong_to_their_migration() -> None:
    s = splitter(BETA)
    other = decide(s, "/strategies/1", [(b"x-beta-tester", b"yes")])
    assert (other.backend, other.cohort) == ("legacy", "weight")


def test_a_rolled_back_migration_sends_its_cohorts_to_from_unless_they_survive() -> None:
    s = splitter(BETA, CANARY, {"network": ["10.0.0.0/8"], "backend": "legacy"})
    beta, canary = [(b"x-beta-tester", b"yes")], [(b"cookie", b"canary=1")]
    s.set_phase("trade-engine", Phase.ROLLED_BACK)
    rolled = decide(s, headers=beta)
    # A broken backend is broken for beta testers too; the label still says who they are.
    assert (rolled.backend, rolled.reason, rolled.cohort) == ("legacy", "cohort", "beta")
    assert decide(s, headers=canary).backend == "new"  # survive_rollback
    assert decide(s).backend == "legacy"  # a cohort for from stays on from
    s.set_phase("trade-engine", Phase.PROGRESSING)
    assert decide(s, headers=beta).backend == "new"
    s.set_phase("unknown", Phase.ROLLED_BACK)  # ignored, like set_weight


@pytest.mark.parametrize("phase", [p for p in Phase if p != Phase.ROLLED_BACK])
def test_only_a_rollback_moves_cohorts(phase: Phase) -> None:
    s = splitter(BETA)
    s.set_phase("trade-engine", phase)
    assert decide(s, headers=[(b"x-beta-tester", b"yes")]).backend == "new"


@pytest.mark.parametrize(
    ("sticky", "headers", "client"),
    [
        ("header:X-User-Id", [(b"x-user-id", b"alice")], ("10.0.0.9", 1)),
        ("cookie:uid", [(b"cookie", b"uid=alice")], ("10.0.0.9", 1)),
        ("client_ip", [], ("192.0.2.10", 1)),
    ],
)
def test_a_users_file_lists_sticky_keys(tmp_path: Path, sticky: str, headers, client) -> None:
    users = tmp_path / "users.txt"
    users.write_text("alice\n192.0.2.10\n")
    s = splitter({"users_file": str(users), "backend": "new"}, split={"sticky": sticky})
    assert decide(s, headers=headers, client=client).cohort == "0"
    assert decide(s, client=("10.0.0.9", 1)).cohort == "weight"


def test_a_fresh_sticky_cookie_is_never_in_a_users_file(tmp_path: Path) -> None:
    users = tmp_path / "users.txt"
    users.write_text("alice\n")
    s = splitter({"users_file": str(users), "backend": "new"}, split={"sticky": "cookie:uid"})
    decision = decide(s)
    assert decision.set_cookie is not None and decision.cohort == "weight"


def test_no_query_is_parsed_for_a_migration_without_query_cohorts(monkeypatch) -> None:
    def refuse(query: bytes, wanted: frozenset[bytes]) -> dict:
        raise AssertionError("the query was parsed")

    monkeypatch.setattr(cohorts_module, "query_values", refuse)
    s = splitter(BETA)
    assert decide(s, query=b"version=1").backend == "legacy"
    assert decide(s, "/strategies/1", query=b"version=1").backend == "legacy"
    assert splitter().migrations["trade-engine"].cohorts is None

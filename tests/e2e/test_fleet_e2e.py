"""A fleet end to end: three ``cutover run`` hosts sharing one real ``redis-server``
(``state.backend: redis``), over the demo backends. What one host does, every host sees
within a second; one guard leader, handed over when it dies or stalls; Redis down is served
around (fail static); two operators at once never lose a change silently.

A fast config: guard interval 1 s, lease 2 s, poll 0.5 s, holds of 2 s. Every wait polls
with a deadline; the deadlines the brief sets (1 s to follow, lease + one interval to lead)
are asserted as measured, with a little room for a busy machine where said.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.processes import (
    Backends,
    ProxyPorts,
    ProxyProcess,
    TrafficDriver,
    running_backends,
    wait_until,
    write_config,
)
from tests.redis_server import RedisServer, running_redis

pytestmark = pytest.mark.e2e

ADMIN_TOKEN = "fleet-admin-token-0123456789"
FAULTS_TOKEN = "fleet-faults-token-0123456789"
PREFIX = "cutover:e2e"
NAME = "default"
INTERVAL = 1.0
LEASE = 2.0
POLL = 0.5
HOLD = 2.0
FOLLOW = 1.0  # the brief: every host follows within a second
SLACK = 0.75  # for a busy machine, on the deadlines measured from outside the processes
GUARD_DEADLINE = 30.0  # for anything the guard decides (normally a few seconds)
HOSTS = ("a", "b", "c")


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backends]:
    with running_backends(tmp_path_factory.mktemp("backends"), FAULTS_TOKEN) as running:
        yield running


@dataclass
class Fleet:
    backends: Backends
    redis_server: RedisServer
    tmp_path: Path
    hosts: dict[str, ProxyProcess] = field(default_factory=dict)
    drivers: list[TrafficDriver] = field(default_factory=list)

    def config(self, name: str, ports: ProxyPorts) -> dict[str, Any]:
        legacy, new = self.backends.legacy.url, self.backends.new.url
        return {
            "listen": {"host": "127.0.0.1", "port": ports.listen},
            "admin": {"host": "127.0.0.1", "port": ports.admin},
            "backends": {
                "legacy": {"url": legacy, "metrics_url": f"{legacy}/metrics"},
                "new": {"url": new, "metrics_url": f"{new}/metrics"},
            },
            "split": {"weight": 10, "sticky": "header:X-User-Id"},
            "rollout": {"stages": [10, 50, 100], "hold": HOLD},
            "guard": {"interval": INTERVAL, "window": 3, "min_requests": 10},
            "state": {
                "backend": "redis",
                "url": self.redis_server.url,
                "key_prefix": PREFIX,
                "cache_path": str(self.tmp_path / name / "cache.json"),
                "poll": POLL,
                "lease": LEASE,
                "host_id": name,
            },
        }

    def prepare(self, name: str) -> ProxyProcess:
        directory = self.tmp_path / name
        directory.mkdir(exist_ok=True)
        ports = ProxyPorts.pick()
        config_path = directory / "cutover.yaml"
        write_config(config_path, self.config(name, ports))
        proxy = ProxyProcess(directory, config_path, ports, ADMIN_TOKEN)
        proxy.companions = [self.backends.legacy, self.backends.new]
        self.hosts[name] = proxy
        return proxy

    def start(self, *names: str) -> list[ProxyProcess]:
        """Start the hosts side by side; return once every one is ready."""
        proxies = [self.prepare(name) for name in names]
        for proxy in proxies:
            proxy.spawn()
        for proxy in proxies:
            proxy.wait_http_ok(f"{proxy.admin_url}/readyz")
        return proxies

    def drive(self, *names: str) -> list[TrafficDriver]:
        drivers = [TrafficDriver(self.hosts[n].url, rate=50.0, workers=4) for n in names]
        for driver in drivers:
            driver.start()
        self.drivers += drivers
        return drivers

    def state(self, name: str) -> dict[str, Any]:
        return self.hosts[name].migrations()[NAME]

    def states(self, names: tuple[str, ...] = HOSTS) -> dict[str, dict[str, Any]]:
        return {name: self.state(name) for name in names}

    def leader(self) -> tuple[str, int] | None:
        value = redis.Redis.from_url(self.redis_server.url).get(f"{PREFIX}:guard:leader")
        if value is None:
            return None
        host, _, epoch = value.decode().rpartition(" ")
        return host, int(epoch)

    def seen_by_all(
        self, what: str, check: Any, names: tuple[str, ...] = HOSTS, within: float = FOLLOW
    ) -> float:
        """Seconds until ``check(state)`` holds on every host in ``names``."""
        start = time.monotonic()
        processes = [self.hosts[n] for n in names]
        wait_until(
            lambda: all(check(self.state(n)) for n in names), within, what, *processes,
            interval=0.02,
        )  # fmt: skip
        return time.monotonic() - start


@pytest.fixture
def fleet(backends: Backends, tmp_path: Path) -> Iterator[Fleet]:
    backends.faults.clear()
    with running_redis(tmp_path / "redis") as server:
        harness = Fleet(backends, server, tmp_path)
        try:
            yield harness
        finally:
            for driver in harness.drivers:
                driver.stop()
            for proxy in harness.hosts.values():
                proxy.signal_group(signal.SIGCONT)
                proxy.close()
            backends.faults.clear()


def failures(driver: TrafficDriver, since: float = 0.0) -> dict[tuple[str, int], int]:
    return {k: n for k, n in driver.count(since).items() if k[1] >= 500 or k[1] == 0}


def steps(state: dict[str, Any]) -> list[tuple[str, float]]:
    return [(t["kind"], t["to_weight"]) for t in state["history"]]


def test_a_promotion_and_a_rollback_through_one_host_are_seen_by_all(fleet: Fleet) -> None:
    fleet.start(*HOSTS)
    assert {n: (s["phase"], s["weight"]) for n, s in fleet.states().items()} == {
        n: ("progressing", 10) for n in HOSTS
    }
    # One start for the fleet, by whichever host came first; the others took its state.
    assert [t["kind"] for t in fleet.state("a")["history"]] == ["start"]

    promote = fleet.hosts["b"].admin.post(f"/migrations/{NAME}/promote")
    assert promote.status_code == 200, promote.text
    took = fleet.seen_by_all("the promotion on every host", lambda s: s["weight"] == 50)
    print(f"promotion seen by all in {took:.3f}s")

    rollback = fleet.hosts["b"].admin.post(f"/migrations/{NAME}/rollback", json={"reason": "no"})
    assert rollback.status_code == 200, rollback.text
    took = fleet.seen_by_all("the rollback on every host", lambda s: s["phase"] == "rolled_back")
    print(f"rollback seen by all in {took:.3f}s")
    states = fleet.states()
    assert all(s["weight"] == 0 for s in states.values()), states
    last = states["a"]["history"][-1]
    assert (last["kind"], last["actor"], last["host"]) == ("rollback", "operator", "b"), last
    assert states["a"]["history"] == states["c"]["history"] == states["b"]["history"]
    # The routing follows too: every user goes to legacy through every host.
    for name in HOSTS:
        reply = httpx.get(f"{fleet.hosts[name].url}/api/v1/strategies", headers={"X-User-Id": "u1"})
        assert reply.headers["x-cutover-backend"] == "legacy", (name, reply.headers)


def test_kill_9_of_the_leader_hands_the_lead_on_and_the_rollout_continues(fleet: Fleet) -> None:
    fleet.start(*HOSTS)
    drivers = fleet.drive(*HOSTS)
    fleet.seen_by_all("the first promotion", lambda s: s["weight"] == 50, within=GUARD_DEADLINE)
    leader = fleet.leader()
    assert leader is not None
    old, epoch = leader
    assert fleet.hosts[old].metric("cutover_guard_leader") == 1
    others = tuple(n for n in HOSTS if n != old)
    assert all(fleet.hosts[n].metric("cutover_guard_leader") == 0 for n in others)

    fleet.hosts[old].kill9()
    killed = time.monotonic()
    new_leader = wait_until(
        lambda: (found := fleet.leader()) and found[0] != old and found,
        LEASE + INTERVAL + 5, "another host to lead", *fleet.hosts.values(), interval=0.02,
    )  # fmt: skip
    took = time.monotonic() - killed
    print(f"{new_leader[0]} leads {took:.2f}s after kill -9 of {old}")
    assert took <= LEASE + INTERVAL + SLACK, took
    assert new_leader[1] > epoch
    assert new_leader[0] in others

    # From where it was: on to 100, never back through 10; the promotion is the new leader's.
    fleet.seen_by_all(
        "the promotion to 100 on the survivors", lambda s: s["phase"] == "promoted",
        names=others, within=GUARD_DEADLINE,
    )  # fmt: skip
    state = fleet.state(others[0])
    assert steps(state) == [("start", 10), ("promote", 50), ("promote", 100)], state["history"]
    assert state["history"][-1]["host"] == new_leader[0]
    for name, driver in zip(HOSTS, drivers, strict=True):
        if name != old:
            assert not failures(driver), (name, failures(driver))


def test_a_frozen_leader_loses_the_lead_and_changes_nothing_when_it_wakes(fleet: Fleet) -> None:
    fleet.start(*HOSTS)
    leader = wait_until(fleet.leader, LEASE + INTERVAL + 5, "a leader", *fleet.hosts.values())
    old, epoch = leader
    others = tuple(n for n in HOSTS if n != old)
    before = fleet.state(others[0])

    fleet.hosts[old].signal_group(signal.SIGSTOP)
    frozen = time.monotonic()
    try:
        new_leader = wait_until(
            lambda: (found := fleet.leader()) and found[0] != old and found,
            LEASE + INTERVAL + 5, "another host to lead", *fleet.hosts.values(), interval=0.02,
        )  # fmt: skip
        print(f"{new_leader[0]} leads {time.monotonic() - frozen:.2f}s after {old} froze")
        assert new_leader[1] > epoch
        # Frozen well past its lease.
        time.sleep(max(0.0, frozen + LEASE + 1.0 - time.monotonic()))
    finally:
        fleet.hosts[old].signal_group(signal.SIGCONT)
    woke = time.monotonic()

    # Awake, it finds the newer epoch: it does not lead, and it writes nothing.
    woken = fleet.hosts[old]
    wait_until(
        lambda: woken.metric("cutover_guard_leader") == 0, LEASE + INTERVAL + 5,
        "the woken host to know it does not lead", woken,
    )  # fmt: skip
    wait_until(
        lambda: woken.metric("cutover_guard_checks_total") > 0, GUARD_DEADLINE,
        "the woken host's guard to run again", woken,
    )  # fmt: skip
    time.sleep(max(0.0, woke + 3 * INTERVAL - time.monotonic()))  # three of its evaluations
    assert fleet.leader() == new_leader
    states = fleet.states()
    assert all(s["history"] == before["history"] for s in states.values()), states
    assert not any(t.get("host") == old for t in before["history"][1:])
    fenced = woken.metric("cutover_state_writes_total", result="fenced")
    print(f"the woken leader's fenced writes: {fenced:g}")


def test_redis_down_under_load_is_served_around_and_the_fleet_converges_after(
    fleet: Fleet,
) -> None:
    fleet.start(*HOSTS)
    drivers = fleet.drive("a", "c")
    fleet.redis_server.stop()
    outage = time.monotonic()
    held = {n: (s["phase"], s["weight"]) for n, s in fleet.states().items()}
    assert len(set(held.values())) == 1, held

    # The store is named in the 503; nothing changes.
    response = fleet.hosts["a"].admin.post(f"/migrations/{NAME}/pause")
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert fleet.redis_server.url in response.json()["detail"], response.json()
    weight = fleet.hosts["c"].admin.put(f"/migrations/{NAME}/weight", json={"weight": 70})
    assert weight.status_code == 503, weight.text
    wait_until(
        lambda: all(fleet.hosts[n].metric("cutover_state_store_up") == 0 for n in HOSTS),
        POLL + 5, "every host to see the store down", *fleet.hosts.values(),
    )  # fmt: skip

    # A host started during the outage serves from its cache; one with no cache refuses.
    fleet.hosts["b"].kill9()
    fleet.hosts["b"].restart()
    assert (fleet.state("b")["phase"], fleet.state("b")["weight"]) == held["b"]
    reply = httpx.get(f"{fleet.hosts['b'].url}/api/v1/strategies", headers={"X-User-Id": "u1"})
    assert reply.status_code == 200, reply.text
    fresh = fleet.prepare("fresh")
    fresh.spawn()
    assert fresh.popen is not None
    assert fresh.popen.wait(20) == 2
    assert "state: redis unreachable and no cached state" in fresh.stderr(), fresh.stderr()
    del fleet.hosts["fresh"]

    # Long enough that a healthy rollout would have been promoted: judging its own
    # traffic alone, a host with traffic tries (a full window, then a hold), and is refused.
    refused = "the promote by guard was not made"
    wait_until(
        lambda: any(refused in fleet.hosts[n].stderr() for n in ("a", "c")), GUARD_DEADLINE,
        "a promotion tried and refused during the outage", *fleet.hosts.values(),
    )  # fmt: skip
    # The outage: at least 10 s under load.
    wait_until(lambda: time.monotonic() - outage >= 10, 15, "the outage to last 10 s")
    assert {n: (s["phase"], s["weight"]) for n, s in fleet.states().items()} == held
    for name, driver in zip(("a", "c"), drivers, strict=True):
        assert not failures(driver), (name, failures(driver))
        assert len(driver.since(outage)) > 100, (name, len(driver.since(outage)))

    fleet.redis_server.start()
    back = time.monotonic()
    wait_until(
        lambda: all(fleet.hosts[n].metric("cutover_state_store_up") == 1 for n in HOSTS),
        POLL + 5, "every host to see the store again", *fleet.hosts.values(), interval=0.02,
    )  # fmt: skip
    took = time.monotonic() - back
    print(f"every host sees Redis {took:.2f}s after it is back")
    assert took <= POLL + SLACK, took
    # Operator actions work again, on the host started from its cache too.
    response = fleet.hosts["b"].admin.post(f"/migrations/{NAME}/pause")
    assert response.status_code == 200, response.text
    fleet.seen_by_all("the pause after the outage", lambda s: s["phase"] == "paused")
    for name, driver in zip(("a", "c"), drivers, strict=True):
        assert not failures(driver), (name, failures(driver))


def test_a_rollback_judged_alone_during_the_outage_is_written_back_and_followed(
    fleet: Fleet,
) -> None:
    fleet.start(*HOSTS)
    drivers = fleet.drive("a", "c")
    fleet.redis_server.stop()
    fleet.backends.faults.set(error_rate=0.5)
    # Towards legacy on its own verdict: allowed alone, and routed at once.
    rolled = wait_until(
        lambda: [n for n in ("a", "c") if fleet.state(n)["phase"] == "rolled_back"],
        GUARD_DEADLINE, "a host to roll back alone", *fleet.hosts.values(),
    )  # fmt: skip
    assert fleet.state("b")["phase"] == "progressing"  # no traffic, no verdict: it waits
    fleet.backends.faults.clear()

    fleet.redis_server.start()
    took = fleet.seen_by_all(
        "the held rollback on every host", lambda s: s["phase"] == "rolled_back",
        within=POLL + 5,
    )  # fmt: skip
    print(f"the rollback held by {rolled} reached every host {took:.2f}s after Redis was back")
    assert took <= POLL + SLACK, took

    # Two hosts that both rolled back alone: the second writes its own on top of the
    # first's (after one lost compare-and-set), and every host ends with both.
    def complete() -> dict[str, dict[str, Any]] | None:
        states = fleet.states()
        histories = [s["history"] for s in states.values()]
        hosts = {t["host"] for t in histories[0] if t["kind"] == "rollback"}
        return (
            states if set(rolled) <= hosts and all(h == histories[0] for h in histories) else None
        )

    states = wait_until(complete, 5 * POLL, "every held rollback in every host's history")
    rollbacks = [t for t in states["b"]["history"] if t["kind"] == "rollback"]
    assert {t["host"] for t in rollbacks} <= {"a", "c"}, rollbacks
    assert all(t["actor"] == "guard" for t in rollbacks), rollbacks
    assert all((s["phase"], s["weight"]) == ("rolled_back", 0) for s in states.values()), states
    for driver in drivers:
        assert not any(status == 0 for _, status in driver.count()), driver.count()


def test_two_operators_setting_weights_at_once_lose_nothing_silently(fleet: Fleet) -> None:
    fleet.start(*HOSTS)
    barrier = threading.Barrier(2)
    answers: dict[str, httpx.Response] = {}

    def set_weight(name: str, weight: int) -> None:
        with httpx.Client(
            base_url=fleet.hosts[name].admin_url, timeout=10.0, trust_env=False,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as client:  # fmt: skip
            client.get("/readyz")  # connected before the barrier
            barrier.wait(5)
            answers[name] = client.put(f"/migrations/{NAME}/weight", json={"weight": weight})

    threads = [
        threading.Thread(target=set_weight, args=("a", 30)),
        threading.Thread(target=set_weight, args=("b", 70)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    codes = {name: answer.status_code for name, answer in answers.items()}
    print(f"two operators at once: {codes}")
    assert set(codes.values()) <= {200, 409} and 200 in codes.values(), answers

    def agreed(_: dict[str, Any]) -> bool:
        histories = [s["history"] for s in fleet.states().values()]
        return all(h == histories[0] for h in histories)

    fleet.seen_by_all("every host to agree", agreed)
    state = fleet.state("c")
    made = [(t["to_weight"], t["host"]) for t in state["history"] if t["kind"] == "set_weight"]
    for name, weight in (("a", 30), ("b", 70)):
        if codes[name] == 200:
            assert (weight, name) in made, (name, state["history"])
        else:
            assert answers[name].json()["title"] == "Conflict", answers[name].text
            assert (weight, name) not in made, state["history"]
    assert state["weight"] == made[-1][0]
    assert state["phase"] == "paused"

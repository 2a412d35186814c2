from __future__ import annotations

import math
import random
import subprocess
import sys

import pytest

from cutover.request.splitter import BUCKETS, Splitter, bucket, cookie_value, threshold
from tests.conftest import make_settings


def decide(
    splitter: Splitter, path: str = "/", headers=(), client=("10.0.0.1", 5000), method="GET"
):
    return splitter.decide(path, method, list(headers), client)


def share_bound(n: int, p: float, sigmas: float = 4.5) -> float:
    return sigmas * math.sqrt(p * (1 - p) / n)


def test_bucket_is_stable_across_processes() -> None:
    keys = [b"alice", b"bob", b"user-12345", "ünïcode".encode()]
    here = [bucket(key) for key in keys]
    code = (
        "from cutover.request.splitter import bucket;"
        "print([bucket(k) for k in [b'alice', b'bob', b'user-12345', 'ünïcode'.encode()]])"
    )
    env = {"PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == str(here)
    assert all(0 <= b < BUCKETS for b in here)


@pytest.mark.parametrize("weight", [0.5, 10, 33.33, 50, 90])
def test_share_on_new_matches_weight(weight: float) -> None:
    splitter = Splitter(make_settings(split={"weight": weight, "sticky": "header:X-User-Id"}))
    n = 20_000
    on_new = sum(
        decide(splitter, headers=[(b"x-user-id", f"user-{i}".encode())]).backend == "new"
        for i in range(n)
    )
    p = weight / 100
    assert abs(on_new / n - p) <= share_bound(n, p)


def test_ramping_never_moves_a_key_back_to_legacy() -> None:
    rng = random.Random(7)
    keys = [rng.randbytes(rng.randint(1, 24)) for _ in range(2_000)]
    weights = sorted(round(rng.uniform(0, 100), 2) for _ in range(40))
    on_new: set[bytes] = set()
    for weight in weights:
        now_new = {key for key in keys if bucket(key) < threshold(weight)}
        assert on_new <= now_new, f"a key left new when the weight rose to {weight}"
        on_new = now_new
    assert {key for key in keys if bucket(key) < threshold(100)} == set(keys)
    assert not {key for key in keys if bucket(key) < threshold(0)}


def test_set_weight_is_monotone_for_one_splitter() -> None:
    splitter = Splitter(make_settings(split={"weight": 10, "sticky": "header:X-User-Id"}))
    headers = [[(b"x-user-id", f"u{i}".encode())] for i in range(3_000)]
    seen_new: set[int] = set()
    for weight in (10, 25, 50, 75, 100):
        splitter.set_weight("default", weight)
        now = {i for i, h in enumerate(headers) if decide(splitter, headers=h).backend == "new"}
        assert seen_new <= now
        seen_new = now
    assert len(seen_new) == len(headers)


def test_same_key_same_backend() -> None:
    splitter = Splitter(make_settings(split={"weight": 50, "sticky": "header:X-User-Id"}))
    for i in range(200):
        h = [(b"x-user-id", f"k{i}".encode())]
        assert len({decide(splitter, headers=h).backend for _ in range(5)}) == 1


def test_override_header_beats_pin_and_weight() -> None:
    splitter = Splitter(
        make_settings(split={"weight": 0}, routes=[{"prefix": "/v2/", "backend": "legacy"}])
    )
    forced = decide(splitter, "/v2/x", [(b"x-cutover-backend", b"new")])
    assert (forced.backend, forced.reason) == ("new", "override")
    assert decide(splitter, "/v2/x", [(b"x-cutover-backend", b"legacy")]).backend == "legacy"


@pytest.mark.parametrize("value", [b"NEW", b"always", b"", b"new "])
def test_other_override_values_are_ignored(value: bytes) -> None:
    splitter = Splitter(make_settings(split={"weight": 0}))
    decision = decide(splitter, headers=[(b"x-cutover-backend", value)])
    assert (decision.backend, decision.reason) == ("legacy", "weight")


def test_empty_override_header_disables_override() -> None:
    splitter = Splitter(make_settings(split={"weight": 0, "override_header": ""}))
    assert decide(splitter, headers=[(b"x-cutover-backend", b"new")]).backend == "legacy"


def test_route_pin_and_route_weight_first_match_wins() -> None:
    splitter = Splitter(
        make_settings(
            split={"weight": 0, "sticky": "header:X-User-Id"},
            routes=[
                {"prefix": "/api/v2/", "backend": "new"},
                {"prefix": "/api/", "weight": 100},
                {"prefix": "/api/v1/", "backend": "legacy"},
            ],
        )
    )
    pinned = decide(splitter, "/api/v2/items")
    assert (pinned.backend, pinned.reason, pinned.route) == ("new", "pin", "/api/v2/")
    # /api/ matches before /api/v1/, so its weight applies.
    weighted = decide(splitter, "/api/v1/x", [(b"x-user-id", b"u")])
    assert (weighted.backend, weighted.route) == ("new", "/api/")
    assert decide(splitter, "/other", [(b"x-user-id", b"u")]).backend == "legacy"


def test_cookie_sticky_assigns_a_cookie_when_missing() -> None:
    splitter = Splitter(make_settings(split={"weight": 50, "sticky": "cookie:cutover_id"}))
    first = decide(splitter)
    assert first.set_cookie is not None
    name, _, rest = first.set_cookie.partition(b"=")
    value, *attributes = rest.split(b"; ")
    assert name == b"cutover_id"
    assert set(attributes) == {b"Path=/", b"HttpOnly", b"SameSite=Lax"}
    for _ in range(10):
        again = decide(splitter, headers=[(b"cookie", b"other=1; cutover_id=" + value)])
        assert again.set_cookie is None
        assert again.backend == first.backend


def test_cookie_value_parsing() -> None:
    assert cookie_value(b"a=1; cutover_id=abc; b=2", b"cutover_id") == b"abc"
    assert cookie_value(b'cutover_id="q"', b"cutover_id") == b"q"
    assert cookie_value(b"Cutover_id=abc", b"cutover_id") is None
    assert cookie_value(b"cutover_id=", b"cutover_id") is None


def test_client_ip_sticky() -> None:
    splitter = Splitter(make_settings(split={"weight": 50, "sticky": "client_ip"}))
    for i in range(50):
        client = (f"10.0.{i}.1", 1000)
        first = decide(splitter, client=client).backend
        assert all(decide(splitter, client=(client[0], p)).backend == first for p in range(5))


def test_without_sticky_key_each_request_is_a_fresh_draw() -> None:
    splitter = Splitter(make_settings(split={"weight": 30, "sticky": "header:X-User-Id"}))
    n = 20_000
    on_new = sum(decide(splitter).backend == "new" for _ in range(n))
    assert abs(on_new / n - 0.3) <= share_bound(n, 0.3)


def test_weights_zero_and_hundred_are_absolute() -> None:
    for weight, expected in ((0, "legacy"), (100, "new")):
        splitter = Splitter(make_settings(split={"weight": weight, "sticky": "none"}))
        assert {decide(splitter).backend for _ in range(2_000)} == {expected}


def test_override_can_be_restricted_to_networks() -> None:
    splitter = Splitter(
        make_settings(split={"weight": 0, "override_allowed_from": ["10.0.0.0/8", "::1"]})
    )
    forced = [(b"x-cutover-backend", b"new")]
    assert decide(splitter, headers=forced, client=("10.1.2.3", 1)).backend == "new"
    assert decide(splitter, headers=forced, client=("::1", 1)).backend == "new"
    assert decide(splitter, headers=forced, client=("203.0.113.7", 1)).backend == "legacy"
    assert decide(splitter, headers=forced, client=None).backend == "legacy"
    assert decide(splitter, headers=forced, client=("testclient", 1)).backend == "legacy"


@pytest.mark.parametrize(
    ("prefix", "path", "matched"),
    [
        ("/api/v1", "/api/v1", True),
        ("/api/v1", "/api/v1/", True),
        ("/api/v1", "/api/v1/backtests", True),
        ("/api/v1", "/api/v10", False),
        ("/api/v1", "/api/v1x/y", False),
        ("/api/v1/", "/api/v1/x", True),
        ("/api/v1/", "/api/v1", False),
        ("/", "/anything", True),
    ],
)
def test_a_route_prefix_matches_on_path_segment_boundaries(
    prefix: str, path: str, matched: bool
) -> None:
    splitter = Splitter(make_settings(routes=[{"prefix": prefix, "backend": "new"}]))
    assert (splitter.route_for(path) is not None) == matched


# Several migrations: each its own prefix, methods, stickiness and weight.

V3_URL = "http://v3.test"


def migrations_splitter(**sections) -> Splitter:
    """/api/v1 moves legacy -> v3 (cookie sticky); POST /api/v1/backtests legacy -> new
    (header sticky); anything else goes to default_backend (legacy)."""
    return Splitter(
        make_settings(
            backends={"v3": {"url": V3_URL}},
            migrations=[
                {"name": "api", "match": {"prefix": "/api/v1"}, "from": "legacy", "to": "v3",
                 "sticky": "cookie:cid"},
                {"name": "engine", "match": {"prefix": "/api/v1/backtests", "methods": ["POST"]},
                 "from": "legacy", "to": "new", "sticky": "header:X-User-Id"},
            ],
            **sections,
        )
    )  # fmt: skip


def test_the_longest_matching_migration_decides() -> None:
    splitter = migrations_splitter()
    splitter.set_weight("api", 100)
    splitter.set_weight("engine", 100)
    for path, expected in [
        ("/api/v1/backtests", ("engine", "new")),
        ("/api/v1/backtests/7/run", ("engine", "new")),
        ("/api/v1/strategies", ("api", "v3")),
        ("/api/v1", ("api", "v3")),
    ]:
        decision = decide(splitter, path, method="POST")
        assert (decision.label, decision.backend) == expected, path
        assert decision.migration is not None and decision.migration.name == expected[0]
        assert decision.reason == "weight"


def test_methods_narrow_a_migration() -> None:
    splitter = migrations_splitter()
    splitter.set_weight("api", 100)
    splitter.set_weight("engine", 100)
    # Only POST is engine's: a GET under its prefix falls to the shorter prefix, api.
    assert [(d.label, d.backend) for d in (
        decide(splitter, "/api/v1/backtests/7", method="POST"),
        decide(splitter, "/api/v1/backtests/7", method="GET"),
        decide(splitter, "/api/v1/backtests/7", method="DELETE"),
    )] == [("engine", "new"), ("api", "v3"), ("api", "v3")]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("/api/v1", "api"),
        ("/api/v1/", "api"),
        ("/api/v1/x", "api"),
        ("/api/v10", "none"),
        ("/api/v1x/y", "none"),
        ("/api/v1/backtests", "engine"),
        ("/api/v1/backtestsx", "api"),  # not engine's segment: api's, one level up
        ("/api", "none"),
    ],
)
def test_migrations_match_on_path_segment_boundaries(path: str, label: str) -> None:
    splitter = migrations_splitter()
    splitter.set_weight("api", 100)
    splitter.set_weight("engine", 100)
    decision = decide(splitter, path, method="POST")
    expected = {"api": "v3", "engine": "new", "none": "legacy"}[label]
    assert (decision.label, decision.backend) == (label, expected)


def test_each_migration_has_its_own_sticky_kind() -> None:
    splitter = migrations_splitter()
    splitter.set_weight("api", 50)
    splitter.set_weight("engine", 50)
    user = [(b"x-user-id", b"alice")]
    # engine sticks by header: no cookie is handed out, and the header fixes the backend.
    engine = [decide(splitter, "/api/v1/backtests", user, method="POST") for _ in range(20)]
    assert {d.set_cookie for d in engine} == {None}
    assert len({d.backend for d in engine}) == 1
    # api sticks by cookie: the header means nothing there, and a cookie is handed out.
    first = decide(splitter, "/api/v1/strategies", user)
    assert first.set_cookie is not None and first.set_cookie.startswith(b"cid=")
    value = first.set_cookie.split(b";")[0].partition(b"=")[2]
    again = [decide(splitter, "/api/v1/x", [(b"cookie", b"cid=" + value)]) for _ in range(20)]
    assert {(d.backend, d.set_cookie) for d in again} == {(first.backend, None)}
    # With its header and no cookie, api draws afresh each time (both backends appear).
    drawn = {decide(splitter, "/api/v1/x", user).backend for _ in range(200)}
    assert drawn == {"legacy", "v3"}


def test_each_migration_has_its_own_weight() -> None:
    splitter = migrations_splitter()
    splitter.set_weight("engine", 100)
    users = [[(b"x-user-id", f"u{i}".encode())] for i in range(500)]
    on_engine = {decide(splitter, "/api/v1/backtests", h, method="POST").backend for h in users}
    on_api = {decide(splitter, "/api/v1/strategies", h).backend for h in users}
    assert (on_engine, on_api) == ({"new"}, {"legacy"})  # api stays at its weight, 0
    splitter.set_weight("api", 100)
    splitter.set_weight("engine", 0)
    on_engine = {decide(splitter, "/api/v1/backtests", h, method="POST").backend for h in users}
    on_api = {decide(splitter, "/api/v1/strategies", h).backend for h in users}
    assert (on_engine, on_api) == ({"legacy"}, {"v3"})
    splitter.set_weight("nonesuch", 100)  # an unknown migration: nothing changes
    assert decide(splitter, "/api/v1/strategies").backend == "v3"


def test_a_migration_starts_at_its_configured_weight() -> None:
    splitter = Splitter(
        make_settings(
            migrations=[{"name": "all", "match": {"prefix": "/"}, "from": "legacy", "to": "new",
                         "weight": 100}]
        )
    )  # fmt: skip
    assert {decide(splitter, f"/x/{i}").backend for i in range(200)} == {"new"}


@pytest.mark.parametrize("backend", ["legacy", "new", "v3"])
def test_the_override_header_takes_any_configured_backend(backend: str) -> None:
    splitter = migrations_splitter(routes=[{"prefix": "/api/v1/pinned", "backend": "legacy"}])
    forced = [(b"x-cutover-backend", backend.encode())]
    for path in ("/api/v1/backtests", "/api/v1/x", "/api/v1/pinned/1", "/elsewhere"):
        decision = decide(splitter, path, forced, method="POST")
        assert (decision.backend, decision.reason) == (backend, "override"), path


@pytest.mark.parametrize("value", [b"v4", b"V3", b"", b"v3 "])
def test_an_override_naming_no_configured_backend_is_ignored(value: bytes) -> None:
    splitter = migrations_splitter()
    splitter.set_weight("api", 100)
    decision = decide(splitter, "/api/v1/x", [(b"x-cutover-backend", value)])
    assert (decision.backend, decision.reason, decision.label) == ("v3", "weight", "api")


def test_a_route_pin_wins_over_the_migration_and_counts_for_none() -> None:
    splitter = migrations_splitter(routes=[{"prefix": "/api/v1/backtests/pinned", "backend": "v3"}])
    splitter.set_weight("engine", 100)
    pinned = decide(splitter, "/api/v1/backtests/pinned/1", method="POST")
    assert (pinned.backend, pinned.reason, pinned.label) == ("v3", "pin", "none")
    assert pinned.route == "/api/v1/backtests/pinned"
    beside = decide(splitter, "/api/v1/backtests/other", method="POST")
    assert (beside.backend, beside.reason, beside.label) == ("new", "weight", "engine")


def test_a_route_with_a_static_weight_splits_between_the_migrations_backends() -> None:
    splitter = migrations_splitter(routes=[{"prefix": "/api/v1/static", "weight": 50}])
    splitter.set_weight("api", 0)  # the route's weight, not the migration's, applies
    decisions = [decide(splitter, "/api/v1/static/x") for _ in range(400)]
    assert {d.backend for d in decisions} == {"legacy", "v3"}
    assert {(d.label, d.route, d.reason) for d in decisions} == {
        ("none", "/api/v1/static", "weight")
    }
    splitter.set_weight("api", 100)
    assert {decide(splitter, "/api/v1/static/x").backend for _ in range(400)} == {"legacy", "v3"}


def test_a_request_under_no_migration_goes_to_the_default_backend() -> None:
    splitter = migrations_splitter(default_backend="v3")
    decision = decide(splitter, "/health", [(b"x-user-id", b"alice")])
    assert (decision.backend, decision.reason, decision.label) == ("v3", "default", "none")
    assert decision.migration is None and decision.fallback_backend() is None
    assert decision.set_cookie is None  # no migration: nothing to stick to


def test_the_same_key_lands_in_the_same_bucket_in_every_migration() -> None:
    splitter = Splitter(
        make_settings(
            split={"sticky": "header:X-User-Id"},
            backends={"v3": {"url": V3_URL}},
            migrations=[
                {"name": "a", "match": {"prefix": "/a"}, "from": "legacy", "to": "new"},
                {"name": "b", "match": {"prefix": "/b"}, "from": "legacy", "to": "v3"},
            ],
        )
    )
    users = [[(b"x-user-id", f"user-{i}".encode())] for i in range(2_000)]

    def moved(path: str) -> set[int]:
        return {i for i, h in enumerate(users) if decide(splitter, path, h).backend != "legacy"}

    splitter.set_weight("a", 30)
    splitter.set_weight("b", 30)
    assert moved("/a/x") == moved("/b/x")  # the same users are moved in both
    assert 400 < len(moved("/a/x")) < 800
    splitter.set_weight("b", 60)
    # b's first 30 % are a's 30 %: a user moved by a is moved by b too.
    assert moved("/a/x") < moved("/b/x")

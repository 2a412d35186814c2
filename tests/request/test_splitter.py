from __future__ import annotations

import math
import random
import subprocess
import sys

import pytest

from cutover.request.splitter import BUCKETS, Splitter, bucket, cookie_value, threshold
from tests.conftest import make_settings


def decide(splitter: Splitter, path: str = "/", headers=(), client=("10.0.0.1", 5000)):
    return splitter.decide(path, list(headers), client)


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
        splitter.set_weight(weight)
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

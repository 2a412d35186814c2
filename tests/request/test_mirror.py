"""The request path's side of the dual run: the Mirror that carries the primary's answer,
the choice of requests to mirror, and the DualRun interface the shadow package fills."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest

from cutover.request.metrics import Metrics
from cutover.request.mirror import DualRun, Mirror, mirror_for
from cutover.request.splitter import Decision, MigrationRule
from cutover.shadow.mirror import Shadower
from cutover.vocabulary import ShadowResult
from tests.conftest import make_settings

SETTINGS = make_settings(
    routes=[{"prefix": "/api/", "shadow": {"sample": 1.0}}],
    shadow={"max_body": 10, "max_response_body": 8},
)
RULE = SETTINGS.routes[0].shadow
BASE_URLS = {"legacy": "http://legacy.test", "new": "http://new.test", "v3": "http://v3.test"}
DEFAULT = MigrationRule.from_config(SETTINGS.migration_list[0])
SCOPE = {"method": "GET", "path": "/api/x", "raw_path": b"/api/x", "query_string": b"q=1"}


def mirror(cap: int = 8) -> Mirror:
    return Mirror(
        migration="default",
        route="/api/",
        rule=RULE,
        method="GET",
        path="/api/x",
        query="q=1",
        headers=[],
        body=None,
        primary_backend="legacy",
        shadow_backend="new",
        shadow_url="http://new.test/api/x?q=1",
        cap=cap,
    )


def run(coroutine_function) -> Any:
    return asyncio.run(coroutine_function())


def test_the_captured_answer_is_handed_on_when_finished() -> None:
    async def main() -> Any:
        m = mirror()
        m.started(200, "application/json")
        for chunk in (b"ab", b"", b"cd"):
            m.capture(chunk)
        m.finished()
        m.failed()  # settled already: no effect
        return await m.primary

    assert run(main) == (200, "application/json", b"abcd")


def test_an_answer_over_the_cap_is_not_kept() -> None:
    async def main() -> tuple[Any, bool]:
        m = mirror(cap=3)
        m.started(200, None)
        m.capture(b"ab")
        m.capture(b"cd")
        m.capture(b"e")
        m.finished()
        return await m.primary, m.too_large

    assert run(main) == (None, True)


def test_a_failed_primary_settles_with_nothing() -> None:
    async def main() -> Any:
        m = mirror()
        m.failed()
        m.finished()
        return await m.primary

    assert run(main) is None


def test_left_is_true_only_for_an_unsettled_mirror() -> None:
    async def main() -> tuple[bool, bool, bool]:
        m, settled = mirror(), mirror()
        settled.finished()
        return m.left(), m.client_left, settled.left()

    assert run(main) == (True, True, False)


class FakeDualRun:
    def __init__(self, sampled: bool = True) -> None:
        self.config = SETTINGS.shadow
        self.draw = sampled
        self.recorded: list[tuple[str, str]] = []

    def sampled(self, rule, method: str) -> bool:
        return self.draw

    def record(self, migration: str, route: str, result: ShadowResult) -> None:
        self.recorded.append((migration, route, result))

    def start(self, mirror: Mirror) -> bool:
        return True

    def client_left(self, mirror: Mirror) -> None:
        pass

    async def aclose(self) -> None:
        pass


def decision(backend: str = "legacy", migration: MigrationRule | None = DEFAULT) -> Decision:
    label = "none" if migration is None else migration.name
    return Decision(backend, "/api/", "weight", migration, label, True, shadow=RULE)


@pytest.mark.parametrize(("primary", "shadow"), [("legacy", "new"), ("new", "legacy")])
def test_a_sampled_request_is_mirrored_to_the_other_backend(primary: str, shadow: str) -> None:
    async def main() -> Mirror | None:
        headers = [(b"accept", b"*/*")]
        return mirror_for(FakeDualRun(), SCOPE, decision(primary), headers, None, False, BASE_URLS)

    m = run(main)
    assert m is not None
    assert (m.primary_backend, m.shadow_backend) == (primary, shadow)
    assert m.shadow_url == f"http://{shadow}.test/api/x?q=1"
    assert (m.route, m.method, m.path, m.query) == ("/api/", "GET", "/api/x", "q=1")
    assert m.migration == "default"
    assert m.headers == [(b"accept", b"*/*")] and m.body is None


def test_an_unsampled_request_or_no_dual_run_is_not_mirrored() -> None:
    async def main() -> tuple[Any, Any]:
        unsampled = mirror_for(FakeDualRun(False), SCOPE, decision(), [], None, False, BASE_URLS)
        return unsampled, mirror_for(None, SCOPE, decision(), [], None, False, BASE_URLS)

    assert run(main) == (None, None)


@pytest.mark.parametrize("length", [11, None])
def test_a_body_too_big_or_unknown_to_replay_is_counted_dropped(length: int | None) -> None:
    dual_run = FakeDualRun()

    async def main() -> Any:
        return mirror_for(dual_run, SCOPE, decision(), [], length, True, BASE_URLS)

    assert run(main) is None
    assert dual_run.recorded == [("default", "/api/", ShadowResult.DROPPED)]


def test_the_mirror_goes_to_the_migrations_other_backend() -> None:
    settings = make_settings(
        backends={"v3": {"url": "http://v3.test"}},
        migrations=[{"name": "engine", "match": {"prefix": "/api"}, "from": "legacy", "to": "v3",
                     "shadow": {"sample": 1.0}}],
    )  # fmt: skip
    engine = MigrationRule.from_config(settings.migration_list[0])

    async def main() -> tuple[Any, ...]:
        found = [
            mirror_for(FakeDualRun(), SCOPE, decision(backend, engine), [], None, False,
                       BASE_URLS)
            for backend in ("legacy", "v3", "new")
        ]  # fmt: skip
        # Outside every migration there is no other backend to compare with.
        outside = mirror_for(FakeDualRun(), SCOPE, decision("legacy", None), [], None, False,
                             BASE_URLS)  # fmt: skip
        return (*found, outside)

    to_v3, to_legacy, off_migration, outside = run(main)
    assert (to_v3.primary_backend, to_v3.shadow_backend) == ("legacy", "v3")
    assert to_v3.migration == "engine"
    assert to_v3.shadow_url == "http://v3.test/api/x?q=1"
    assert (to_legacy.primary_backend, to_legacy.shadow_backend) == ("v3", "legacy")
    # An override to a backend that is not one of the migration's two: nothing to compare.
    assert (off_migration, outside) == (None, None)


def test_a_body_within_max_body_is_mirrored() -> None:
    async def main() -> Any:
        return mirror_for(FakeDualRun(), SCOPE, decision(), [], 10, True, BASE_URLS)

    assert run(main) is not None


def test_the_shadow_packages_shadower_is_a_dual_run() -> None:
    async def main() -> None:
        shadower = Shadower(SETTINGS.shadow, {}, Metrics())
        try:
            assert isinstance(shadower, DualRun)
            for name in ("sampled", "record", "start", "client_left", "aclose"):
                wanted = inspect.signature(getattr(DualRun, name)).parameters
                got = inspect.signature(getattr(Shadower, name)).parameters
                assert list(got) == list(wanted), name
        finally:
            await shadower.aclose()

    run(main)

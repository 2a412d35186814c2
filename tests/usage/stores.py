"""The behaviour both usage stores share, run against each (test_sqlite_store,
test_redis_store)."""

from __future__ import annotations

from cutover.usage.store import UsageStore, day_of
from tests.usage.rows import DAY1, row


def upserts_add_counts(store: UsageStore) -> None:
    store.write([row(count=2, first=DAY1 + 10, last=DAY1 + 20, agent="sdk/1.0")])
    store.write([row(count=3, brownouts=1, first=DAY1 + 5, last=DAY1 + 30, agent="sdk/2.0")])
    store.write([row(count=1, first=DAY1 + 15, last=DAY1 + 25, agent="sdk/0.9")])  # late
    (stored,) = store.rows_since("trade-engine", 0)
    assert (stored.count, stored.brownouts) == (6, 1)
    assert (stored.first_seen, stored.last_seen) == (DAY1 + 5, DAY1 + 30)
    assert stored.user_agent == "sdk/2.0"  # the last call's, not the last write's


def rows_since_filters(store: UsageStore) -> None:
    store.write([
        row("old", first=DAY1 - 30 * 86400, last=DAY1 - 30 * 86400),
        row("recent", last=DAY1 + 100),
        row("other", migration="strategies", last=DAY1 + 100),
    ])  # fmt: skip
    assert {r.client for r in store.rows_since("trade-engine", DAY1)} == {"recent"}
    assert {r.client for r in store.rows_since(None, DAY1)} == {"recent", "other"}
    assert {r.client for r in store.rows_since(None, 0)} == {"old", "recent", "other"}


def counts_clients_since(store: UsageStore) -> None:
    # The store's clock reads DAY1 + 1 day.
    store.write([
        row("a", last=DAY1 + 100), row("a", method="POST", last=DAY1 + 200),
        row("b", last=DAY1 + 300), row("stale", last=DAY1 - 10 * 86400),
    ])  # fmt: skip
    store.write([row("c", migration="strategies", last=DAY1 + 400)])
    assert store.clients_since(7 * 86400) == {"trade-engine": 2, "strategies": 1}
    assert store.clients_since(86400 - 350) == {"strategies": 1}  # "a" and "b" are older


def retention_drops_old_days(store: UsageStore) -> None:
    store.write([row("old", first=DAY1 - 80 * 86400, last=DAY1 - 80 * 86400),
                 row("new", last=DAY1 + 1)])  # fmt: skip
    store.delete_before(day_of(DAY1 - 79 * 86400))
    assert [r.client for r in store.rows_since(None, 0)] == ["new"]

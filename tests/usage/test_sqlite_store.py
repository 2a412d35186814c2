"""The embedded usage store (cutover.usage.sqlite_store): WAL, upserts, retention, and no
secret ever in the database file."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from cutover.config import ClientsConfig
from cutover.request.clients import ClientIdentifier
from cutover.request.usage import UsageRecorder
from cutover.usage.sqlite_store import SqliteUsageStore
from cutover.usage.store import UsageStoreError
from tests.usage import stores
from tests.usage.rows import DAY1, SECRET, row


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteUsageStore]:
    store = SqliteUsageStore(tmp_path / "usage.sqlite3", clock=lambda: DAY1 + 86400)
    yield store
    store.close()


@pytest.mark.parametrize(
    "behaviour",
    [stores.upserts_add_counts, stores.rows_since_filters, stores.counts_clients_since,
     stores.retention_drops_old_days],
)  # fmt: skip
def test_shared_behaviour(store: SqliteUsageStore, behaviour) -> None:
    behaviour(store)


def test_the_database_is_in_wal_mode(store: SqliteUsageStore) -> None:
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_counts_persist_and_a_second_store_adds_to_them(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    first = SqliteUsageStore(path)
    first.write([row(count=2)])
    second = SqliteUsageStore(path)  # another worker, or the next run
    second.write([row(count=5)])
    first.close()
    assert [r.count for r in second.rows_since(None, 0)] == [7]
    second.close()


def test_a_batch_is_all_or_nothing(store: SqliteUsageStore) -> None:
    store.write([row("a")])
    with pytest.raises(UsageStoreError):
        store.write([row("b"), row("c", count=None)])  # type: ignore[arg-type]  # NOT NULL
    assert [r.client for r in store.rows_since(None, 0)] == ["a"]


def test_an_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(UsageStoreError, match=r"usage\.path: cannot open"):
        SqliteUsageStore(tmp_path / "missing" / "usage.sqlite3")


def test_an_api_key_is_never_in_the_file(tmp_path: Path, store: SqliteUsageStore) -> None:
    """The key's bytes are nowhere in the database or its WAL, only its keyed hash."""
    identifier = ClientIdentifier(
        ClientsConfig(identify="api_key:X-API-Key", hash_key="a-hash-key-of-32-characters-0123")
    )
    client = identifier.identify([(b"x-api-key", SECRET.encode())], None)
    recorder = UsageRecorder()
    recorder.record("trade-engine", client, "GET", "/api/v1", b"sdk", False, DAY1 + 5)
    store.write(recorder.drain())
    (stored,) = store.rows_since(None, 0)
    assert (stored.client, stored.hint) == (client.key, "0042")
    files = list(tmp_path.glob("usage.sqlite3*"))
    assert files
    contents = b"".join(path.read_bytes() for path in files)
    assert client.key.encode() in contents  # the hash is what is stored ...
    assert SECRET.encode() not in contents  # ... never the key
    assert SECRET[:12].encode() not in contents

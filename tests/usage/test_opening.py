"""Which usage store the settings open: SQLite at usage.path, or the fleet's Redis."""

from __future__ import annotations

from pathlib import Path

from cutover.usage.opening import open_usage_store
from cutover.usage.redis_store import RedisUsageStore
from cutover.usage.sqlite_store import SqliteUsageStore
from tests.conftest import make_settings
from tests.redis_server import RedisServer
from tests.usage.rows import row


def test_the_file_backend_opens_sqlite(tmp_path: Path) -> None:
    store = open_usage_store(make_settings(usage={"path": str(tmp_path / "u.sqlite3")}))
    assert isinstance(store, SqliteUsageStore)
    store.close()
    assert (tmp_path / "u.sqlite3").exists()


def test_the_redis_backend_counts_in_redis(tmp_path: Path, redis_server: RedisServer) -> None:
    settings = make_settings(
        state={"backend": "redis", "url": redis_server.url, "key_prefix": "fleet:a"},
        usage={"path": str(tmp_path / "u.sqlite3")},
    )
    store = open_usage_store(settings)
    assert isinstance(store, RedisUsageStore)
    store.write([row(count=4)])
    again = open_usage_store(settings)  # another host of the fleet
    assert [r.count for r in again.rows_since(None, 0)] == [4]
    assert not (tmp_path / "u.sqlite3").exists()
    store.close()
    again.close()

"""The request path's usage recorder (cutover.request.usage): rows by migration, client,
method, prefix and day; bounded; the deprecation log's rate limit; the metric."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from cutover.request.clients import ClientId
from cutover.request.metrics import Metrics
from cutover.request.usage import OVERFLOW, UsageRecorder

DAY1 = 1_764_547_200.0  # 2025-12-01T00:00:00Z
A, B = ClientId("partner-a", None), ClientId("h:" + "0" * 32, "0042")


def record(recorder: UsageRecorder, client: ClientId, now: float, **extra) -> None:
    options = {"method": "GET", "prefix": "/api/v1", "user_agent": b"sdk/1.0", "brownout": False}
    options.update(extra)
    recorder.record("trade-engine", client, now=now, **options)


def test_calls_aggregate_by_client_method_prefix_and_day() -> None:
    recorder = UsageRecorder()
    record(recorder, A, DAY1 + 10, user_agent=b"sdk/1.0")
    record(recorder, A, DAY1 + 20, user_agent=b"sdk/2.0", brownout=True)
    record(recorder, A, DAY1 + 30, method="POST")
    record(recorder, B, DAY1 + 40)
    record(recorder, A, DAY1 + 86400 + 5)  # the next UTC day
    rows = {(r.client, r.method, r.day): r for r in recorder.drain()}
    first = rows[("partner-a", "GET", "2025-12-01")]
    assert (first.count, first.brownouts) == (2, 1)
    assert (first.first_seen, first.last_seen) == (DAY1 + 10, DAY1 + 20)
    assert first.user_agent == "sdk/2.0"
    assert rows[("partner-a", "POST", "2025-12-01")].count == 1
    assert rows[("partner-a", "GET", "2025-12-02")].count == 1
    assert rows[(B.key, "GET", "2025-12-01")].hint == "0042"
    assert recorder.drain() == []  # drained: the recorder starts over


def test_clients_beyond_the_bound_count_as_overflow() -> None:
    recorder = UsageRecorder(max_keys=2)
    for index in range(5):
        record(recorder, ClientId(f"client-{index}", None), DAY1 + index)
    record(recorder, ClientId("client-0", None), DAY1 + 9)  # already tracked: its own row
    rows = {r.client: r.count for r in recorder.drain()}
    assert rows == {"client-0": 2, "client-1": 1, OVERFLOW: 3}
    assert sum(rows.values()) == 6  # no call uncounted


def test_the_log_is_one_line_per_client_per_migration_per_hour() -> None:
    recorder = UsageRecorder()
    record(recorder, A, DAY1)
    record(recorder, A, DAY1 + 1800)
    record(recorder, B, DAY1 + 1800)
    recorder.record("strategies", A, "GET", "/s", None, False, DAY1 + 1801)
    first = recorder.drain_notices(DAY1 + 1801)
    assert [(n.migration, n.client) for n in first] == [
        ("trade-engine", A.key), ("trade-engine", B.key), ("strategies", A.key),
    ]  # fmt: skip
    record(recorder, A, DAY1 + 3599)
    assert recorder.drain_notices(DAY1 + 3599) == []
    record(recorder, A, DAY1 + 3600)  # an hour after its last line
    assert [n.at for n in recorder.drain_notices(DAY1 + 3600)] == [DAY1 + 3600]


def test_the_metric_counts_by_migration() -> None:
    metrics = Metrics(CollectorRegistry())
    recorder = UsageRecorder(metrics.deprecated_request)
    record(recorder, A, DAY1)
    record(recorder, B, DAY1)
    value = metrics.registry.get_sample_value(
        "cutover_deprecated_requests_total", {"migration": "trade-engine"}
    )
    assert value == 2


def test_a_migration_counts_at_most_max_clients_a_day() -> None:
    # A caller that names itself anew on every request ends in one overflow row, not a
    # row per name, however many flushes there are; the next day starts over.
    recorder = UsageRecorder(max_clients=2)
    for n in range(5):
        record(recorder, ClientId(f"random-{n}", None), DAY1 + n)
        if n == 2:
            recorder.drain()  # a flush in between forgets nothing of the day's clients
    record(recorder, ClientId("random-0", None), DAY1 + 9)  # known today: still itself
    rows = {r.client: r.count for r in recorder.drain()}
    assert rows == {OVERFLOW: 2, "random-0": 1}
    record(recorder, ClientId("random-4", None), DAY1 + 86400)
    assert [r.client for r in recorder.drain()] == ["random-4"]

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
import respx

from cutover.config import DEFAULT_QUERIES, GuardConfig
from cutover.rollout.source_prometheus import PrometheusSource, prometheus_duration
from cutover.rollout.sources import READINGS, Observation, Subject

PROM_URL = "http://prom.test:9090"
QUERY_URL = f"{PROM_URL}/api/v1/query"
NOW = 1_700_000_123.5

VALUES = {
    "new_requests": "120",
    "new_errors": "3",
    "legacy_requests": "480",
    "new_p95": "0.25",
    "legacy_p95": "0.2",
    "new_memory": "104857600",
    "shadow_comparisons": "200",
    "shadow_mismatches": "1",
}


@pytest.fixture
def prom() -> Iterator[respx.MockRouter]:
    with respx.MockRouter(assert_all_mocked=True, assert_all_called=False) as router:
        yield router


@pytest.fixture
async def make_source(
    prom: respx.MockRouter,
) -> AsyncIterator[Callable[..., PrometheusSource]]:
    sources: list[PrometheusSource] = []

    def build(window: float = 60.0, **prometheus: Any) -> PrometheusSource:
        guard = GuardConfig(
            source="prometheus", window=window, prometheus={"url": PROM_URL, **prometheus}
        )
        transport = httpx.MockTransport(prom.async_handler)
        source = PrometheusSource(guard, transport=transport, clock=lambda: NOW)
        sources.append(source)
        return source

    yield build
    for source in sources:
        await source.aclose()


# The migration every test but the per-migration ones reads.
SUBJECT = Subject("default", source="legacy", target="new")


async def observe(source: PrometheusSource, now: float, since: float | None = None) -> Observation:
    """The readings of SUBJECT (with ``since``) in one evaluation."""
    found = await source.observe(now, [replace(SUBJECT, since=since)])
    assert list(found) == [SUBJECT.name]
    return found[SUBJECT.name]


def query(reading: str, window: str = "60s", subject: Subject = SUBJECT) -> str:
    """The default query of ``reading`` as sent for ``subject``."""
    return (
        DEFAULT_QUERIES[reading]
        .replace("$window", window)
        .replace("$migration", subject.name)
        .replace("$to", subject.target)
        .replace("$from", subject.source)
    )


def vector(*values: str) -> dict[str, Any]:
    result = [{"metric": {"pod": f"p{i}"}, "value": [NOW, v]} for i, v in enumerate(values)]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def answer(prom: respx.MockRouter, reading: str, **response: Any) -> respx.Route:
    return prom.get(QUERY_URL, params={"query": query(reading)}).mock(**response)


def answer_all(prom: respx.MockRouter, **overrides: Any) -> dict[str, respx.Route]:
    routes = {}
    for reading in READINGS:
        response = overrides.get(reading, {"json": vector(VALUES[reading])})
        if isinstance(response, dict):
            reply = {key: value for key, value in response.items() if key != "status_code"}
            mock = {"return_value": httpx.Response(response.get("status_code", 200), **reply)}
        else:
            mock = {"side_effect": response}
        routes[reading] = answer(prom, reading, **mock)
    return routes


@pytest.mark.parametrize(
    ("seconds", "duration"),
    [(60, "60s"), (60.0, "60s"), (300, "300s"), (2.5, "2500ms"), (0.1, "100ms"), (1e-6, "1ms")],
)
def test_window_is_a_prometheus_duration(seconds: float, duration: str) -> None:
    assert prometheus_duration(seconds) == duration


@pytest.mark.anyio
async def test_all_readings_land_in_their_fields(
    prom: respx.MockRouter, make_source: Callable[..., PrometheusSource]
) -> None:
    routes = answer_all(prom)

    observation = await observe(make_source(), NOW)

    assert observation.errors == {}
    for reading in READINGS:
        assert getattr(observation, reading) == float(VALUES[reading])
        request = routes[reading].calls.last.request
        assert request.method == "GET"
        assert request.url.path == "/api/v1/query"
        assert dict(request.url.params) == {"query": query(reading), "time": "1700000123.500"}
    assert routes["new_errors"].calls.last.request.url.params["query"] == (
        'sum(increase(cutover_requests_total{migration="default",backend="new",'
        'code=~"5xx|error"}[60s]))'
        ' or 0 * sum(increase(cutover_requests_total{migration="default",backend="new"}[60s]))'
    )
    assert routes["legacy_p95"].calls.last.request.url.params["query"] == (
        "histogram_quantile(0.95, sum by (le) (rate(cutover_request_duration_seconds_bucket"
        '{migration="default",backend="legacy"}[60s])))'
    )


@pytest.mark.anyio
async def test_fractional_window_is_sent_in_milliseconds(
    prom: respx.MockRouter, make_source: Callable[..., PrometheusSource]
) -> None:
    route = prom.get(QUERY_URL).mock(return_value=httpx.Response(200, json=vector("1")))

    await observe(make_source(window=7.5), NOW)

    sent = {call.request.url.params["query"] for call in route.calls}
    assert sent == {query(reading, "7500ms") for reading in READINGS}


@pytest.mark.anyio
async def test_queries_run_at_wall_clock_time_whatever_the_guards_monotonic_now(
    prom: respx.MockRouter, make_source: Callable[..., PrometheusSource]
) -> None:
    route = prom.get(QUERY_URL).mock(return_value=httpx.Response(200, json=vector("1")))
    await observe(make_source(), 345.0, since=333.0)  # monotonic seconds: 12 s since the start
    assert {call.request.url.params["time"] for call in route.calls} == {"1700000123.500"}
    assert {call.request.url.params["query"] for call in route.calls} == {
        query(reading, "12s") for reading in READINGS
    }


@pytest.mark.anyio
async def test_the_window_starts_no_earlier_than_since(
    prom: respx.MockRouter, make_source: Callable[..., PrometheusSource]
) -> None:
    """After a restart from a rollback, the failed attempt's data is not judged again."""
    route = prom.get(QUERY_URL).mock(return_value=httpx.Response(200, json=vector("1")))
    source = make_source()

    await observe(source, NOW, since=NOW - 12)
    assert {call.request.url.params["query"] for call in route.calls} == {
        query(reading, "12s") for reading in READINGS
    }
    route.reset()
    await observe(source, NOW, since=NOW - 600)  # long ago: the whole window
    assert {call.request.url.params["query"] for call in route.calls} == {
        query(reading, "60s") for reading in READINGS
    }


@pytest.mark.anyio
async def test_empty_results_are_no_data_not_errors(
    prom: respx.MockRouter, make_source: Callable[..., PrometheusSource]
) -> None:
    empty = {"json": vector()}
    answer_all(prom, **dict.fromkeys(READINGS, empty))

    observation = await observe(make_source(), NOW)

    assert observation.errors == {}
    assert all(getattr(observation, reading) is None for reading in READINGS)


@pytest.mark.anyio
async def test_nan_is_no_data(
    prom: respx.MockRouter, make_source: Callable[..., PrometheusSource]
) -> None:
    answer_all(prom, new_p95={"json": vector("NaN")}, legacy_p95={"json": vector("NaN")})

    observation = await observe(make_source(), NOW)

    assert observation.new_p95 is None
    assert observation.legacy_p95 is None
    assert observation.new_requests == 120.0
    assert observation.errors == {}


@pytest.mark.anyio
@pytest.mark.parametrize(("raw", "expected"), [("42", 42.0), ("NaN", None)])
async def test_scalar_results(
    prom: respx.MockRouter,
    make_source: Callable[..., PrometheusSource],
    raw: str,
    expected: float | None,
) -> None:
    scalar = {"status": "success", "data": {"resultType": "scalar", "result": [NOW, raw]}}
    answer_all(prom, new_memory={"json": scalar})

    observation = await observe(make_source(), NOW)

    assert observation.new_memory == expected
    assert observation.errors == {}


@pytest.mark.anyio
@pytest.mark.parametrize("raw", ["+Inf", "-Inf"])
async def test_infinity_is_an_error(
    prom: respx.MockRouter, make_source: Callable[..., PrometheusSource], raw: str
) -> None:
    answer_all(prom, new_p95={"json": vector(raw)})

    observation = await observe(make_source(), NOW)

    assert observation.new_p95 is None
    assert observation.errors == {"new_p95": f"new_p95: query returned {raw}"}


@pytest.mark.anyio
async def test_several_series_is_an_error(
    prom: respx.MockRouter, make_source: Callable[..., PrometheusSource]
) -> None:
    answer_all(prom, new_requests={"json": vector("60", "70", "80")})

    observation = await observe(make_source(), NOW)

    assert observation.new_requests is None
    assert observation.errors == {
        "new_requests": "new_requests: query returned 3 series; aggregate it to one (sum/max)"
    }
    assert observation.new_errors == 3.0


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("result_type", "result"),
    [("matrix", [{"metric": {}, "values": [[NOW, "1"]]}]), ("string", [NOW, "hello"])],
)
async def test_matrix_and_string_results_are_errors(
    prom: respx.MockRouter,
    make_source: Callable[..., PrometheusSource],
    result_type: str,
    result: Any,
) -> None:
    body = {"status": "success", "data": {"resultType": result_type, "result": result}}
    answer_all(prom, new_memory={"json": body})

    observation = await observe(make_source(), NOW)

    assert observation.new_memory is None
    assert observation.errors == {
        "new_memory": f"new_memory: query returned a {result_type}, not an instant vector or scalar"
    }


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status_code", "error_type", "message"),
    [
        (400, "bad_data", 'invalid parameter "query": 1:5: parse error: unexpected "}"'),
        (422, "execution", "query processing would load too many samples into memory"),
        (503, "unavailable", "the query was cancelled"),
    ],
)
async def test_error_bodies_report_error_type_and_message(
    prom: respx.MockRouter,
    make_source: Callable[..., PrometheusSource],
    status_code: int,
    error_type: str,
    message: str,
) -> None:
    body = {"status": "error", "errorType": error_type, "error": message}
    answer_all(prom, new_errors={"status_code": status_code, "json": body})

    observation = await observe(make_source(), NOW)

    assert observation.new_errors is None
    assert observation.errors == {
        "new_errors": f"new_errors: Prometheus error {error_type} (HTTP {status_code}): {message}"
    }
    assert observation.new_requests == 120.0


@pytest.mark.anyio
async def test_http_503_without_json_is_an_error(
    prom: respx.MockRouter, make_source: Callable[..., PrometheusSource]
) -> None:
    answer_all(prom, legacy_requests={"status_code": 503, "text": "Service Unavailable"})

    observation = await observe(make_source(), NOW)

    assert observation.legacy_requests is None
    assert observation.errors == {
        "legacy_requests": "legacy_requests: Prometheus answered HTTP 503"
    }


@pytest.mark.anyio
async def test_timeout_fails_only_its_reading(
    prom: respx.MockRouter, make_source: Callable[..., PrometheusSource]
) -> None:
    answer_all(prom, new_p95=httpx.ReadTimeout)

    observation = await observe(make_source(timeout=2.5), NOW)

    assert observation.new_p95 is None
    assert observation.errors == {
        "new_p95": "new_p95: Prometheus did not answer within 2.5s (ReadTimeout)"
    }
    assert observation.legacy_p95 == 0.2
    assert observation.new_requests == 120.0


@pytest.mark.anyio
async def test_connection_error_fails_only_its_reading(
    prom: respx.MockRouter, make_source: Callable[..., PrometheusSource]
) -> None:
    answer_all(prom, new_memory=httpx.ConnectError("[Errno 111] Connection refused"))

    observation = await observe(make_source(), NOW)

    assert observation.new_memory is None
    assert observation.errors == {
        "new_memory": "new_memory: cannot query Prometheus (ConnectError: "
        "[Errno 111] Connection refused)"
    }
    others = [r for r in READINGS if r != "new_memory"]
    assert [getattr(observation, r) for r in others] == [float(VALUES[r]) for r in others]


@pytest.mark.anyio
async def test_everything_failing_gives_an_error_per_reading(
    prom: respx.MockRouter, make_source: Callable[..., PrometheusSource]
) -> None:
    prom.get(QUERY_URL).mock(side_effect=httpx.ConnectError("refused"))

    observation = await observe(make_source(), NOW)

    assert set(observation.errors) == set(READINGS)
    assert all(getattr(observation, reading) is None for reading in READINGS)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (
            {"text": "<html>not prometheus</html>"},
            "Prometheus answered with a body that is not JSON",
        ),
        ({"json": ["a", "list"]}, "Prometheus answered without status success"),
        ({"json": {"status": "success"}}, "Prometheus sent a malformed query result"),
        (
            {"json": {"status": "success", "data": {"resultType": "vector", "result": [{}]}}},
            "Prometheus sent a malformed query result",
        ),
        ({"json": vector("lots")}, "query returned a value that is not a number: 'lots'"),
    ],
)
async def test_unreadable_answers_are_errors(
    prom: respx.MockRouter,
    make_source: Callable[..., PrometheusSource],
    response: dict[str, Any],
    reason: str,
) -> None:
    answer_all(prom, new_requests=response)

    observation = await observe(make_source(), NOW)

    assert observation.new_requests is None
    assert observation.errors == {"new_requests": f"new_requests: {reason}"}


@pytest.mark.anyio
async def test_custom_queries_are_sent_verbatim_with_the_window(
    prom: respx.MockRouter, make_source: Callable[..., PrometheusSource]
) -> None:
    custom = {
        "new_requests": 'sum(increase(http_requests_total{app="shop-v2"}[$window]))',
        "new_memory": 'max(container_memory_working_set_bytes{pod=~"shop-v2-.*"})',
    }
    route = prom.get(QUERY_URL).mock(return_value=httpx.Response(200, json=vector("7")))

    observation = await observe(make_source(window=120, queries=custom), NOW)

    sent = {call.request.url.params["query"] for call in route.calls}
    assert sent == {
        'sum(increase(http_requests_total{app="shop-v2"}[120s]))',
        'max(container_memory_working_set_bytes{pod=~"shop-v2-.*"})',
        *(query(reading, "120s") for reading in READINGS if reading not in custom),
    }
    assert observation.new_requests == 7.0
    assert observation.errors == {}


@pytest.mark.anyio
async def test_url_path_prefix_is_kept(
    prom: respx.MockRouter, make_source: Callable[..., PrometheusSource]
) -> None:
    route = prom.get("http://prom.test:9090/prometheus/api/v1/query").mock(
        return_value=httpx.Response(200, json=vector("1"))
    )

    observation = await observe(make_source(url=f"{PROM_URL}/prometheus/"), NOW)

    assert observation.errors == {}
    assert route.call_count == len(READINGS)


@pytest.mark.anyio
async def test_each_migration_is_queried_with_its_name_and_backends(
    prom: respx.MockRouter, make_source: Callable[..., PrometheusSource]
) -> None:
    engine = Subject("trade-engine", source="legacy", target="new")
    back = Subject("strategies", source="new", target="v3", since=NOW - 12)
    # Each migration's prometheus answers its own queries, with its own numbers.
    for subject, value in ((engine, "11"), (back, "22")):
        for reading in READINGS:
            window = "12s" if subject is back else "60s"
            prom.get(QUERY_URL, params={"query": query(reading, window, subject)}).mock(
                return_value=httpx.Response(200, json=vector(value))
            )

    found = await make_source().observe(NOW, [engine, back])

    assert list(found) == ["trade-engine", "strategies"]
    assert found["trade-engine"].errors == {} and found["strategies"].errors == {}
    assert all(getattr(found["trade-engine"], reading) == 11 for reading in READINGS)
    assert all(getattr(found["strategies"], reading) == 22 for reading in READINGS)
    sent = {call.request.url.params["query"] for call in prom.calls}
    assert 'sum(increase(cutover_requests_total{migration="strategies",backend="v3"}[12s]))' in sent
    assert (
        'sum(increase(cutover_requests_total{migration="strategies",backend="new"}[12s]))' in sent
    )  # strategies' legacy_requests: its from
    assert 'max(cutover_backend_resident_memory_bytes{backend="v3"})' in sent
    assert not any("$" in promql for promql in sent)


@pytest.mark.anyio
async def test_custom_queries_take_the_migration_and_its_backends(
    prom: respx.MockRouter, make_source: Callable[..., PrometheusSource]
) -> None:
    custom = {
        "new_requests": 'sum(increase(http_requests_total{app="$to",feature="$migration"}'
        "[$window]))",
        "legacy_requests": 'sum(increase(http_requests_total{app="$from",feature="$migration"}'
        "[$window]))",
    }
    route = prom.get(QUERY_URL).mock(return_value=httpx.Response(200, json=vector("7")))
    subject = Subject("trade-engine", source="shop-v1", target="shop-v2")

    await make_source(window=120, queries=custom).observe(NOW, [subject])

    sent = {call.request.url.params["query"] for call in route.calls}
    assert 'sum(increase(http_requests_total{app="shop-v2",feature="trade-engine"}[120s]))' in sent
    assert 'sum(increase(http_requests_total{app="shop-v1",feature="trade-engine"}[120s]))' in sent

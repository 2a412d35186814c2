import itertools
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict
from datetime import date
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.testclient import TestClient

import cutover_demo.legacy_backend.__main__ as legacy_main
import cutover_demo.new_backend.__main__ as new_main
from cutover_demo.legacy_backend import engine as legacy_engine
from cutover_demo.legacy_backend.app import create_app as create_legacy_app
from cutover_demo.new_backend import engine as new_engine
from cutover_demo.new_backend.app import ADMIN_TOKEN_ENV
from cutover_demo.new_backend.app import create_app as create_new_app
from cutover_demo.new_backend.faults import FaultConfig
from cutover_demo.new_backend.schemas import RequestError as LegacyRequestError
from cutover_demo.new_backend.schemas import RequestError as NewRequestError
from cutover_demo.new_backend.schemas import count_business_days

STRATEGIES = ("sma_crossover", "rsi_mean_reversion", "momentum", "buy_and_hold")
SYMBOLS = ("AAPL", "MSFT", "TSLA", "BRK.B")
RANGES = (
    (date(2020, 1, 1), date(2023, 12, 31)),
    (date(2008, 1, 1), date(2012, 6, 30)),
    (date(1990, 3, 1), date(2023, 12, 31)),
    (date(2023, 1, 2), date(2023, 3, 31)),
)
FLOAT_FIELDS = (
    "total_return",
    "annualized_return",
    "volatility",
    "sharpe_ratio",
    "max_drawdown",
    "win_rate",
)
RESULT_FIELDS = (*FLOAT_FIELDS, "total_trades")
TOKEN = "s3cret-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXECUTE = "/api/v1/backtests/bt-1/execute"
STRATEGIES_PATH = "/api/v1/strategies"


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 + 0.01 * max(abs(a), abs(b))


def assert_agree(a: Mapping[str, Any], b: Mapping[str, Any]) -> None:
    assert a["total_trades"] == b["total_trades"]
    assert isinstance(a["total_trades"], int)
    assert isinstance(b["total_trades"], int)
    for field in FLOAT_FIELDS:
        assert close(a[field], b[field]), (field, a[field], b[field])


def sample_value(exposition: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


@pytest.fixture
def legacy_client() -> Iterator[TestClient]:
    with TestClient(create_legacy_app()) as client:
        yield client


@pytest.fixture
def new_client() -> Iterator[TestClient]:
    with TestClient(create_new_app(admin_token=TOKEN, rng=random.Random(7))) as client:
        yield client


@pytest.fixture(params=["legacy", "new"])
def any_client(request: pytest.FixtureRequest) -> Iterator[TestClient]:
    factory: Callable[[], Starlette] = (
        create_legacy_app if request.param == "legacy" else lambda: create_new_app(TOKEN)
    )
    with TestClient(factory()) as client:
        yield client


@pytest.mark.parametrize(
    ("strategy", "symbol", "date_range"), list(itertools.product(STRATEGIES, SYMBOLS, RANGES))
)
def test_engines_agree(strategy: str, symbol: str, date_range: tuple[date, date]) -> None:
    start, end = date_range
    legacy = legacy_engine.run_backtest(strategy, symbol=symbol, start=start, end=end)
    new = new_engine.run_backtest(strategy, symbol=symbol, start=start, end=end)
    assert_agree(asdict(legacy), asdict(new))


@pytest.mark.parametrize(
    ("strategy", "params"),
    [
        ("sma_crossover", {"fast": 5, "slow": 50}),
        ("sma_crossover", {"fast": 1, "slow": 2}),
        ("rsi_mean_reversion", {"period": 7, "lower": 20, "upper": 80}),
        ("rsi_mean_reversion", {"period": 30, "lower": 45.5, "upper": 55}),
        ("momentum", {"lookback": 5, "threshold": 0.02}),
        ("momentum", {"lookback": 120, "threshold": -0.1}),
    ],
)
def test_engines_agree_with_custom_params(strategy: str, params: dict[str, float]) -> None:
    kwargs: dict[str, Any] = {"symbol": "NVDA", "initial_capital": 2500.0, "params": params}
    legacy = asdict(legacy_engine.run_backtest(strategy, **kwargs))
    new = asdict(new_engine.run_backtest(strategy, **kwargs))
    assert_agree(legacy, new)
    assert new != asdict(new_engine.run_backtest(strategy, symbol="NVDA"))


def test_price_series_match_and_skip_weekends() -> None:
    start, end = date(2015, 1, 1), date(2023, 12, 31)
    legacy = legacy_engine.generate_prices("AAPL", start, end)
    new = new_engine.generate_prices("AAPL", start, end)
    assert len(legacy) == len(new) == count_business_days(start, end)
    assert all(abs(a - b) <= 1e-12 * a for a, b in zip(legacy, new, strict=True))
    assert all(p > 0 for p in legacy)
    days = legacy_engine.business_day_ordinals(start, end)
    assert all(date.fromordinal(o).weekday() < 5 for o in days)
    assert list(new_engine.business_day_ordinals(start, end)) == days


def test_default_strategies_trade_realistically() -> None:
    for symbol in SYMBOLS:
        results = {s: new_engine.run_backtest(s, symbol=symbol) for s in STRATEGIES}
        assert results["buy_and_hold"].total_trades == 1
        for strategy in ("sma_crossover", "rsi_mean_reversion", "momentum"):
            assert 3 <= results[strategy].total_trades <= 200, (symbol, strategy)
            assert 0.0 <= results[strategy].win_rate <= 1.0
            assert 0.0 <= results[strategy].max_drawdown < 1.0
            assert results[strategy].volatility > 0


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("symbol", ["AAPL", "TSLA", "SPY"])
def test_apps_agree(
    legacy_client: TestClient, new_client: TestClient, strategy: str, symbol: str
) -> None:
    body = {
        "strategy": strategy,
        "symbol": symbol,
        "start": "2018-06-01",
        "end": "2022-06-01",
        "initial_capital": 50_000,
    }
    legacy = legacy_client.post(EXECUTE, json=body)
    new = new_client.post(EXECUTE, json=body)
    assert legacy.status_code == new.status_code == 200
    assert legacy.headers["content-type"] == new.headers["content-type"] == "application/json"
    legacy_json, new_json = legacy.json(), new.json()
    assert legacy_json["engine"] == "legacy-simulator"
    assert new_json["engine"] == "trade-engine"
    assert legacy_json["backtest_id"] == new_json["backtest_id"] == "bt-1"
    assert set(legacy_json) == set(new_json) == {*RESULT_FIELDS, "backtest_id", "engine"}
    assert_agree(legacy_json, new_json)


def test_app_matches_engine_and_applies_defaults(any_client: TestClient) -> None:
    response = any_client.post(EXECUTE, json={"strategy": "sma_crossover"})
    assert response.status_code == 200
    expected = asdict(
        new_engine.run_backtest(
            "sma_crossover",
            symbol="AAPL",
            start=date(2020, 1, 1),
            end=date(2023, 12, 31),
            initial_capital=100_000,
            params={"fast": 10, "slow": 30},
        )
    )
    assert_agree(response.json(), expected)


@pytest.mark.parametrize("run", [legacy_engine.run_backtest, new_engine.run_backtest])
def test_deterministic_and_symbol_dependent(run: Callable[..., Any]) -> None:
    first = asdict(run("momentum", symbol="AAPL"))
    assert asdict(run("momentum", symbol="AAPL")) == first
    assert asdict(run("momentum", symbol="aapl")) == first
    for other in ("MSFT", "TSLA", "AAPL.X"):
        assert asdict(run("momentum", symbol=other))["total_return"] != first["total_return"]


def test_repeated_requests_are_identical(any_client: TestClient) -> None:
    body = {"strategy": "rsi_mean_reversion", "symbol": "GOOG"}
    responses = [any_client.post(EXECUTE, json=body).json() for _ in range(3)]
    assert responses[0] == responses[1] == responses[2]
    other = any_client.post(EXECUTE, json={**body, "symbol": "AMZN"}).json()
    assert other["total_return"] != responses[0]["total_return"]


INVALID_BODIES: list[tuple[str, bytes | dict[str, Any]]] = [
    ("not json", b"not json"),
    ("array", b"[1, 2]"),
    ("empty", b""),
    ("missing strategy", {}),
    ("unknown strategy", {"strategy": "martingale"}),
    ("strategy type", {"strategy": 3}),
    ("bad date", {"strategy": "momentum", "start": "2020-02-30"}),
    ("date type", {"strategy": "momentum", "start": 20200101}),
    ("end before start", {"strategy": "momentum", "start": "2021-01-01", "end": "2020-01-01"}),
    ("weekend only", {"strategy": "momentum", "start": "2024-01-06", "end": "2024-01-07"}),
    ("too long", {"strategy": "momentum", "start": "1950-01-01", "end": "2023-12-31"}),
    ("zero capital", {"strategy": "momentum", "initial_capital": 0}),
    ("negative capital", {"strategy": "momentum", "initial_capital": -5}),
    ("capital string", {"strategy": "momentum", "initial_capital": "100000"}),
    ("symbol type", {"strategy": "momentum", "symbol": 42}),
    ("symbol pattern", {"strategy": "momentum", "symbol": "../etc"}),
    ("extra field", {"strategy": "momentum", "leverage": 3}),
    ("params type", {"strategy": "momentum", "params": [1]}),
    ("param string", {"strategy": "momentum", "params": {"lookback": "20"}}),
    ("param bool", {"strategy": "momentum", "params": {"lookback": True}}),
    ("param fraction", {"strategy": "momentum", "params": {"lookback": 2.5}}),
    ("param range", {"strategy": "momentum", "params": {"lookback": 0}}),
    ("unknown param", {"strategy": "buy_and_hold", "params": {"fast": 3}}),
    ("fast >= slow", {"strategy": "sma_crossover", "params": {"fast": 30, "slow": 30}}),
    ("lower >= upper", {"strategy": "rsi_mean_reversion", "params": {"lower": 80}}),
]


@pytest.mark.parametrize(("case", "body"), INVALID_BODIES, ids=[c for c, _ in INVALID_BODIES])
def test_invalid_input_is_problem_json(
    any_client: TestClient, case: str, body: bytes | dict[str, Any]
) -> None:
    if isinstance(body, bytes):
        response = any_client.post(EXECUTE, content=body)
    else:
        response = any_client.post(EXECUTE, json=body)
    assert response.status_code == 422, case
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    assert problem["type"] == "urn:cutover:problem:validation-error"
    assert problem["title"]
    assert problem["detail"]
    assert problem["errors"]


def test_oversized_body_is_rejected(any_client: TestClient) -> None:
    response = any_client.post(EXECUTE, content=b" " * (65 * 1024))
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


def test_unknown_route_and_method_are_problem_json(any_client: TestClient) -> None:
    missing = any_client.get("/api/v1/nope")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["status"] == 404
    wrong_method = any_client.get(EXECUTE)
    assert wrong_method.status_code == 405
    assert wrong_method.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("strategy", "params"),
    [("sma_crossover", {"slow": 10}), ("rsi_mean_reversion", {"upper": 101}), ("x", None)],
)
def test_engine_rejects_invalid_params(strategy: str, params: dict[str, float] | None) -> None:
    with pytest.raises(LegacyRequestError):
        legacy_engine.run_backtest(strategy, params=params)
    with pytest.raises(NewRequestError):
        new_engine.run_backtest(strategy, params=params)


def test_strategies_endpoint(legacy_client: TestClient, new_client: TestClient) -> None:
    legacy = legacy_client.get("/api/v1/strategies")
    new = new_client.get("/api/v1/strategies")
    assert legacy.status_code == new.status_code == 200
    assert legacy.json() == new.json()
    catalog = {s["name"]: s for s in new.json()["strategies"]}
    assert set(catalog) == set(STRATEGIES)
    defaults = {
        name: {p["name"]: p["default"] for p in spec["params"]} for name, spec in catalog.items()
    }
    assert defaults == {
        "sma_crossover": {"fast": 10, "slow": 30},
        "rsi_mean_reversion": {"period": 14, "lower": 30.0, "upper": 70.0},
        "momentum": {"lookback": 20, "threshold": 0.0},
        "buy_and_hold": {},
    }


def test_healthz(any_client: TestClient) -> None:
    response = any_client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_metrics(any_client: TestClient) -> None:
    any_client.post(EXECUTE, json={"strategy": "momentum"})
    any_client.post(EXECUTE, json={"strategy": "nope"})
    response = any_client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    rss = sample_value(text, "process_resident_memory_bytes")
    assert rss is not None
    assert rss > 0
    assert "python_info" in text
    assert sample_value(text, "backtest_requests_total", outcome="ok") == 1.0
    assert sample_value(text, "backtest_requests_total", outcome="invalid") == 1.0


def test_apps_have_independent_registries() -> None:
    with TestClient(create_legacy_app()) as a, TestClient(create_legacy_app()) as b:
        a.post(EXECUTE, json={"strategy": "momentum"})
        assert sample_value(a.get("/metrics").text, "backtest_requests_total", outcome="ok") == 1
        assert sample_value(b.get("/metrics").text, "backtest_requests_total", outcome="ok") is None


def test_admin_refused_when_token_not_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ADMIN_TOKEN_ENV, raising=False)
    with TestClient(create_new_app()) as client:
        for method in ("GET", "PUT", "DELETE"):
            response = client.request(method, "/admin/faults", headers=AUTH, json={})
            assert response.status_code == 403
            assert response.headers["content-type"] == "application/problem+json"
            assert "not configured" in response.json()["detail"]


def test_admin_token_read_once_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ADMIN_TOKEN_ENV, "from-env")
    app = create_new_app()
    monkeypatch.setenv(ADMIN_TOKEN_ENV, "changed-later")
    with TestClient(app) as client:
        ok = client.get("/admin/faults", headers={"Authorization": "Bearer from-env"})
        assert ok.status_code == 200
        later = client.get("/admin/faults", headers={"Authorization": "Bearer changed-later"})
        assert later.status_code == 401
    with TestClient(create_new_app(admin_token="explicit")) as client:
        assert client.get("/admin/faults", headers={"Authorization": "Bearer explicit"}).is_success


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
    ],
)
def test_admin_requires_valid_token(new_client: TestClient, headers: dict[str, str]) -> None:
    for method in ("GET", "PUT", "DELETE"):
        response = new_client.request(method, "/admin/faults", headers=headers, json={})
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert new_client.get("/admin/faults", headers=AUTH).json()["error_rate"] == 0.0


def test_faults_off_by_default(new_client: TestClient) -> None:
    response = new_client.get("/admin/faults", headers=AUTH)
    assert response.status_code == 200
    assert response.json() == {
        "error_rate": 0.0,
        "extra_latency_ms": 0,
        "leak_kb_per_request": 0,
        "skew": {},
        "path_prefix": None,
        "leaked_buffers": 0,
        "leaked_bytes": 0,
    }


@pytest.mark.parametrize(
    "body",
    [
        {"error_rate": 1.5},
        {"error_rate": -0.1},
        {"error_rate": "0.5"},
        {"extra_latency_ms": -1},
        {"extra_latency_ms": 2.5},
        {"leak_kb_per_request": -3},
        {"skew": {"sharpe_ratio": "big"}},
        {"skew": {"engine": 0.1}},
        {"skew": {"sharpe_ratio": -2}},
        {"chaos": True},
        {"path_prefix": "api/v1"},
        {"path_prefix": ""},
        {"path_prefix": 1},
        [],
    ],
)
def test_invalid_fault_config(new_client: TestClient, body: Any) -> None:
    response = new_client.put("/admin/faults", headers=AUTH, json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 422
    assert new_client.get("/admin/faults", headers=AUTH).json()["error_rate"] == 0.0


def test_error_rate_one_fails_every_execute(new_client: TestClient) -> None:
    assert new_client.put("/admin/faults", headers=AUTH, json={"error_rate": 1}).status_code == 200
    for _ in range(5):
        response = new_client.post(EXECUTE, json={"strategy": "momentum"})
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == 500
    assert new_client.get("/healthz").status_code == 200


def test_error_rate_one_fails_every_strategies_request(new_client: TestClient) -> None:
    new_client.put("/admin/faults", headers=AUTH, json={"error_rate": 1})
    response = new_client.get(STRATEGIES_PATH)
    assert response.status_code == 500
    assert response.json()["type"] == "urn:cutover:problem:injected-fault"


@pytest.mark.parametrize(
    ("prefix", "faulted", "spared"),
    [
        ("/api/v1/backtests/", EXECUTE, STRATEGIES_PATH),
        ("/api/v1/strategies", STRATEGIES_PATH, EXECUTE),
        ("/api/v1", EXECUTE, "/healthz"),
    ],
)
def test_a_path_prefix_confines_the_fault_to_the_requests_under_it(
    new_client: TestClient, prefix: str, faulted: str, spared: str
) -> None:
    fault = {"error_rate": 1, "leak_kb_per_request": 1, "path_prefix": prefix}
    state = new_client.put("/admin/faults", headers=AUTH, json=fault).json()
    assert state["path_prefix"] == prefix
    for path, code in [(faulted, 500), (spared, 200), (faulted, 500)]:
        if path == EXECUTE:
            response = new_client.post(path, json={"strategy": "momentum"})
        else:
            response = new_client.get(path)
        assert response.status_code == code, path
    assert new_client.app.state.service.faults.leaked_buffers == 2  # the spared one leaked none


def test_a_skew_under_another_prefix_leaves_results_alone(
    legacy_client: TestClient, new_client: TestClient
) -> None:
    body = {"strategy": "sma_crossover", "symbol": "MSFT"}
    fault = {"skew": {"sharpe_ratio": 0.5}, "path_prefix": "/api/v1/strategies"}
    new_client.put("/admin/faults", headers=AUTH, json=fault)
    assert_agree(
        new_client.post(EXECUTE, json=body).json(), legacy_client.post(EXECUTE, json=body).json()
    )


@pytest.mark.parametrize(
    ("prefix", "path", "applies"),
    [
        ("/api/v1", "/api/v1", True),
        ("/api/v1", "/api/v1/x", True),
        ("/api/v1", "/api/v10", False),
        ("/api/v1", "/api", False),
        ("/api/v1/backtests/", "/api/v1/backtests/bt-1/execute", True),
        ("/api/v1/backtests/", "/api/v1/backtests", False),  # as the gateway matches it
        ("/", "/anything", True),
        (None, "/anything", True),
    ],
)
def test_a_path_prefix_matches_on_segment_boundaries(
    prefix: str | None, path: str, applies: bool
) -> None:
    assert FaultConfig(path_prefix=prefix).applies_to(path) is applies


def test_partial_error_rate_fails_some_requests(new_client: TestClient) -> None:
    new_client.put("/admin/faults", headers=AUTH, json={"error_rate": 0.5})
    codes = [new_client.post(EXECUTE, json={"strategy": "momentum"}).status_code for _ in range(60)]
    assert set(codes) == {200, 500}


def test_extra_latency_delays_execute(new_client: TestClient) -> None:
    new_client.put("/admin/faults", headers=AUTH, json={"extra_latency_ms": 120})
    assert new_client.get("/admin/faults", headers=AUTH).json()["extra_latency_ms"] == 120
    started = time.monotonic()
    response = new_client.post(EXECUTE, json={"strategy": "momentum"})
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert elapsed >= 0.12


def test_leak_grows_and_delete_frees(new_client: TestClient) -> None:
    service = new_client.app.state.service
    new_client.put("/admin/faults", headers=AUTH, json={"leak_kb_per_request": 256})
    for _ in range(4):
        assert new_client.post(EXECUTE, json={"strategy": "momentum"}).status_code == 200
    assert service.faults.leaked_buffers == 4
    state = new_client.get("/admin/faults", headers=AUTH).json()
    assert state["leaked_buffers"] == 4
    assert state["leaked_bytes"] == 4 * 256 * 1024
    assert sample_value(new_client.get("/metrics").text, "fault_leaked_bytes") == 4 * 256 * 1024

    reset = new_client.delete("/admin/faults", headers=AUTH)
    assert reset.status_code == 200
    assert reset.json()["leaked_buffers"] == 0
    assert service.faults.leaked_buffers == 0
    assert sample_value(new_client.get("/metrics").text, "fault_leaked_bytes") == 0
    new_client.post(EXECUTE, json={"strategy": "momentum"})
    assert service.faults.leaked_buffers == 0


def test_skew_creates_mismatch(legacy_client: TestClient, new_client: TestClient) -> None:
    body = {"strategy": "sma_crossover", "symbol": "MSFT"}
    new_client.put(
        "/admin/faults", headers=AUTH, json={"skew": {"sharpe_ratio": 0.05, "total_trades": 0.5}}
    )
    legacy = legacy_client.post(EXECUTE, json=body).json()
    skewed = new_client.post(EXECUTE, json=body).json()
    assert skewed["sharpe_ratio"] == pytest.approx(legacy["sharpe_ratio"] * 1.05, rel=1e-9)
    assert not close(skewed["sharpe_ratio"], legacy["sharpe_ratio"])
    assert skewed["total_trades"] == round(legacy["total_trades"] * 1.5)
    assert isinstance(skewed["total_trades"], int)
    assert close(skewed["total_return"], legacy["total_return"])

    new_client.delete("/admin/faults", headers=AUTH)
    assert_agree(new_client.post(EXECUTE, json=body).json(), legacy)


def test_put_replaces_whole_config(new_client: TestClient) -> None:
    new_client.put("/admin/faults", headers=AUTH, json={"error_rate": 0.2, "extra_latency_ms": 5})
    state = new_client.put("/admin/faults", headers=AUTH, json={"extra_latency_ms": 7}).json()
    assert state["error_rate"] == 0.0
    assert state["extra_latency_ms"] == 7


@pytest.mark.parametrize(
    ("main", "argv", "expected"),
    [
        (legacy_main.main, [], ("127.0.0.1", 8001, "warning")),
        (new_main.main, [], ("127.0.0.1", 8002, "warning")),
        (new_main.main, ["--host", "0.0.0.0", "--port", "9000", "--log-level", "info"], None),
    ],
)
def test_cli_runs_uvicorn(
    monkeypatch: pytest.MonkeyPatch,
    main: Callable[[list[str]], None],
    argv: list[str],
    expected: tuple[str, int, str] | None,
) -> None:
    calls: list[tuple[Any, str, int, str]] = []

    def fake_run(app: Any, *, host: str, port: int, log_level: str) -> None:
        calls.append((app, host, port, log_level))

    monkeypatch.setattr("uvicorn.run", fake_run)
    main(argv)
    [(app, host, port, log_level)] = calls
    assert isinstance(app, Starlette)
    assert (host, port, log_level) == (expected or ("0.0.0.0", 9000, "info"))

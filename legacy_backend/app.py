"""The API contract (request schema, problem responses) lives in new_backend and is shared:
the old service goes away when the migration is done, the contract stays."""

import time
from dataclasses import asdict

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cutover_demo.legacy_backend import engine
from cutover_demo.new_backend.problems import (
    VALIDATION_PROBLEM,
    http_exception_handler,
    problem,
    server_error_handler,
)
from cutover_demo.new_backend.schemas import STRATEGIES, RequestError, parse_backtest_request

MAX_BODY_BYTES = 64 * 1024
MAX_BACKTEST_ID_LENGTH = 128


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"request body exceeds {limit} bytes")
    return bytes(body)


def invalid_request(exc: RequestError) -> Response:
    return problem(
        422,
        str(exc),
        type_=VALIDATION_PROBLEM,
        title="Invalid request",
        errors=[{"loc": e.loc, "message": e.message} for e in exc.errors],
    )


class BacktestService:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.requests = Counter(
            "backtest_requests",
            "Backtest execute requests by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "backtest_engine_seconds",
            "Time spent in the backtest engine.",
            ["strategy"],
            registry=self.registry,
        )

    async def execute(self, request: Request) -> Response:
        backtest_id = request.path_params["id"]
        try:
            if len(backtest_id) > MAX_BACKTEST_ID_LENGTH:
                raise RequestError.single("id", f"must be at most {MAX_BACKTEST_ID_LENGTH} chars")
            spec, params = parse_backtest_request(await read_body(request))
        except RequestError as exc:
            self.requests.labels("invalid").inc()
            return invalid_request(exc)
        started = time.perf_counter()
        metrics = engine.run_backtest(
            spec.strategy,
            symbol=spec.symbol,
            start=spec.start,
            end=spec.end,
            initial_capital=spec.initial_capital,
            params=params,
        )
        self.duration.labels(spec.strategy).observe(time.perf_counter() - started)
        self.requests.labels("ok").inc()
        return JSONResponse(
            {"backtest_id": backtest_id, **asdict(metrics), "engine": engine.ENGINE_NAME}
        )

    async def strategies(self, request: Request) -> Response:
        return JSONResponse({"strategies": [spec.as_dict() for spec in STRATEGIES.values()]})

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def create_app() -> Starlette:
    service = BacktestService()
    app = Starlette(
        routes=[
            Route("/api/v1/backtests/{id}/execute", service.execute, methods=["POST"]),
            Route("/api/v1/strategies", service.strategies, methods=["GET"]),
            Route("/healthz", service.healthz, methods=["GET"]),
            Route("/metrics", service.metrics, methods=["GET"]),
        ],
        exception_handlers={
            HTTPException: http_exception_handler,
            Exception: server_error_handler,
        },
    )
    app.state.service = service
    return app

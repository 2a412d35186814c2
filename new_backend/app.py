import asyncio
import hmac
import os
import random
import time
from dataclasses import asdict

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
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

from cutover_demo.new_backend import engine
from cutover_demo.new_backend.faults import FaultInjector, parse_fault_config
from cutover_demo.new_backend.problems import (
    VALIDATION_PROBLEM,
    http_exception_handler,
    problem,
    server_error_handler,
)
from cutover_demo.new_backend.schemas import STRATEGIES, RequestError, parse_backtest_request

ADMIN_TOKEN_ENV = "NEW_BACKEND_ADMIN_TOKEN"
INJECTED_FAULT_PROBLEM = "urn:cutover:problem:injected-fault"
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
    def __init__(self, admin_token: str | None, faults: FaultInjector) -> None:
        self.admin_token = admin_token
        self.faults = faults
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
        Gauge(
            "fault_leaked_bytes",
            "Memory deliberately leaked by fault injection.",
            registry=self.registry,
        ).set_function(lambda: faults.leaked_bytes)

    async def inject(self, request: Request) -> Response | None:
        """The configured faults, when they apply to this request's path: the extra latency
        and the leak, then the injected error's answer (None: serve the request)."""
        faults = self.faults
        if not faults.config.applies_to(request.url.path):
            return None
        if faults.config.extra_latency_ms:
            await asyncio.sleep(faults.config.extra_latency_ms / 1000)
        faults.leak()
        if not faults.should_fail():
            return None
        return problem(
            500,
            "The request failed because of an injected fault.",
            type_=INJECTED_FAULT_PROBLEM,
            title="Injected fault",
        )

    async def execute(self, request: Request) -> Response:
        injected = await self.inject(request)
        if injected is not None:
            self.requests.labels("injected_error").inc()
            return injected
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
        result = asdict(metrics)
        if self.faults.config.applies_to(request.url.path):
            result = self.faults.skewed(result)
        return JSONResponse({"backtest_id": backtest_id, **result, "engine": engine.ENGINE_NAME})

    async def strategies(self, request: Request) -> Response:
        injected = await self.inject(request)
        if injected is not None:
            return injected
        return JSONResponse({"strategies": [spec.as_dict() for spec in STRATEGIES.values()]})

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    def _refuse_unauthorized(self, request: Request) -> Response | None:
        if self.admin_token is None:
            return problem(
                403,
                f"The admin API is disabled: {ADMIN_TOKEN_ENV} is not configured.",
                title="Admin token not configured",
            )
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.admin_token.encode()
        ):
            return None
        return problem(
            401,
            "A valid bearer token is required for the admin API.",
            headers={"WWW-Authenticate": 'Bearer realm="new_backend admin"'},
        )

    async def admin_faults(self, request: Request) -> Response:
        refusal = self._refuse_unauthorized(request)
        if refusal is not None:
            return refusal
        if request.method == "PUT":
            try:
                self.faults.configure(parse_fault_config(await read_body(request)))
            except RequestError as exc:
                return invalid_request(exc)
        elif request.method == "DELETE":
            self.faults.reset()
        return JSONResponse(self.faults.snapshot())


def create_app(admin_token: str | None = None, *, rng: random.Random | None = None) -> Starlette:
    token = admin_token if admin_token is not None else os.environ.get(ADMIN_TOKEN_ENV)
    service = BacktestService(token or None, FaultInjector(rng))
    app = Starlette(
        routes=[
            Route("/api/v1/backtests/{id}/execute", service.execute, methods=["POST"]),
            Route("/api/v1/strategies", service.strategies, methods=["GET"]),
            Route("/healthz", service.healthz, methods=["GET"]),
            Route("/metrics", service.metrics, methods=["GET"]),
            Route("/admin/faults", service.admin_faults, methods=["GET", "PUT", "DELETE"]),
        ],
        exception_handlers={
            HTTPException: http_exception_handler,
            Exception: server_error_handler,
        },
    )
    app.state.service = service
    return app

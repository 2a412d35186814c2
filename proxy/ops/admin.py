"""The admin listener: ``/metrics``, ``/healthz``, ``/readyz``, the migrations API
(``/migrations/{name}/...``; ``/status``, ``/rollout/{action}`` and ``/split`` for a
config with exactly one migration), and ``/fleet`` (the hosts sharing the state).

Every endpoint but the three probes needs ``Authorization: Bearer <CUTOVER_ADMIN_TOKEN>``
when a token is configured (tokens are compared in constant time). Without a token the
API is open, which config validation allows only on a loopback address. The console
(``cutover.console``: ``/`` and ``/console/...``) signs its visitors in itself.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cutover.console.app import Console, is_console_path
from cutover.ops.admin_usage import usage_routes
from cutover.ops.usage import UsageService
from cutover.request.metrics import Metrics
from cutover.request.problem import problem_body
from cutover.rollout.control import Control
from cutover.rollout.fleet import Fleet, FleetUnavailable
from cutover.rollout.registry import UnknownMigration
from cutover.rollout.state import SaveError, StateError, Transition
from cutover.rollout.store_errors import StateConflict
from cutover.rollout.transitions import RolloutError
from cutover.vocabulary import TransitionKind

OPEN_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})


def problem(status: int, title: str, detail: str, slug: str, **headers: str) -> Response:
    return Response(
        problem_body(status, title, detail, slug=slug),
        status_code=status,
        media_type="application/problem+json",
        headers=headers or None,
    )


class BearerAuth:
    """Pure ASGI middleware: refuse admin calls without the right bearer token."""

    def __init__(
        self, app: Any, token: bytes | None, on_failure: Any, *, console: bool = False
    ) -> None:
        self.app = app
        self.token = token
        self.on_failure = on_failure
        self.console = console  # its paths pass: it has its own sign-in

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or self.token is None
            or scope["path"] in OPEN_PATHS
            or (self.console and is_console_path(scope["path"]))
        ):
            await self.app(scope, receive, send)
            return
        supplied = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, credentials = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    supplied = credentials.strip()
        if not hmac.compare_digest(supplied, self.token):
            self.on_failure()
            response = problem(
                401, "Unauthorized", "a valid bearer token is required", "unauthorized",
                **{"WWW-Authenticate": 'Bearer realm="cutover-admin"'},
            )  # fmt: skip
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_admin_app(
    control: Control,
    metrics: Metrics,
    token: SecretStr | None,
    *,
    fleet: Fleet | None = None,
    usage: UsageService | None = None,
    console: Console | None = None,
) -> Any:
    """The admin API over ``control``; ``metrics`` for ``/metrics`` and counting refused
    calls; ``token`` the bearer token every call but the probes needs (None: open);
    ``fleet`` what ``/fleet`` shows (None: no ``/fleet``); ``usage`` the usage report
    (None: no ``/usage``); ``console`` the pages at ``/`` (None: none)."""
    # POST .../{action}: the actions that take no body (rollback takes a reason).
    actions: dict[str, Callable[[str], Awaitable[Transition]]] = {
        TransitionKind.PAUSE: control.pause,
        TransitionKind.RESUME: control.resume,
        TransitionKind.PROMOTE: control.promote,
        TransitionKind.RESTART: control.restart,
    }

    async def exposition(request: Request) -> Response:
        # With several workers this reads every worker's metric files: not on the loop.
        body = await asyncio.to_thread(metrics.exposition)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if not control.ready:
            return problem(503, "Not Ready", "the proxy is starting or stopping", "not-ready")
        return JSONResponse({"status": "ready"})

    def only_migration() -> str | Response:
        """The one configured migration's name, or the 409 the single-rollout API answers."""
        names = control.names
        if len(names) == 1:
            return names[0]
        detail = (
            f"{len(names)} migrations are configured ({', '.join(names)}): use /migrations/{{name}}"
        )
        return problem(409, "Conflict", detail, "several-migrations")

    async def act(request: Request, name: str, action: str) -> Response:
        try:
            if action in actions:
                await actions[action](name)
            elif action == TransitionKind.ROLLBACK:
                reason = (await json_body(request)).get("reason")
                await control.rollback(name, str(reason) if reason else None)
            else:
                return problem(404, "Not Found", f"no rollout action {action!r}", "not-found")
        except UnknownMigration as exc:
            return problem(404, "Not Found", str(exc), "not-found")
        except BodyError as exc:
            return problem(422, "Unprocessable Content", str(exc), "invalid-body")
        except (RolloutError, StateConflict) as exc:
            return problem(409, "Conflict", str(exc), "conflict")
        except (SaveError, StateError) as exc:
            return not_saved(exc)
        return JSONResponse(await control.current_status(name))

    async def weigh(request: Request, name: str) -> Response:
        try:
            control.migrations.get(name)
            weight = (await json_body(request)).get("weight")
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                raise BodyError('expected {"weight": <number between 0 and 100>}')
            if not 0 <= weight <= 100:
                raise BodyError("weight must be between 0 and 100")
            await control.set_weight(name, float(weight))
        except UnknownMigration as exc:
            return problem(404, "Not Found", str(exc), "not-found")
        except BodyError as exc:
            return problem(422, "Unprocessable Content", str(exc), "invalid-body")
        except StateConflict as exc:
            return problem(409, "Conflict", str(exc), "conflict")
        except (SaveError, StateError) as exc:
            return not_saved(exc)
        return JSONResponse(await control.current_status(name))

    async def status(request: Request) -> Response:
        name = only_migration()
        if isinstance(name, Response):
            return name
        return JSONResponse(await control.current_status(name))

    async def single_act(request: Request) -> Response:
        name = only_migration()
        if isinstance(name, Response):
            return name
        return await act(request, name, request.path_params["action"])

    async def split(request: Request) -> Response:
        name = only_migration()
        if isinstance(name, Response):
            return name
        return await weigh(request, name)

    async def migrations(request: Request) -> Response:
        return JSONResponse({"migrations": await control.current_statuses()})

    async def migration(request: Request) -> Response:
        try:
            return JSONResponse(await control.current_status(request.path_params["name"]))
        except UnknownMigration as exc:
            return problem(404, "Not Found", str(exc), "not-found")

    async def migration_act(request: Request) -> Response:
        return await act(request, request.path_params["name"], request.path_params["action"])

    async def migration_weight(request: Request) -> Response:
        return await weigh(request, request.path_params["name"])

    async def fleet_status(request: Request) -> Response:
        assert fleet is not None
        try:
            return JSONResponse(await fleet.status())
        except FleetUnavailable as exc:
            # The problem carries what this host knows by itself: its own record.
            body = problem_body(
                503, "Service Unavailable", str(exc), slug="state-unavailable", **exc.document
            )
            return Response(body, status_code=503, media_type="application/problem+json")

    def not_saved(exc: SaveError | StateError) -> Response:
        # Nothing changed (the transition is saved before it is applied); try again once
        # the state file can be written (or read) again.
        detail = f"the rollout is unchanged: {exc}"
        return problem(503, "Service Unavailable", detail, "state-unavailable")

    async def failed(request: Request, exc: Exception) -> Response:
        detail = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, OSError):
            detail = f"could not save the rollout state: {exc}"
        return problem(500, "Internal Server Error", detail, "internal-error")

    routes = [] if fleet is None else [Route("/fleet", fleet_status)]
    routes += [] if usage is None else usage_routes(usage)
    routes += [] if console is None else console.routes()
    app = Starlette(
        exception_handlers={Exception: failed},
        routes=[
            *routes,
            Route("/metrics", exposition),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/status", status),
            Route("/rollout/{action}", single_act, methods=["POST"]),
            Route("/split", split, methods=["PUT"]),
            Route("/migrations", migrations),
            Route("/migrations/{name}", migration),
            Route("/migrations/{name}/weight", migration_weight, methods=["PUT"]),
            Route("/migrations/{name}/{action}", migration_act, methods=["POST"]),
        ],
    )
    secret = token.get_secret_value().encode("utf-8") if token is not None else None
    return BearerAuth(app, secret, metrics.admin_auth_failures.inc, console=console is not None)


class BodyError(Exception):
    """The request body is not the JSON object the endpoint expects."""


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise BodyError("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BodyError("the body must be a JSON object")
    return data

"""The console's routes on the admin listener: ``/`` (every migration), ``/console/m/NAME``
(one migration, its actions), sign-in and sign-out, the live event streams and the
vendored static files. The pages need a session (``sessions.py``); an action also needs
the admin role and the session's CSRF token, and is recorded with the role."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from prometheus_client import Counter
from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from cutover.config import Settings
from cutover.console.live import Watcher
from cutover.console.pages import Pages
from cutover.console.samples import Sampler
from cutover.console.sessions import COOKIE, Session, Sessions
from cutover.console.throttle import SignInThrottle
from cutover.console.views import WEIGHT
from cutover.ops.usage import UsageService
from cutover.request.metrics import Metrics
from cutover.rollout.control import Control
from cutover.rollout.fleet import Fleet
from cutover.rollout.registry import UnknownMigration
from cutover.rollout.state import SaveError, StateError
from cutover.rollout.store_errors import StateConflict
from cutover.rollout.transitions import RolloutError
from cutover.vocabulary import Role, TransitionKind

HERE = Path(__file__).parent
PREFIX = "/console"
MAX_FORM = 4096  # bytes: the largest form the console posts is a reason
KEEPALIVE = 15.0  # seconds between comments on a quiet event stream
HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
}
logger = logging.getLogger("cutover.console")


def is_console_path(path: str) -> bool:
    """The paths the console answers itself (the admin API's bearer check leaves them)."""
    return path == "/" or path == PREFIX or path.startswith(PREFIX + "/")


class Console:
    def __init__(
        self,
        control: Control,
        metrics: Metrics,
        settings: Callable[[], Settings],
        *,
        admin_token: SecretStr,
        view_token: SecretStr | None = None,
        usage: UsageService | None = None,
        fleet: Fleet | None = None,
        sample_every: float | None = None,
    ) -> None:
        self.control = control
        self.sessions = Sessions(admin_token, view_token)
        self.throttle = SignInThrottle()
        self.failures = Counter(
            "cutover_console_signin_failures",
            "Console sign-ins refused: a wrong token (each one slows that client down).",
            registry=metrics.registry,
        )
        weights = lambda: {rollout.name: rollout.weight for rollout in control.migrations}  # noqa: E731
        options = {} if sample_every is None else {"every": sample_every}
        self.sampler = Sampler(metrics, weights, **options)
        self.watcher = Watcher(control, tick=self._last_sample)
        self.pages = Pages(control, settings, self.sampler, HERE / "templates", usage, fleet)
        self.actions = {
            TransitionKind.PAUSE: control.pause,
            TransitionKind.RESUME: control.resume,
            TransitionKind.PROMOTE: control.promote,
            TransitionKind.RESTART: control.restart,
        }

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.overview),
            Route(f"{PREFIX}/signin", self.signin_form, methods=["GET"]),
            Route(f"{PREFIX}/signin", self.signin, methods=["POST"]),
            Route(f"{PREFIX}/signout", self.signout, methods=["POST"]),
            Route(f"{PREFIX}/events", self.overview_events),
            Route(f"{PREFIX}/m/{{name}}", self.migration),
            Route(f"{PREFIX}/m/{{name}}/events", self.migration_events),
            Route(f"{PREFIX}/m/{{name}}/{{action}}", self.act, methods=["POST"]),
            Mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]

    # -- lifecycle (the gateway's) --------------------------------------------------------

    def start(self) -> None:
        self.sampler.start()
        self.watcher.start()

    async def close_streams(self) -> None:
        await self.watcher.close()

    async def stop(self) -> None:
        await self.watcher.stop()
        await self.sampler.stop()

    def _last_sample(self) -> float | None:
        """When the newest sample was taken: a new one redraws the charts."""
        return self.sampler.samples[-1].at if self.sampler.samples else None

    # -- sign-in ---------------------------------------------------------------------------

    def session(self, request: Request) -> Session | None:
        return self.sessions.read(request.cookies.get(COOKIE))

    async def signin_form(self, request: Request) -> Response:
        failed = request.query_params.get("failed") is not None
        return self._html(self.pages.render("signin.html", failed=failed), 200)

    async def signin(self, request: Request) -> Response:
        form = await _form(request)
        client = request.client.host if request.client else "unknown"
        async with self.throttle.attempt(client) as attempt:
            role = self.sessions.role_for(form.get("token", ""))
            if role is None:
                attempt.fail()
        if role is None:
            self.failures.inc()
            page = self.pages.render("signin.html", failed=True)
            return self._html(page, 401)
        response = RedirectResponse("/", status_code=303, headers=HEADERS)
        response.set_cookie(
            COOKIE, self.sessions.issue(role), max_age=self.sessions.max_age, path="/",
            httponly=True, samesite="strict", secure=request.url.scheme == "https",
        )  # fmt: skip
        return response

    async def signout(self, request: Request) -> Response:
        response = RedirectResponse(f"{PREFIX}/signin", status_code=303, headers=HEADERS)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    # -- pages -----------------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return RedirectResponse(f"{PREFIX}/signin", status_code=303, headers=HEADERS)
        return self._html(await self.pages.overview(session), 200)

    async def migration(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return RedirectResponse(f"{PREFIX}/signin", status_code=303, headers=HEADERS)
        name = request.path_params["name"]
        try:
            page = await self.pages.migration(name, session, request.query_params.get("error"))
        except UnknownMigration as exc:
            return self._html(self.pages.render("error.html", message=str(exc)), 404)
        return self._html(page, 200)

    async def act(self, request: Request) -> Response:
        session = self.session(request)
        name, action = request.path_params["name"], request.path_params["action"]
        if session is None:
            return self._html(self.pages.render("error.html", message="sign in first"), 401)
        form = await _form(request)
        if not session.acts:
            message = "the view token is read-only: sign in with the admin token to act"
            return self._html(self.pages.render("error.html", message=message), 403)
        if not session.csrf_ok(form.get("csrf")):
            message = "the form is stale or forged (its CSRF token does not match)"
            return self._html(self.pages.render("error.html", message=message), 403)
        page = f"{PREFIX}/m/{quote(name, safe='')}"
        try:
            await self._do(name, action, form, session.role)
        except UnknownMigration as exc:
            return self._html(self.pages.render("error.html", message=str(exc)), 404)
        except (RolloutError, StateConflict, SaveError, StateError, ValueError) as exc:
            return RedirectResponse(f"{page}?error={quote(str(exc))}", 303, headers=HEADERS)
        return RedirectResponse(page, status_code=303, headers=HEADERS)

    async def _do(self, name: str, action: str, form: dict[str, str], role: Role) -> None:
        if action in self.actions:
            await self.actions[action](name, role=role)
        elif action == TransitionKind.ROLLBACK:
            reason = form.get("reason", "").strip()[:500]
            await self.control.rollback(name, reason or None, role=role)
        elif action == WEIGHT:
            try:
                weight = float(form.get("weight", ""))
            except ValueError:
                raise ValueError("the weight must be a number between 0 and 100") from None
            if not 0 <= weight <= 100:
                raise ValueError("the weight must be between 0 and 100")
            await self.control.set_weight(name, weight, role=role)
        else:
            raise UnknownMigration(f"no action {action!r}")

    # -- live --------------------------------------------------------------------------------

    async def overview_events(self, request: Request) -> Response:
        return self._stream(request, self.pages.overview_fragments)

    async def migration_events(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            self.control.migrations.get(name)
        except UnknownMigration as exc:
            return self._html(self.pages.render("error.html", message=str(exc)), 404)
        return self._stream(request, lambda session: self.pages.migration_fragments(name, session))

    def _stream(self, request: Request, fragments: Callable[[Session], Any]) -> Response:
        cookie = request.cookies.get(COOKIE)
        if self.sessions.read(cookie) is None:
            return Response("sign in first\n", status_code=401, media_type="text/plain")

        async def events() -> AsyncIterator[str]:
            yield "retry: 1000\n\n"  # EventSource reconnects after 1 s if the stream drops
            sent: dict[str, str] = {}
            version = -1
            async with self.watcher.watching():
                while not self.watcher.closed:
                    seen, version = version, await self.watcher.next_version(version, KEEPALIVE)
                    session = self.sessions.read(cookie)
                    if session is None or self.watcher.closed:
                        return  # expired: the page's next request signs in again
                    if seen == version:
                        yield ": keepalive\n\n"
                        continue
                    parts: dict[str, str] = await fragments(session)
                    changed = {key: html for key, html in parts.items() if sent.get(key) != html}
                    if changed:
                        sent.update(changed)
                        yield f"event: fragments\ndata: {json.dumps(changed)}\n\n"

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    @staticmethod
    def _html(body: str, status: int) -> Response:
        return HTMLResponse(body, status_code=status, headers=HEADERS)


async def _form(request: Request) -> dict[str, str]:
    """A urlencoded form's first value per field (no multipart: the console posts none)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return {}
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {key: values[0] for key, values in fields.items()}

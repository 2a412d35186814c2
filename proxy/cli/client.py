"""The admin API's HTTP client: one method per admin request, each answering a migration
document (or the list of them, or the fleet); every failure is an ``AdminError``, and an
address where something other than a Cutover admin API answers is a ``NotAdminAPI``."""

from __future__ import annotations

from collections.abc import Collection
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

DEFAULT_ADMIN_URL = "http://127.0.0.1:9180"
TIMEOUT = 10.0

Migration = dict[str, Any]  # one migration's document: its name, match, from, to and status
Migrations = dict[str, Any]  # GET /migrations: {"migrations": [Migration, ...]}
MIGRATION_KEYS = ("name", "phase")  # what every migration document has
# GET /fleet: the hosts sharing the state, the guard leader, the store; with "error" added
# when the store is unreachable (the hosts are then only the one that answered).
Fleet = dict[str, Any]
FLEET_KEYS = ("backend", "hosts", "leader", "store")

PROBLEM_TYPE_BASE = "urn:cutover:problem:"  # every error the admin API answers has such a type
# A server failing (uvicorn's bare 500 for a crashed app) or a proxy in front of the admin API
# answering while it is down: a failure, not a sign of the wrong address.
SERVER_FAILURES = frozenset({500, 502, 503, 504})
BACKEND_HEADER = "x-cutover-backend"  # on every response of the proxy listener, never the admin's


class AdminError(Exception):
    """A request to the admin API failed; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AdminUnreachable(AdminError):
    """No answer: the connection failed or the admin API did not answer in time."""


class AdminRefused(AdminError):
    """The admin API answered with an error: it refused the token or the request, or failed."""


class NotAdminAPI(AdminError):
    """What answered at the address is not a Cutover admin API."""


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be the admin API's address, or None."""
    if any(char.isspace() or not char.isprintable() for char in url):
        return f"must not contain spaces or control characters, got {url!r}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as exc:
        return f"{url!r} is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"must be an http:// or https:// URL with a host, got {url!r}"
    if parts.query or parts.fragment:
        return f"must not have a query or fragment, got {url!r}"
    return None


def token_problem(token: str) -> str | None:
    """Why ``token`` cannot be sent as a bearer token, or None. A header field carries ASCII."""
    for char in token:
        if not "!" <= char <= "~":
            if char == " ":
                kind = "a space"
            elif char.isascii():
                kind = "a control character"
            else:
                kind = "not ASCII"
            return f"must be printable ASCII (it is sent in a header); {char!r} is {kind}"
    return None


class AdminClient:
    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=base_url,
            headers=headers,
            timeout=timeout,
            trust_env=False,
            transport=transport,
        )

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def migrations(self) -> Migrations:
        response = self._request("GET", "/migrations")
        document = self._object(response)
        listed = document.get("migrations")
        if not isinstance(listed, list) or not all(_is_migration(item) for item in listed):
            raise self._not_admin(response, "a JSON object that is not a list of migrations")
        return document

    def migration(self, name: str) -> Migration:
        return self._migration("GET", name)

    def fleet(self) -> Fleet | None:
        """GET /fleet; None from an admin API that has none (one from before fleets)."""
        response = self._request("GET", "/fleet", answered=(404, 503))
        if response.status_code == 404:
            return None
        if response.status_code == 503:
            problem = _cutover_problem(response)
            if problem is None or not _is_fleet(problem):
                raise self._error_from(response)
            fleet = {key: problem[key] for key in FLEET_KEYS}
            return {**fleet, "error": str(problem.get("detail") or problem.get("title"))}
        document = self._object(response)
        if not _is_fleet(document):
            raise self._not_admin(response, "a JSON object that is not a fleet")
        return document

    def usage(self, name: str | None, since: str) -> dict[str, Any]:
        """GET /migrations/{name}/usage (or /usage for every migration) as JSON."""
        path = "/usage" if name is None else f"/migrations/{quote(name, safe='')}/usage"
        response = self._request("GET", f"{path}?since={quote(since, safe='')}")
        document = self._object(response)
        if not isinstance(document.get("clients"), list):
            raise self._not_admin(response, "a JSON object that is not a usage report")
        return document

    def pause(self, name: str) -> Migration:
        return self._migration("POST", name, "/pause")

    def resume(self, name: str) -> Migration:
        return self._migration("POST", name, "/resume")

    def promote(self, name: str) -> Migration:
        return self._migration("POST", name, "/promote")

    def restart(self, name: str) -> Migration:
        return self._migration("POST", name, "/restart")

    def rollback(self, name: str, reason: str | None = None) -> Migration:
        body = {"reason": reason} if reason else None
        return self._migration("POST", name, "/rollback", body)

    def set_weight(self, name: str, weight: float) -> Migration:
        return self._migration("PUT", name, "/weight", {"weight": weight})

    def _migration(
        self, method: str, name: str, action: str = "", body: dict[str, Any] | None = None
    ) -> Migration:
        # safe="": a "/" or "?" in the name stays inside the one path segment.
        response = self._request(method, f"/migrations/{quote(name, safe='')}{action}", body)
        document = self._object(response)
        if not _is_migration(document):
            raise self._not_admin(response, "a JSON object that is not a migration")
        return document

    def _request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        answered: Collection[int] = (),
    ) -> httpx.Response:
        """The response; an AdminError for an error status, but those ``answered``."""
        try:
            response = self._http.request(method, path, json=body)
        except httpx.TimeoutException as exc:
            raise AdminUnreachable(
                f"the admin API at {self.base_url} did not answer in time: {exc}"
            ) from exc
        except httpx.ConnectError as exc:
            raise AdminUnreachable(f"cannot reach the admin API at {self.base_url}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise AdminUnreachable(f"admin API request {method} {path} failed: {exc}") from exc
        backend = response.headers.get(BACKEND_HEADER)
        if backend is not None:
            raise NotAdminAPI(
                f"{self.base_url} is Cutover's proxy listener, not its admin API ({method} "
                f"{path} went to the {backend} backend): use the config's admin.host and "
                f"admin.port (default {DEFAULT_ADMIN_URL})",
                response.status_code,
            )
        if response.is_error and response.status_code not in answered:
            raise self._error_from(response)
        return response

    def _not_admin(self, response: httpx.Response, what: str) -> NotAdminAPI:
        request = response.request
        return NotAdminAPI(
            f"{self.base_url} is not a Cutover admin API: it answered "
            f"{request.method} {request.url.path} with {what}",
            response.status_code,
        )

    def _object(self, response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            content_type = response.headers.get("content-type", "no content type")
            raise self._not_admin(response, f"something other than a JSON object ({content_type})")
        return data

    def _error_from(self, response: httpx.Response) -> AdminError:
        status = response.status_code
        problem = _cutover_problem(response)
        if problem is None:
            if status not in SERVER_FAILURES:
                # The admin API answers every error it makes with a Cutover problem; a bare
                # 404 or 501 comes from something else listening there.
                return self._not_admin(response, f"{status} {response.reason_phrase}")
            request = response.request
            return AdminRefused(
                f"the admin API answered {status} {response.reason_phrase} "
                f"to {request.method} {request.url.path}",
                status,
            )
        if status == 401:
            return AdminRefused(
                "the admin API refused the token: set CUTOVER_ADMIN_TOKEN or --token", status
            )
        detail = problem.get("detail") or problem.get("title")
        return AdminRefused(str(detail) if detail else f"{status} {response.reason_phrase}", status)


def _is_migration(document: object) -> bool:
    return isinstance(document, dict) and all(key in document for key in MIGRATION_KEYS)


def _is_fleet(document: object) -> bool:
    return (
        isinstance(document, dict)
        and all(key in document for key in FLEET_KEYS)
        and isinstance(document["hosts"], list)
        and all(isinstance(host, dict) for host in document["hosts"])
    )


def _cutover_problem(response: httpx.Response) -> dict[str, Any] | None:
    """The body when it is one of Cutover's problem details, else None."""
    try:
        problem = response.json()
    except ValueError:
        return None
    if not isinstance(problem, dict) or not str(problem.get("type", "")).startswith(
        PROBLEM_TYPE_BASE
    ):
        return None
    return problem

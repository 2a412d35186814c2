"""``cutover`` subcommands that drive a running gateway through its admin API."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx

DEFAULT_ADMIN_URL = "http://127.0.0.1:9180"
TIMEOUT = 10.0
HISTORY_SHOWN = 5

Status = dict[str, Any]


EXIT_FAILED = 1  # the admin API refused or failed the request, or could not be reached
EXIT_USAGE = 2  # a malformed --admin-url or --token, or an address that is not an admin API
PROBLEM_TYPE_BASE = "urn:cutover:problem:"  # every error the admin API answers has such a type
# A server failing (uvicorn's bare 500 for a crashed app) or a proxy in front of the admin API
# answering while it is down: a failure, not a sign of the wrong address.
SERVER_FAILURES = frozenset({500, 502, 503, 504})
BACKEND_HEADER = "x-cutover-backend"  # on every response of the proxy listener, never the admin's


class AdminError(Exception):
    """A request to the admin API failed; ``status`` is the HTTP status when there was one."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotAdminAPI(AdminError):
    """What answered at the address is not a Cutover admin API."""

    exit_code = EXIT_USAGE


class UsageError(Exception):
    """A malformed admin URL or token, from an option or the environment."""


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
        if not " " <= char <= "~":
            kind = "a control character" if char.isascii() else "not ASCII"
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

    def status(self) -> Status:
        return self._request("GET", "/status")

    def pause(self) -> Status:
        return self._request("POST", "/rollout/pause")

    def resume(self) -> Status:
        return self._request("POST", "/rollout/resume")

    def promote(self) -> Status:
        return self._request("POST", "/rollout/promote")

    def restart(self) -> Status:
        return self._request("POST", "/rollout/restart")

    def rollback(self, reason: str | None = None) -> Status:
        body = {"reason": reason} if reason else None
        return self._request("POST", "/rollout/rollback", body)

    def set_weight(self, weight: float) -> Status:
        return self._request("PUT", "/split", {"weight": weight})

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Status:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.TimeoutException as exc:
            raise AdminError(
                f"the admin API at {self.base_url} did not answer in time: {exc}"
            ) from exc
        except httpx.ConnectError as exc:
            raise AdminError(f"cannot reach the admin API at {self.base_url}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise AdminError(f"admin API request {method} {path} failed: {exc}") from exc
        backend = response.headers.get(BACKEND_HEADER)
        if backend is not None:
            raise NotAdminAPI(
                f"{self.base_url} is Cutover's proxy listener, not its admin API ({method} "
                f"{path} went to the {backend} backend): use the config's admin.host and "
                f"admin.port (default {DEFAULT_ADMIN_URL})",
                response.status_code,
            )
        if response.is_error:
            raise self._error_from(response)
        return self._status(response)

    def _not_admin(self, response: httpx.Response, what: str) -> NotAdminAPI:
        request = response.request
        return NotAdminAPI(
            f"{self.base_url} is not a Cutover admin API: it answered "
            f"{request.method} {request.url.path} with {what}",
            response.status_code,
        )

    def _status(self, response: httpx.Response) -> Status:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            content_type = response.headers.get("content-type", "no content type")
            raise self._not_admin(response, f"something other than a JSON object ({content_type})")
        if "phase" not in data:
            raise self._not_admin(response, "a JSON object that is not a rollout status")
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
            return AdminError(
                f"the admin API answered {status} {response.reason_phrase} "
                f"to {request.method} {request.url.path}",
                status,
            )
        if status == 401:
            return AdminError(
                "the admin API refused the token: set CUTOVER_ADMIN_TOKEN or --token", status
            )
        detail = problem.get("detail") or problem.get("title")
        return AdminError(str(detail) if detail else f"{status} {response.reason_phrase}", status)


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


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, int | float) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _duration(seconds: float) -> str:
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h"] if hours else []
    if minutes:
        parts.append(f"{minutes}m")
    if secs or not parts:
        parts.append(f"{secs}s")
    return " ".join(parts)


def _stage_line(status: Status) -> str:
    stages = status.get("stages") or []
    index = status.get("stage")
    if not stages:
        return "none (no rollout configured)"
    if index is None or not 0 <= index < len(stages):
        return f"none of {len(stages)}"
    stage = stages[index]
    line = f"{index + 1}/{len(stages)} ({_number(stage.get('weight'))}%)"
    hold = stage.get("hold")
    return line if hold is None else f"{line}, hold {_duration(hold)}"


def _failure_line(failure: dict[str, Any]) -> str:
    line = (
        f"{failure.get('check', '?')} {_number(failure.get('value'))} "
        f"vs threshold {_number(failure.get('threshold'))}"
    )
    detail = failure.get("detail")
    return f"{line} ({detail})" if detail else line


def _next_line(status: Status) -> str:
    next_in = status.get("next_promotion_in")
    line = (
        "no automatic promotion pending"
        if next_in is None
        else f"promotion in {_duration(next_in)}"
    )
    healthy_for = status.get("healthy_for")
    if healthy_for is not None:
        line += f" (checks passing for {_duration(healthy_for)})"
    return line


def _check_lines(checks: dict[str, dict[str, Any]]) -> list[str]:
    if not checks:
        return ["checks    none"]
    width = max(len(name) for name in checks)
    lines = ["checks"]
    for name, check in checks.items():
        reading = f"{_number(check.get('value'))} (threshold {_number(check.get('threshold'))})"
        line = f"  {name:<{width}}  {check.get('result', '?'):<6}  {reading}"
        detail = check.get("detail")
        lines.append(f"{line}  {detail}" if detail else line)
    return lines


def _history_line(entry: dict[str, Any]) -> str:
    change = (
        f"{entry.get('from_phase')} {_number(entry.get('from_weight'))}% -> "
        f"{entry.get('to_phase')} {_number(entry.get('to_weight'))}%"
    )
    line = f"  {entry.get('at', '?')}  {entry.get('actor', '?'):<8}  {change}"
    reason = entry.get("reason")
    return f"{line}  {reason}" if reason else line


def _history_lines(history: list[dict[str, Any]]) -> list[str]:
    if not history:
        return ["history   none"]
    shown = history[-HISTORY_SHOWN:]
    header = (
        "history"
        if len(shown) == len(history)
        else f"history (last {len(shown)} of {len(history)})"
    )
    return [header, *(_history_line(entry) for entry in shown)]


def format_status(status: Status) -> str:
    lines = [
        f"phase     {status.get('phase', '?')}",
        f"weight    {_number(status.get('weight'))}% to new",
        f"stage     {_stage_line(status)}",
        f"reason    {status.get('reason') or '-'}",
    ]
    failure = status.get("failure")
    if failure:
        lines.append(f"failure   {_failure_line(failure)}")
    lines.append(f"next      {_next_line(status)}")
    breaker = status.get("breaker")
    if breaker:
        lines.append(f"breaker   {breaker.get('state', '?')} (new)")
    lines += _check_lines(status.get("checks") or {})
    lines += _history_lines(status.get("history") or [])
    return "\n".join(lines)


def format_action(status: Status) -> str:
    line = f"{status.get('phase', '?')}, weight {_number(status.get('weight'))}% to new"
    reason = status.get("reason")
    return f"{line}\nreason: {reason}" if reason else line


def _format_json(status: Status) -> str:
    return json.dumps(status, indent=2)


def _option(value: str | None, option: str, variable: str) -> tuple[str, str]:
    """The value of ``--option`` or else ``$VARIABLE``, and which of the two it came from."""
    if value:
        return value, option
    return os.environ.get(variable, ""), variable


def _client(args: argparse.Namespace) -> AdminClient:
    url, url_source = _option(args.admin_url, "--admin-url", "CUTOVER_ADMIN_URL")
    url = url or DEFAULT_ADMIN_URL
    token, token_source = _option(args.token, "--token", "CUTOVER_ADMIN_TOKEN")
    for source, problem in ((url_source, url_problem(url)), (token_source, token_problem(token))):
        if problem is not None:
            raise UsageError(f"{source}: {problem}")
    return AdminClient(url, token or None)


def _run(
    args: argparse.Namespace,
    call: Callable[[AdminClient], Status],
    render: Callable[[Status], str],
) -> int:
    try:
        with _client(args) as client:
            status = call(client)
    except UsageError as exc:
        print(f"cutover: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AdminError as exc:
        print(f"cutover: {exc}", file=sys.stderr)
        return exc.exit_code
    print(render(status))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    return _run(args, AdminClient.status, _format_json if args.json else format_status)


def cmd_pause(args: argparse.Namespace) -> int:
    return _run(args, AdminClient.pause, format_action)


def cmd_resume(args: argparse.Namespace) -> int:
    return _run(args, AdminClient.resume, format_action)


def cmd_promote(args: argparse.Namespace) -> int:
    return _run(args, AdminClient.promote, format_action)


def cmd_restart(args: argparse.Namespace) -> int:
    return _run(args, AdminClient.restart, format_action)


def cmd_rollback(args: argparse.Namespace) -> int:
    return _run(args, lambda client: client.rollback(args.reason), format_action)


def cmd_set_weight(args: argparse.Namespace) -> int:
    return _run(args, lambda client: client.set_weight(args.weight), format_action)


def weight_arg(text: str) -> float:
    try:
        weight = float(text)
    except ValueError:
        weight = float("nan")
    if not 0 <= weight <= 100:
        raise argparse.ArgumentTypeError(f"weight must be a number from 0 to 100, got {text!r}")
    return weight


def _connection_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--admin-url",
        metavar="URL",
        help=f"admin API address (default: $CUTOVER_ADMIN_URL or {DEFAULT_ADMIN_URL})",
    )
    options.add_argument(
        "--token", metavar="TOKEN", help="admin API bearer token (default: $CUTOVER_ADMIN_TOKEN)"
    )
    return options


def add_admin_commands(subparsers: Any) -> None:
    """Register the admin subcommands on the ``cutover`` argparse subparsers."""
    parents = [_connection_options()]

    status = subparsers.add_parser("status", parents=parents, help="show the rollout status")
    status.add_argument(
        "--json", action="store_true", help="print the raw JSON status (default: a summary)"
    )
    status.set_defaults(func=cmd_status)

    actions = [
        ("pause", "pause the rollout at its current weight", cmd_pause),
        ("resume", "resume a paused rollout", cmd_resume),
        ("promote", "promote the rollout now", cmd_promote),
        ("restart", "restart the rollout", cmd_restart),
    ]
    for name, help_text, handler in actions:
        subparsers.add_parser(name, parents=parents, help=help_text).set_defaults(func=handler)

    rollback = subparsers.add_parser(
        "rollback", parents=parents, help="send all traffic back to legacy"
    )
    rollback.add_argument(
        "--reason", metavar="TEXT", help="why, recorded in the history (default: none given)"
    )
    rollback.set_defaults(func=cmd_rollback)

    set_weight = subparsers.add_parser(
        "set-weight", parents=parents, help="set the share of traffic sent to new by hand"
    )
    set_weight.add_argument("weight", metavar="N", type=weight_arg, help="percent, 0 to 100")
    set_weight.set_defaults(func=cmd_set_weight)

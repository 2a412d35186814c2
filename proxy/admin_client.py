"""``cutover`` subcommands that drive a running gateway through its admin API."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any

import httpx

DEFAULT_ADMIN_URL = "http://127.0.0.1:9180"
TIMEOUT = 10.0
HISTORY_SHOWN = 5

Status = dict[str, Any]


class AdminError(Exception):
    """A request to the admin API failed; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


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
        if response.is_error:
            raise _error_from(response)
        return self._json_object(response)

    def _json_object(self, response: httpx.Response) -> Status:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            content_type = response.headers.get("content-type", "no content type")
            raise AdminError(
                f"the admin API at {self.base_url} answered {response.status_code} "
                f"with something other than a JSON object ({content_type})",
                response.status_code,
            )
        return data


def _error_from(response: httpx.Response) -> AdminError:
    status = response.status_code
    if status == 401:
        return AdminError(
            "the admin API refused the token: set CUTOVER_ADMIN_TOKEN or --token", status
        )
    detail = _problem_detail(response)
    if detail:
        return AdminError(detail, status)
    request = response.request
    return AdminError(
        f"the admin API answered {status} {response.reason_phrase} "
        f"to {request.method} {request.url.path}",
        status,
    )


def _problem_detail(response: httpx.Response) -> str | None:
    try:
        problem = response.json()
    except ValueError:
        return None
    if not isinstance(problem, dict):
        return None
    detail = problem.get("detail") or problem.get("title")
    return str(detail) if detail else None


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


def _client(args: argparse.Namespace) -> AdminClient:
    url = args.admin_url or os.environ.get("CUTOVER_ADMIN_URL") or DEFAULT_ADMIN_URL
    token = args.token or os.environ.get("CUTOVER_ADMIN_TOKEN")
    return AdminClient(url, token)


def _run(
    args: argparse.Namespace,
    call: Callable[[AdminClient], Status],
    render: Callable[[Status], str],
) -> int:
    try:
        with _client(args) as client:
            status = call(client)
    except AdminError as exc:
        print(f"cutover: {exc}", file=sys.stderr)
        return 1
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
    status.add_argument("--json", action="store_true", help="print the raw JSON status")
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
    rollback.add_argument("--reason", metavar="TEXT", help="why (recorded in the history)")
    rollback.set_defaults(func=cmd_rollback)

    set_weight = subparsers.add_parser(
        "set-weight", parents=parents, help="set the share of traffic sent to new by hand"
    )
    set_weight.add_argument("weight", metavar="N", type=weight_arg, help="percent, 0 to 100")
    set_weight.set_defaults(func=cmd_set_weight)

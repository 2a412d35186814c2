"""The ``cutover`` subcommands that drive a running gateway through its admin API: their
arguments, the admin API's address and token (an option, else the environment), and the exit
code of each outcome."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from cutover.cli.client import (
    DEFAULT_ADMIN_URL,
    AdminClient,
    AdminError,
    NotAdminAPI,
    Status,
    token_problem,
    url_problem,
)
from cutover.cli.render import format_action, format_json, format_status

EXIT_FAILED = 1  # the admin API refused or failed the request, or could not be reached
EXIT_USAGE = 2  # a malformed --admin-url or --token, or an address that is not an admin API


class UsageError(Exception):
    """A malformed admin URL or token, from an option or the environment."""


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
        return EXIT_USAGE if isinstance(exc, NotAdminAPI) else EXIT_FAILED
    print(render(status))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    return _run(args, AdminClient.status, format_json if args.json else format_status)


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

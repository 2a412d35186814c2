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
    Migration,
    NotAdminAPI,
    token_problem,
    url_problem,
)
from cutover.cli.render import (
    format_action,
    format_json,
    format_migration,
    format_status,
    number,
)

EXIT_FAILED = 1  # the admin API refused or failed the request, or could not be reached
# A malformed --admin-url, --token or NAME, an address that is not an admin API, or no NAME
# while several migrations are configured.
EXIT_USAGE = 2

Document = dict[str, Any]
Action = Callable[[AdminClient, str], Migration]


class UsageError(Exception):
    """A malformed admin URL or token, from an option or the environment, or a missing NAME."""


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


def run_admin_call(
    args: argparse.Namespace,
    call: Callable[[AdminClient], Document],
    render: Callable[[Document], str],
) -> int:
    try:
        with _client(args) as client:
            document = call(client)
    except UsageError as exc:
        print(f"cutover: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AdminError as exc:
        print(f"cutover: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, NotAdminAPI) else EXIT_FAILED
    print(render(document))
    return 0


def only_migration(client: AdminClient, example: Callable[[str], str]) -> str:
    """The name of the one migration configured; ``example`` shows the command with a name."""
    names = [str(migration["name"]) for migration in client.migrations()["migrations"]]
    if len(names) == 1:
        return names[0]
    if not names:
        raise UsageError("the admin API lists no migrations")
    raise UsageError(
        f"several migrations are configured ({', '.join(names)}): name one, "
        f"e.g. {example(names[0])}"
    )


def _act(args: argparse.Namespace, action: Action, example: Callable[[str], str]) -> int:
    def call(client: AdminClient) -> Migration:
        name = args.name if args.name is not None else only_migration(client, example)
        return action(client, name)

    return run_admin_call(args, call, format_action)


def overview(client: AdminClient) -> Document:
    """The migrations, and the fleet when the admin API shows one."""
    document = client.migrations()
    fleet = client.fleet()
    return document if fleet is None else {**document, "fleet": fleet}


def cmd_status(args: argparse.Namespace) -> int:
    if args.name is None:
        return run_admin_call(args, overview, format_json if args.json else format_status)
    return run_admin_call(
        args,
        lambda client: client.migration(args.name),
        format_json if args.json else format_migration,
    )


def _simple_action(command: str, action: Action) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        return _act(args, action, lambda name: f"cutover {command} {name}")

    return handler


def cmd_rollback(args: argparse.Namespace) -> int:
    return _act(
        args,
        lambda client, name: client.rollback(name, args.reason),
        lambda name: f"cutover rollback {name}",
    )


def cmd_set_weight(args: argparse.Namespace) -> int:
    return _act(
        args,
        lambda client, name: client.set_weight(name, args.weight),
        lambda name: f"cutover set-weight {name} {number(args.weight)}",
    )


def migration_name(text: str) -> str:
    # The name travels as one path segment: a "/" or a dot segment would address another
    # resource, and the router's bare 404 would read as "not an admin API".
    if not text or "/" in text or text in (".", ".."):
        raise argparse.ArgumentTypeError(f"NAME must be a migration's name, got {text!r}")
    return text


def weight_arg(text: str) -> float:
    try:
        weight = float(text)
    except ValueError:
        weight = float("nan")
    if not 0 <= weight <= 100:
        raise argparse.ArgumentTypeError(f"weight must be a number from 0 to 100, got {text!r}")
    return weight


def connection_options() -> argparse.ArgumentParser:
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
    parents = [connection_options()]
    name_help = "the migration (default: the only one configured)"

    status = subparsers.add_parser(
        "status",
        parents=parents,
        help="show the migrations and the fleet, or one migration in detail",
    )
    status.add_argument(
        "name", metavar="NAME", nargs="?", type=migration_name,
        help="show this migration in detail (default: a line per migration)",
    )  # fmt: skip
    status.add_argument(
        "--json", action="store_true", help="print the raw JSON document (default: a summary)"
    )
    status.set_defaults(func=cmd_status)

    actions = [
        ("pause", "pause a migration's rollout at its current weight", AdminClient.pause),
        ("resume", "resume a paused rollout", AdminClient.resume),
        ("promote", "promote a migration's rollout now", AdminClient.promote),
        ("restart", "restart a migration's rollout", AdminClient.restart),
    ]
    for command, help_text, action in actions:
        parser = subparsers.add_parser(command, parents=parents, help=help_text)
        parser.add_argument("name", metavar="NAME", nargs="?", type=migration_name, help=name_help)
        parser.set_defaults(func=_simple_action(command, action))

    rollback = subparsers.add_parser(
        "rollback",
        parents=parents,
        help="send all of a migration's traffic back to its from backend",
    )
    rollback.add_argument("name", metavar="NAME", nargs="?", type=migration_name, help=name_help)
    rollback.add_argument(
        "--reason", metavar="TEXT", help="why, recorded in the history (default: none given)"
    )
    rollback.set_defaults(func=cmd_rollback)

    set_weight = subparsers.add_parser(
        "set-weight",
        parents=parents,
        help="set the share of a migration's traffic sent to its to backend",
    )
    # With one positional it is N: argparse gives an optional positional before a required
    # one only what is left over.
    set_weight.add_argument("name", metavar="NAME", nargs="?", type=migration_name, help=name_help)
    set_weight.add_argument("weight", metavar="N", type=weight_arg, help="percent, 0 to 100")
    set_weight.set_defaults(func=cmd_set_weight)

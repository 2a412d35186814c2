"""``cutover usage [NAME] [--since 7d] [--format table|csv|json]``: the clients still
calling the old API of one migration (or of every one), from the admin API's report."""

from __future__ import annotations

import argparse
from typing import Any

from cutover.cli.commands import connection_options, migration_name, run_admin_call
from cutover.usage.report import DEFAULT_SINCE, ReportFormat, SinceError, parse_since, render


def since_arg(text: str) -> str:
    try:
        parse_since(text)
    except SinceError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def cmd_usage(args: argparse.Namespace) -> int:
    form = ReportFormat(args.format)
    return run_admin_call(
        args,
        lambda client: client.usage(args.name, args.since),
        lambda document: render(document, form).rstrip("\n"),
    )


def add_usage_command(subparsers: Any) -> None:
    usage = subparsers.add_parser(
        "usage",
        parents=[connection_options()],
        help="show the clients still calling a migration's old API",
    )
    usage.add_argument(
        "name", metavar="NAME", nargs="?", type=migration_name,
        help="the migration (default: every migration with a deprecation)",
    )  # fmt: skip
    usage.add_argument(
        "--since", type=since_arg, default=DEFAULT_SINCE,
        help="only clients that called since this long ago, e.g. 12h, 7d, 2w "
        "(default: %(default)s)",
    )  # fmt: skip
    usage.add_argument(
        "--format", choices=list(ReportFormat), default=ReportFormat.TABLE,
        help="table, csv or json (default: %(default)s)",
    )  # fmt: skip
    usage.set_defaults(func=cmd_usage)

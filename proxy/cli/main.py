"""The ``cutover`` command line."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
from collections.abc import Sequence

from cutover.cli.commands import add_admin_commands
from cutover.cli.usage import add_usage_command
from cutover.config import ConfigError, load_settings
from cutover.shadow.report import add_diff_report_command, positive_int

EXIT_CONFIG = 2
ACCESS_LOG_ENABLED = "CUTOVER_ACCESS_LOG__ENABLED"
ACCESS_LOG_PATH = "CUTOVER_ACCESS_LOG__PATH"


def _config_path(args: argparse.Namespace) -> str:
    path = args.config or os.environ.get("CUTOVER_CONFIG")
    if not path:
        raise ConfigError(["config: no config file given (use --config FILE or CUTOVER_CONFIG)"])
    return path


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = load_settings(args.file)
    if settings.listen.tls is not None:
        from cutover.ops.tls import build_context

        build_context(settings.listen.tls)  # TlsError: as `cutover run` would stop
    migrations = settings.migration_list
    shown = ", ".join(f"{m.name} {m.weight:g}%" for m in migrations[:5])
    more = f", and {len(migrations) - 5} more" if len(migrations) > 5 else ""
    count = f"{len(migrations)} migration{'s' if len(migrations) != 1 else ''}"
    print(f"{args.file}: OK ({count}: {shown}{more}; {len(settings.routes)} routes)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from cutover.ops.server import ListenError, serve
    from cutover.rollout.state import SaveError, StateError

    path = _config_path(args)
    if args.access_log is not None:
        # As variables (the environment beats the file): workers and reloads read them too.
        os.environ[ACCESS_LOG_ENABLED] = "true"
        os.environ[ACCESS_LOG_PATH] = args.access_log
    settings = load_settings(path)
    try:
        if args.workers > 1:
            from cutover.ops.workers import serve_workers

            serve_workers(
                settings, config_path=path, workers=args.workers, log_level=args.log_level
            )
        else:
            serve(settings, config_path=path, log_level=args.log_level)
    except StateError as exc:
        for problem in exc.problems:
            print(f"state: {problem}", file=sys.stderr)
        if exc.path is not None:
            print(
                f"state: fix or move {exc.path} away to start fresh (its history is lost then)",
                file=sys.stderr,
            )
        return EXIT_CONFIG
    except SaveError as exc:
        print(f"state: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ListenError as exc:
        print(f"cutover: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from cutover_demo.new_backend.driver import Ports, run_demo

    path = _config_path(args)
    ports = Ports(
        legacy=args.legacy_port, new=args.new_port, proxy=args.proxy_port, admin=args.admin_port
    )
    return run_demo(
        load_settings(path), path, duration=args.duration, rate=args.rate, fault=args.fault,
        ports=ports, access_log=args.access_log,
    )  # fmt: skip


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, got {text!r}")
    return port


def distribution_version() -> str:
    """The installed ``cutover`` distribution's version (its metadata, not a copy here)."""
    try:
        return importlib.metadata.version("cutover")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    # Every option's help states its default in words: "(default: ...)".
    parser = argparse.ArgumentParser(
        prog="cutover",
        description="Migration gateway: move an API from one backend to another, migration by "
        "migration.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {distribution_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the proxy")
    run.add_argument("--config", help="YAML config file (default: $CUTOVER_CONFIG)")
    run.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
        help="the lowest level logged (default: %(default)s)",
    )  # fmt: skip
    run.add_argument(
        "--workers", type=positive_int, default=1,
        help="worker processes sharing the listeners and the rollout state (default: 1)",
    )  # fmt: skip
    run.add_argument(
        "--access-log", nargs="?", const="stdout", metavar="PATH",
        help="write the access log, to stdout or to PATH (default: as the config's access_log "
        "says, off unless enabled)",
    )  # fmt: skip
    run.set_defaults(func=cmd_run)

    check = commands.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("file")
    check.set_defaults(func=cmd_check_config)

    demo = commands.add_parser("demo", help="run both demo backends, the proxy and demo traffic")
    demo.add_argument("--config", help="YAML config file (default: $CUTOVER_CONFIG)")
    demo.add_argument(
        "--duration", type=float, default=None,
        help="stop after N seconds (default: run until every migration is promoted or rolled "
        "back, or Ctrl-C, SIGTERM or SIGHUP)",
    )  # fmt: skip
    demo.add_argument(
        "--rate", type=float, default=50.0, help="demo requests per second (default: %(default)g)"
    )
    demo.add_argument(
        "--fault",
        choices=["error-rate", "latency", "memory"],
        help="inject this fault into the new backend, under the prefix of the first migration "
        "with stages, once it reaches its second stage (default: none)",
    )
    for name, what, config_key in [
        ("proxy", "the proxy listener", "listen.port"),
        ("admin", "the admin API", "admin.port"),
        ("legacy", "the legacy backend", "backends.legacy.url"),
        ("new", "the new backend", "backends.new.url"),
    ]:
        demo.add_argument(
            f"--{name}-port", type=port_number, metavar="PORT",
            help=f"the port of {what} (default: the config's {config_key})",
        )  # fmt: skip
    demo.add_argument(
        "--access-log", action="store_true",
        help="write the proxy's access log to a file and print the tail -f command that shows "
        "it (default: no access log)",
    )  # fmt: skip
    demo.set_defaults(func=cmd_demo)
    add_admin_commands(commands)
    add_usage_command(commands)
    add_diff_report_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

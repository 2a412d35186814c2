"""What Cutover relies on in its dependencies, checked against the installed versions.

pyproject.toml pins each dependency to the range it is tested with. The pins on uvicorn and
httptools are the tight ones: ``proxy/request/protocol.py`` subclasses uvicorn's private httptools
protocol, ``proxy/ops/server.py`` and ``proxy/ops/workers.py`` subclass its server and supervisor,
and ``proxy/ops/server.py`` recognises two of uvicorn's log lines by their text. Before moving
a pin, run this module against the new version: it names what changed.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import importlib
import importlib.metadata
import inspect
import logging
import pkgutil
import socket
import sys
import textwrap
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState
from uvicorn.supervisors import Multiprocess

import cutover
from cutover.config import LimitsConfig
from cutover.ops.server import UNFINISHED_RESPONSE, server_config
from cutover.request.app import RESPONSE_ABANDONED
from cutover.request.fast_protocol import configure
from tests.servers import serve_config

ROOT = Path(__file__).resolve().parents[1]
# The repository's folders, and the import names they install as.
OWN_FOLDERS = ("proxy", "legacy_backend", "new_backend")
OWN_PACKAGES = ("cutover", "cutover_demo")

# What Cutover overrides or calls on uvicorn's classes, with the parameters it passes or
# expects, in order (the base's parameters must start with these). Every uvicorn method a
# Cutover subclass overrides must be listed here, so that a uvicorn release that renames or
# drops it (leaving the override silently never called) fails test_relied_on_api_exists.
RELIED_ON: dict[type, dict[str, tuple[str, ...] | None]] = {
    # proxy/request/protocol.py (None: an attribute, not a method)
    HttpToolsProtocol: {
        "__init__": ("config", "server_state", "app_state", "_loop"),
        "on_message_begin": (),
        "on_url": ("url",),
        "on_header": ("name", "value"),
        "on_headers_complete": (),
        "data_received": ("data",),
        "send_400_response": ("msg",),
        "_should_upgrade": (),
        "on_response_complete": (),
        "cycle": None,  # DrainingServer.shutdown reads connection.cycle
        # proxy/request/ws_handoff.py: what a WebSocket handshake's handover reads
        **dict.fromkeys(("url", "scope", "headers", "scheme", "server", "client", "app"), None),
        # on_message_begin, inlined: what uvicorn's builds the request's scope from
        **dict.fromkeys(("asgi_version", "app_state"), None),
        **dict.fromkeys(("transport", "loop", "connections", "tasks", "server_state"), None),
        "ws_protocol_class": None,
        # proxy/request/fast_protocol.py: what the fast path reads, and the flow control
        "resume_writing": (),
        **dict.fromkeys(("parser", "pipeline", "expect_100_continue", "root_path"), None),
        "flow": None,
        # proxy/request/client_deadlines.py, and on_response_complete in place of uvicorn's
        "connection_made": ("transport",),
        "connection_lost": ("exc",),
        "on_message_complete": (),
        "_start_asgi_task": ("cycle", "app"),
        "timeout_keep_alive": None,
    },
    # proxy/request/fast_exchange.py stands where uvicorn's cycle would: what the protocol
    # reads and sets of it
    RequestResponseCycle: dict.fromkeys(
        (
            "response_complete",
            "response_started",
            "waiting_for_100_continue",  # client_deadlines.py: no body owed before the 100
            "more_body",
            "body",
            "message_event",
            "disconnected",
            "keep_alive",
            "scope",
        ),
        None,
    ),
    FlowControl: {"write_paused": None, "read_paused": None, "resume_reading": ()},
    # proxy/ops/server.py
    uvicorn.Server: {
        "__init__": ("config",),
        "run": ("sockets",),
        "shutdown": ("sockets",),
        "handle_exit": ("sig", "frame"),
        "should_exit": None,
        "force_exit": None,
        "servers": None,
        "server_state": None,
    },
    ServerState: {"connections": None, "tasks": None},
    # proxy/ops/workers.py
    Multiprocess: {
        "__init__": ("config", "sockets"),
        "run": (),
        "terminate_all": (),
        # Where a worker leaves the list (its metrics series are then removed).
        "init_processes": (),
        "keep_subprocess_alive": (),
        "restart_all": (),
        "handle_ttou": (),
        "processes": None,
        "sockets": None,
    },
}
# Keywords proxy/ops/server.py and proxy/ops/workers.py pass to uvicorn.Config.
CONFIG_KEYWORDS = {
    "app", "host", "port", "loop", "http", "lifespan", "log_level", "log_config",
    "access_log", "server_header", "date_header", "proxy_headers", "timeout_keep_alive",
    "timeout_graceful_shutdown", "factory", "workers", "ws",
}  # fmt: skip


# --------------------------------------------------------------------------- the ranges


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def declared() -> list[Requirement]:
    project = pyproject()["project"]
    specs = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    return [Requirement(spec) for spec in specs]


@pytest.mark.parametrize("requirement", declared(), ids=str)
def test_each_dependency_has_a_tested_range(requirement: Requirement) -> None:
    operators = {spec.operator for spec in requirement.specifier}
    assert ">=" in operators and "<" in operators, (
        f"{requirement}: give the tested range, >=MINOR and <NEXT-BREAKING"
    )
    installed = importlib.metadata.version(requirement.name)
    assert requirement.specifier.contains(installed, prereleases=True), (
        f"{requirement.name} {installed} is installed, outside the declared {requirement}"
    )


def imported_distributions() -> dict[str, set[str]]:
    """Third-party distributions imported anywhere in Cutover's packages, with the modules
    importing them (function-level imports included)."""
    by_module = importlib.metadata.packages_distributions()
    found: dict[str, set[str]] = {}
    for folder in OWN_FOLDERS:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.partition(".")[0]
                    if top in sys.stdlib_module_names or top in OWN_PACKAGES:
                        continue
                    for distribution in by_module.get(top, [top]):
                        found.setdefault(canonicalize_name(distribution), set()).add(
                            str(path.relative_to(ROOT))
                        )
    return found


def test_every_imported_distribution_is_declared_directly() -> None:
    runtime = {
        canonicalize_name(Requirement(spec).name) for spec in pyproject()["project"]["dependencies"]
    }
    missing = {name: sorted(where) for name, where in imported_distributions().items()}
    missing = {name: where for name, where in missing.items() if name not in runtime}
    assert not missing, f"imported but not in [project] dependencies: {missing}"


# --------------------------------------------------------------------------- uvicorn's classes


def parameters(function: Any) -> list[str]:
    return [name for name in inspect.signature(function).parameters if name != "self"]


@pytest.mark.parametrize("base", list(RELIED_ON), ids=lambda base: base.__qualname__)
def test_relied_on_api_exists(base: type) -> None:
    provided = instance_attributes(base)
    for name, expected in RELIED_ON[base].items():
        if expected is None:
            assert hasattr(base, name) or name in provided, (
                f"uvicorn's {base.__qualname__} no longer has the attribute {name!r}"
            )
            continue
        assert callable(getattr(base, name, None)), (
            f"uvicorn's {base.__qualname__} no longer has {name}(): Cutover overrides or calls it"
        )
        found = parameters(getattr(base, name))
        assert found[: len(expected)] == list(expected), (
            f"uvicorn's {base.__qualname__}.{name} now takes {found}, Cutover expects {expected}"
        )


def test_config_takes_the_keywords_cutover_passes() -> None:
    missing = CONFIG_KEYWORDS - set(parameters(uvicorn.Config.__init__))
    assert not missing, f"uvicorn.Config no longer takes {sorted(missing)}"


def cutover_subclasses() -> Iterator[tuple[type, type]]:
    """(Cutover class, the first uvicorn class it derives from) for every such class."""
    for info in pkgutil.walk_packages(cutover.__path__, "cutover."):
        if info.name == "cutover.__main__":
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if not isinstance(value, type) or value.__module__ != module.__name__:
                continue
            for base in value.__mro__[1:]:
                if base.__module__.partition(".")[0] == "uvicorn":
                    yield value, base
                    break


SUBCLASSES = sorted(cutover_subclasses(), key=lambda pair: pair[0].__qualname__)


def test_the_subclasses_are_found() -> None:
    # The checks below are only as good as this discovery.
    names = {cls.__qualname__ for cls, _ in SUBCLASSES}
    assert {"BoundedHttpToolsProtocol", "DrainingServer", "DrainingSupervisor"} <= names


def uvicorn_classes(base: type) -> list[type]:
    return [cls for cls in base.__mro__ if cls.__module__.partition(".")[0] == "uvicorn"]


def instance_attributes(base: type) -> set[str]:
    """Names uvicorn's classes in ``base``'s MRO assign as ``self.NAME``."""
    names: set[str] = set()
    for cls in uvicorn_classes(base):
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
            ):
                names.add(node.attr)
    return names


@pytest.mark.parametrize(("cls", "base"), SUBCLASSES, ids=lambda c: c.__qualname__)
def test_overrides_are_declared_and_keep_the_signature(cls: type, base: type) -> None:
    declared_names = {
        name
        for uvicorn_class in uvicorn_classes(base)
        for name, kind in RELIED_ON.get(uvicorn_class, {}).items()
        if kind is not None
    }
    for name, value in vars(cls).items():
        if not callable(value) or not hasattr(base, name):
            continue
        if name.startswith("__") and name != "__init__":
            continue
        assert name in declared_names, (
            f"{cls.__qualname__} now also overrides uvicorn's {base.__qualname__}.{name}: "
            f"add it to RELIED_ON in tests/test_dependencies.py"
        )
        kinds = {p.kind for p in inspect.signature(value).parameters.values()}
        if kinds >= {inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD}:
            continue  # (*args, **kwargs): passes anything on
        # Keyword-only parameters with defaults of Cutover's own leave uvicorn's calls valid.
        own = [
            p.name
            for p in inspect.signature(value).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is not p.empty
        ]
        ours = [name for name in parameters(value) if name not in own]
        theirs = parameters(getattr(base, name))
        if name == "__init__":
            ours = ours[: len(theirs)]  # Cutover builds these itself, passing uvicorn's on
        assert ours == theirs, (
            f"{cls.__qualname__}.{name}{inspect.signature(value)} no longer matches "
            f"uvicorn's {base.__qualname__}.{name}{inspect.signature(getattr(base, name))}"
        )


@pytest.mark.parametrize(("cls", "base"), SUBCLASSES, ids=lambda c: c.__qualname__)
def test_what_the_subclasses_use_is_still_there(cls: type, base: type) -> None:
    """Every ``self.X`` a Cutover subclass reads without defining it, and every
    ``super().X``, must come from uvicorn's class."""
    # What Cutover's own classes between it and uvicorn's define counts as its own.
    cutover_classes = [c for c in cls.__mro__ if c.__module__.startswith("cutover.")]
    trees = [ast.parse(textwrap.dedent(inspect.getsource(c))) for c in cutover_classes]
    own = {name for c in cutover_classes for name in vars(c)}
    used: set[str] = set()
    own |= {
        node.attr
        for tree in trees[1:]
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
        and isinstance(node.ctx, ast.Store)
    }
    tree = trees[0]
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        target = node.value
        if isinstance(target, ast.Name) and target.id == "self":
            if isinstance(node.ctx, ast.Store):
                own.add(node.attr)
            else:
                used.add(node.attr)
        elif (
            isinstance(target, ast.Call)
            and isinstance(target.func, ast.Name)
            and target.func.id == "super"
        ):
            assert (
                hasattr(base, node.attr)
                or any(  # or a Cutover class between them
                    node.attr in vars(c) for c in cutover_classes[1:]
                )
            ), (
                f"{cls.__qualname__} calls super().{node.attr}, which uvicorn's "
                f"{base.__qualname__} no longer has"
            )
    provided = instance_attributes(base)
    missing = sorted(
        name for name in used - own if not hasattr(base, name) and name not in provided
    )
    assert not missing, (
        f"{cls.__qualname__} uses {missing}, which uvicorn's {base.__qualname__} no longer sets"
    )


# --------------------------------------------------------------------------- uvicorn's log lines


class Records(logging.Handler):
    """What reaches uvicorn's error logger after its filters (proxy/ops/server.py's)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        return [record.getMessage() for record in self.records]


@contextlib.contextmanager
def uvicorn_errors() -> Iterator[Records]:
    """Attached after the config is made: uvicorn.Config applies its logging config (which
    replaces the logger's handlers) when it is created."""
    handler = Records()
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def cutover_config(app: Any, **overrides: Any) -> uvicorn.Config:
    """proxy/ops/server.py's uvicorn config (its logging filters, its protocol) around ``app``."""
    return server_config(
        app, log_level="warning", loop="asyncio", lifespan="off",
        http=configure(LimitsConfig()), **overrides,
    )  # fmt: skip


def address(url: str) -> tuple[str, int]:
    host, _, port = url.removeprefix("http://").partition(":")
    return host, int(port)


def raw_get(url: str) -> bytes:
    with socket.create_connection(address(url), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        return sock.recv(65536)


def test_unfinished_response_line_is_the_text_the_filter_drops() -> None:
    abandon = False

    async def app(scope: Any, receive: Any, send: Any) -> None:
        RESPONSE_ABANDONED.set(abandon)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})

    config = cutover_config(app)
    with uvicorn_errors() as errors, serve_config(config) as url:
        raw_get(url)  # returns once uvicorn has closed the connection
        abandon = True
        raw_get(url)
    # Logged, as the exact text, for the first request; dropped for the abandoned one.
    assert errors.messages() == [UNFINISHED_RESPONSE]


def test_grace_cancellation_is_recognised_by_its_text() -> None:
    started = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        started.set()
        await asyncio.Event().wait()  # never answers: the grace runs out

    config = cutover_config(app, timeout_graceful_shutdown=0.2)
    # Exits in reverse: the server shuts down while the client still waits, then it closes.
    with uvicorn_errors() as errors, contextlib.ExitStack() as client, serve_config(config) as url:
        sock = client.enter_context(socket.create_connection(address(url), timeout=5))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        assert started.wait(5), "the request did not reach the app"
    assert "request cut off: the shutdown grace ran out" in errors.messages()
    assert not any(record.exc_info for record in errors.records), errors.messages()

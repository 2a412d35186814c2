"""Inputs at the command line's edges: each bad one gets one clear line and exit 2, never a
traceback or a silent default; ``--version`` and the help's defaults."""

from __future__ import annotations

import argparse
import http.server
import importlib.metadata
import re
import subprocess
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from cutover.cli.main import build_parser, main
from cutover.config import NOT_SETTINGS, Settings, unknown_setting
from cutover.ops.server import uvicorn_config
from tests.conftest import make_settings
from tests.processes import clean_env, cutover_command, free_port
from tests.servers import serve, serve_config, serve_stdlib

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = (
    "backends: {legacy: {url: 'http://127.0.0.1:8001'}, new: {url: 'http://127.0.0.1:8002'}}\n"
)


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    """What the command printed on stderr: exactly one line, no traceback."""
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    return lines[0]


def check_config(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["check-config", str(path)]) == 2
    return one_line(capsys)


# --------------------------------------------------------------------------- the config file


def test_a_config_that_is_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(BACKENDS.encode() + "split: {weight: 5}  # café\n".encode("latin-1"))
    assert check_config(path, capsys) == f"config: {path} is not UTF-8 text (byte 0xe9 on line 2)"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("1: x", "1: keys must be strings; YAML read this one as int (quote it)"),
        (
            "on: x",
            "True: keys must be strings; YAML reads an unquoted yes/no/on/off/true/false as a "
            "boolean (quote it)",
        ),
    ],
)
def test_a_top_level_key_that_is_not_a_string(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, expected: str
) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(BACKENDS + line + "\n", encoding="utf-8")
    assert check_config(path, capsys) == expected


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        (
            r"https://example.com/guide\r\nSet-Cookie: a=1",
            r"must not contain control characters such as CR or LF, found '\r'",
        ),
        (r"https://example.com/guide\nX: 1", r"must not contain control characters such as CR"),
        (
            "https://example.com/guide/€",
            "contains '€', outside Latin-1 (a header cannot carry it): percent-encode it as "
            "%E2%82%AC",
        ),
        ("https://example.com/a guide", "must not contain ' ': percent-encode it"),
        ("https://example.com/>; rel=x", "must not contain '>': percent-encode it"),
    ],
)
def test_a_deprecation_link_a_header_cannot_carry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], link: str, expected: str
) -> None:
    path = tmp_path / "link.yaml"
    path.write_text(
        BACKENDS + f'deprecation: {{deprecated_at: 2026-12-01, link: "{link}"}}\n',
        encoding="utf-8",
    )
    line = check_config(path, capsys)
    assert line.startswith(f"deprecation.link: {expected}"), line


def test_a_latin1_deprecation_link_is_sent_as_is() -> None:
    from cutover.request.deprecation import deprecation_headers

    settings = make_settings(
        deprecation={"deprecated_at": "2026-12-01", "link": "https://example.com/café"}
    )
    assert (b"link", '<https://example.com/café>; rel="deprecation"'.encode("latin-1")) in (
        deprecation_headers(settings.deprecation)
    )


# --------------------------------------------------------------------------- CUTOVER_* variables


def check_config_with(env: dict[str, str], path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cutover_command(), "check-config", str(path)],
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("CUTOVER_SPLT__WEIGHT", "names no setting (the config has no 'splt'); did you mean "
         "CUTOVER_SPLIT?"),
        ("CUTOVER_SPLIT__WEIGT", "names no setting (split has no 'weigt'); did you mean "
         "CUTOVER_SPLIT__WEIGHT?"),
        ("CUTOVER_SPLIT__WEIGHT__X", "names no setting (split.weight is a value, not a section)"),
        ("CUTOVER_ROUTES__0__PREFIX", "names no setting (routes is a list: set CUTOVER_ROUTES to "
         "all of it, as JSON)"),
        ("CUTOVER_ADMIN__TOKEN", "names no setting (admin has no 'token')"),
        ("cutover_listen__prt", "names no setting (listen has no 'prt'); did you mean "
         "CUTOVER_LISTEN__PORT?"),
    ],
)  # fmt: skip
def test_a_cutover_variable_that_names_no_setting(tmp_path: Path, name: str, expected: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(BACKENDS, encoding="utf-8")
    result = check_config_with({name: "25"}, path)
    assert result.returncode == 2, result
    assert result.stderr == f"{name}: {expected}\n"
    assert result.stdout == ""


def test_the_variables_that_are_not_settings_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(BACKENDS, encoding="utf-8")
    env = dict.fromkeys(NOT_SETTINGS, "x")
    migrations = '[{"name": "from-env", "match": {"prefix": "/x"}, "from": "legacy", "to": "new"}]'
    env.update(
        CUTOVER_ADMIN_TOKEN="t", CUTOVER_SPLIT__STICKY="client_ip", CUTOVER_MIGRATIONS=migrations
    )
    result = check_config_with(env, path)
    assert (result.returncode, result.stderr) == (0, ""), result
    assert "1 migration (from-env)" in result.stdout  # the settings from the environment apply


# Names the docs and tests use on purpose as examples of a misspelt variable.
MISSPELT_EXAMPLES = {"CUTOVER_SPLT__WEIGHT", "CUTOVER_SPLIT__WEIGT", "CUTOVER_SPLIT__WEIGHT__X",
                     "CUTOVER_ROUTES__0__PREFIX", "CUTOVER_ADMIN__TOKEN"}  # fmt: skip


def test_every_cutover_variable_the_project_uses_is_a_setting_or_listed() -> None:
    """A new CUTOVER_* variable (read by a command, set by a test) must be a setting or be
    added to cutover.config.NOT_SETTINGS, or every config load would refuse it."""
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    names: dict[str, str] = {}
    for relative in filter(None, tracked.split("\0")):
        path = ROOT / relative
        if path.suffix not in {".py", ".md", ".yml", ".yaml", ".toml", ".sh", ""} or not (
            path.is_file()
        ):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for name in re.findall(r"\bCUTOVER_[A-Z0-9_]*[A-Z0-9]\b", text):
            names.setdefault(name, relative)
    assert "CUTOVER_ADMIN_URL" in names  # the scan sees proxy/cli/commands.py
    refused = {
        name: where
        for name, where in names.items()
        if name not in NOT_SETTINGS
        and name not in MISSPELT_EXAMPLES
        and unknown_setting(name) is not None
    }
    assert not refused, f"CUTOVER_* names that are neither settings nor in NOT_SETTINGS: {refused}"
    assert "admin_token" in Settings.model_fields  # CUTOVER_ADMIN_TOKEN is a setting


# --------------------------------------------------------------------------- admin commands


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["--admin-url", "localhost:9180"],
            "cutover: --admin-url: must be an http:// or https:// URL with a host, "
            "got 'localhost:9180'",
        ),
        (["--admin-url", "http://[::1"], "cutover: --admin-url: 'http://[::1' is not a valid URL"),
        (
            ["--admin-url", "http://127.0.0.1:99999"],
            "cutover: --admin-url: 'http://127.0.0.1:99999",
        ),
        (["--admin-url", "http://host/?x=1"], "cutover: --admin-url: must not have a query"),
        (
            ["--token", "tøken"],
            "cutover: --token: must be printable ASCII (it is sent in a header); 'ø' is not ASCII",
        ),
        (["--token", "a\nb"], "cutover: --token: must be printable ASCII (it is sent in a header)"),
    ],
)
def test_a_malformed_admin_url_or_token(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", *argv]) == 2
    assert one_line(capsys).startswith(expected)


def test_a_malformed_admin_url_from_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CUTOVER_ADMIN_URL", "127.0.0.1:9180")
    assert main(["pause"]) == 2
    assert one_line(capsys).startswith("cutover: CUTOVER_ADMIN_URL: must be an http:// or")
    monkeypatch.delenv("CUTOVER_ADMIN_URL")
    monkeypatch.setenv("CUTOVER_ADMIN_TOKEN", "jeton-€")
    assert main(["pause"]) == 2
    assert one_line(capsys).startswith("cutover: CUTOVER_ADMIN_TOKEN: must be printable ASCII")


@contextmanager
def plain_http_server() -> Iterator[str]:
    """The standard library's file server: 404 for GET /migrations, 501 for POST."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    with serve_stdlib(Quiet) as url:
        yield url


@pytest.mark.parametrize(
    ("argv", "request_line", "status"),
    [
        (["status"], "GET /migrations", 404),
        (["pause"], "GET /migrations", 404),  # looking for the only migration
        (["pause", "default"], "POST /migrations/default/pause", 501),
    ],
)
def test_an_admin_command_pointed_at_another_server(
    argv: list[str], request_line: str, status: int, capsys: pytest.CaptureFixture[str]
) -> None:
    with plain_http_server() as url:
        assert main([*argv, "--admin-url", url]) == 2
    assert one_line(capsys).startswith(
        f"cutover: {url} is not a Cutover admin API: it answered {request_line} with {status} "
    )


def test_an_admin_command_pointed_at_a_json_api(capsys: pytest.CaptureFixture[str]) -> None:
    async def listing(request: Any) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    with serve(Starlette(routes=[Route("/migrations", listing)])) as url:
        assert main(["status", "--admin-url", url]) == 2
    assert one_line(capsys) == (
        f"cutover: {url} is not a Cutover admin API: it answered GET /migrations with a JSON "
        "object that is not a list of migrations"
    )


def test_an_admin_command_pointed_at_the_proxy_listener(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def not_found(request: Any) -> JSONResponse:
        return JSONResponse({"detail": "Not Found"}, status_code=404)

    backend = Starlette(routes=[Route("/{path:path}", not_found, methods=["GET", "POST"])])
    with serve(backend) as backend_url:
        # Legacy answers 404 (as FastAPI would); new is down (the proxy's own 502).
        settings = make_settings(
            backends={
                "legacy": {"url": backend_url},
                "new": {"url": f"http://127.0.0.1:{free_port()}"},
            },
            routes=[{"prefix": "/migrations/default", "backend": "new"}],
        )
        with serve_config(uvicorn_config(settings, log_level="critical")) as proxy_url:
            assert main(["status", "--admin-url", proxy_url]) == 2
            assert one_line(capsys) == (
                f"cutover: {proxy_url} is Cutover's proxy listener, not its admin API (GET "
                "/migrations went to the legacy backend): use the config's admin.host and "
                "admin.port (default http://127.0.0.1:9180)"
            )
            assert main(["promote", "default", "--admin-url", proxy_url]) == 2
            assert "(POST /migrations/default/promote went to the new backend)" in one_line(capsys)


# --------------------------------------------------------------------------- --version, --help


def test_version_is_the_installed_distribution() -> None:
    result = subprocess.run(
        [*cutover_command(), "--version"], capture_output=True, text=True, timeout=60
    )
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert result.returncode == 0, result
    assert result.stdout == f"cutover {version}\n"
    assert version == importlib.metadata.version("cutover")


def every_parser(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield parser.prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from every_parser(sub)


def test_every_option_states_its_default() -> None:
    missing = [
        f"{prog} {action.option_strings[0]}"
        for prog, parser in every_parser(build_parser())
        for action in parser._actions
        if action.option_strings
        and action.dest not in ("help", "version")
        and "(default: " not in (action.help or "")
    ]
    assert not missing, f"options whose help does not state the default: {missing}"
    # And the help shows it, %-expanded.
    help_text = next(p for prog, p in every_parser(build_parser()) if prog == "cutover run")
    assert "(default: info)" in help_text.format_help()

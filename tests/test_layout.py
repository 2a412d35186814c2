"""The package's layout rules, checked on the source: the hot path imports nothing from the
control plane, no import cycles, small modules, config classes named ``*Config``."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

import cutover

PACKAGE = Path(cutover.__file__).parent
HOT_PATH = ("cutover.request", "cutover.upstream")
CONTROL_PLANE = (
    "cutover.rollout",
    "cutover.ops",
    "cutover.cli",
    "cutover.shadow",
    "cutover.usage",
    "cutover.console",
)
MAX_LINES = 300
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def module_name(path: Path) -> str:
    parts = ["cutover", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """Every module of the package that ``name`` imports, lazily or not."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == package or name.startswith(package + ".") for package in packages)


def test_the_hot_path_imports_nothing_from_the_control_plane() -> None:
    offences = [
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        if within(name, HOT_PATH)
        for target in sorted(targets)
        if within(target, CONTROL_PLANE)
    ]
    assert offences == []


def test_no_import_cycles() -> None:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(GRAPH[name]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in MODULES:
        if name not in state:
            visit(name, [name])
    assert cycles == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_are_small(name: str) -> None:
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines"


def test_config_classes_are_named_config() -> None:
    from pydantic import BaseModel

    from cutover import config

    names = [
        value.__name__
        for value in vars(config).values()
        if isinstance(value, type)
        and issubclass(value, BaseModel)
        and value.__module__.startswith("cutover.config")
    ]
    assert names, "no config classes found"
    assert [name for name in names if not name.endswith(("Config", "Settings"))] == []


def test_no_class_name_means_two_things() -> None:
    defined: dict[str, list[str]] = {}
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                defined.setdefault(node.name, []).append(name)
    assert {name: where for name, where in defined.items() if len(where) > 1} == {}


def test_every_package_folder_is_installed() -> None:
    """pyproject.toml lists the packages by hand (the folder is not named like the package):
    a new sub-package missing from the list would be left out of the wheel."""
    listed = set(tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["packages"])
    folders = {name for name, path in MODULES.items() if path.name == "__init__.py"}
    assert folders - listed == set()


def test_the_layout_checker_sees_an_offence() -> None:
    # The checks above must be able to fail: the forwarder really imports the upstream seam.
    assert "cutover.upstream.base" in GRAPH["cutover.request.forwarder"]

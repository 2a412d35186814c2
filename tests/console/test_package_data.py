"""An installed wheel carries the console's templates and static files: every one of them
matches pyproject's package-data for ``cutover.console``."""

from __future__ import annotations

import tomllib
from pathlib import Path

import cutover.console

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(cutover.console.__file__).parent


def test_every_template_and_static_file_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    globs = config["tool"]["setuptools"]["package-data"]["cutover.console"]
    files = [p for folder in ("templates", "static") for p in (HERE / folder).iterdir()]
    assert files
    missed = [
        p.relative_to(HERE) for p in files if not any(p.relative_to(HERE).match(g) for g in globs)
    ]
    assert missed == []

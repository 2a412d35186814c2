"""The ops tests' respx router, shared: the console runs in the gateway they build."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ops.conftest import router, write_migrations

__all__ = ["router"]


@pytest.fixture
def migrations_path(tmp_path: Path) -> Path:
    path = tmp_path / "cutover.yaml"
    write_migrations(path)
    return path

"""Tests of cutover.config, one file per module; the helpers below are shared by them."""

from __future__ import annotations

import pytest

from cutover.config import ConfigError, parse_settings

BACKENDS = {"legacy": {"url": "http://127.0.0.1:8001"}, "new": {"url": "http://127.0.0.1:8002"}}


def problems(data: dict) -> list[str]:
    """The problems parse_settings finds in ``data`` (it must find some)."""
    with pytest.raises(ConfigError) as info:
        parse_settings(data)
    return info.value.problems

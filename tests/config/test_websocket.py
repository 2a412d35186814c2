"""The ``websocket`` section."""

from __future__ import annotations

import pytest

from cutover.config import ConfigError
from tests.conftest import make_settings


def test_sockets_stay_open_on_a_rollback_by_default() -> None:
    assert make_settings().websocket.close_on_rollback is False
    assert make_settings(websocket={"close_on_rollback": True}).websocket.close_on_rollback


def test_an_unknown_key_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"websocket\.close_on_rolback"):
        make_settings(websocket={"close_on_rolback": True})

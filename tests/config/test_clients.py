"""The ``clients`` and ``usage`` sections: what identifies a client, and that a hashing
key is required for secrets and read from the environment only."""

from __future__ import annotations

import pytest

from cutover.config import ConfigError
from cutover.vocabulary import ClientIdentity
from tests.conftest import make_settings

KEY = "a-hash-key-of-32-characters-0123"


def test_the_default_identifies_clients_by_address() -> None:
    settings = make_settings()
    assert settings.clients.kind == ClientIdentity.CLIENT_IP
    assert str(settings.usage.path) == "cutover-usage.sqlite3"
    assert settings.usage.retention_days == 90


@pytest.mark.parametrize(
    ("identify", "kind", "header"),
    [
        ("header:X-Client-Id", ClientIdentity.HEADER, "X-Client-Id"),
        ("api_key:X-API-Key", ClientIdentity.API_KEY, "X-API-Key"),
        ("bearer", ClientIdentity.BEARER, None),
        ("client_ip", ClientIdentity.CLIENT_IP, None),
    ],
)
def test_each_kind_of_identity(
    monkeypatch: pytest.MonkeyPatch, identify: str, kind: ClientIdentity, header: str | None
) -> None:
    monkeypatch.setenv("CUTOVER_CLIENTS__HASH_KEY", KEY)
    clients = make_settings(clients={"identify": identify}).clients
    assert (clients.kind, clients.header) == (kind, header)


@pytest.mark.parametrize("identify", ["cookie:id", "header:", "header:X Id", "api_key", "ip"])
def test_a_bad_identify_names_the_field(identify: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_settings(clients={"identify": identify})
    assert caught.value.problems[0].startswith("clients.identify: ")


@pytest.mark.parametrize(("identify", "kind"), [("api_key:X-API-Key", "api_key"),
                                                ("bearer", "bearer")])  # fmt: skip
def test_secrets_need_a_hash_key(identify: str, kind: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_settings(clients={"identify": identify})
    assert caught.value.problems == [
        f"clients.hash_key: identify {kind} needs a secret: set CUTOVER_CLIENTS__HASH_KEY"
    ]


def test_the_hash_key_is_refused_in_the_file() -> None:
    with pytest.raises(ConfigError) as caught:
        make_settings(clients={"identify": "bearer", "hash_key": KEY})
    assert caught.value.problems == [
        "clients.hash_key: keep it out of the file; set CUTOVER_CLIENTS__HASH_KEY"
    ]


def test_a_short_hash_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUTOVER_CLIENTS__HASH_KEY", "short")
    with pytest.raises(ConfigError) as caught:
        make_settings(clients={"identify": "bearer"})
    assert caught.value.problems == ["clients.hash_key: must be at least 16 characters"]


@pytest.mark.parametrize(
    ("usage", "problem"),
    [
        ({"retention_days": 0}, "usage.retention_days: Input should be greater than or equal to 1"),
        ({"flush_interval": 0}, "usage.flush_interval: must be greater than 0"),
    ],
)
def test_usage_bounds(usage: dict, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_settings(usage=usage)
    assert caught.value.problems == [problem]

"""Telling clients apart (cutover.request.clients): a header, an API key, a bearer token or
the address; secrets only ever as keyed hashes with their last four characters."""

from __future__ import annotations

from hashlib import blake2b

import pytest

from cutover.config import ClientsConfig
from cutover.request.clients import KNOWN_KEPT, UNIDENTIFIED, ClientId, ClientIdentifier
from cutover.types import RawHeaders

KEY = "a-hash-key-of-32-characters-0123"
SECRET = "sk_live_4f9a8b7c6d5e0042"
ADDRESS = ("10.1.2.3", 51000)


def identifier(identify: str, key: str | None = KEY) -> ClientIdentifier:
    return ClientIdentifier(ClientsConfig(identify=identify, hash_key=key))


def expected_hash(secret: str, key: str = KEY) -> str:
    return "h:" + blake2b(secret.encode(), key=key.encode(), digest_size=16).hexdigest()


def test_header_identity_is_the_value() -> None:
    headers: RawHeaders = [(b"x-client-id", b"partner-42")]
    assert identifier("header:X-Client-Id").identify(headers, ADDRESS) == ClientId(
        "partner-42", None
    )


@pytest.mark.parametrize(
    "value", [b"", b"   ", b"x" * 257, b"bad\x01value", "caf\u00e9".encode("latin-1")]
)
def test_a_header_value_that_is_no_name_is_unidentified(value: bytes) -> None:
    headers: RawHeaders = [(b"x-client-id", value)]
    assert identifier("header:X-Client-Id").identify(headers, ADDRESS) == UNIDENTIFIED


def test_a_missing_header_is_unidentified() -> None:
    assert identifier("header:X-Client-Id").identify([(b"x-other", b"a")], ADDRESS) == UNIDENTIFIED


def test_api_key_is_a_keyed_hash_with_its_last_four() -> None:
    client = identifier("api_key:X-API-Key").identify([(b"x-api-key", SECRET.encode())], None)
    assert client == ClientId(expected_hash(SECRET), "0042")
    assert SECRET not in client.key
    assert len(client.key) == 2 + 32


def test_a_short_secret_shows_no_hint() -> None:
    client = identifier("api_key:X-API-Key").identify([(b"x-api-key", b"short-key")], None)
    assert client == ClientId(expected_hash("short-key"), None)


def test_the_hash_depends_on_the_key() -> None:
    headers: RawHeaders = [(b"x-api-key", SECRET.encode())]
    one = identifier("api_key:X-API-Key").identify(headers, None)
    other = identifier("api_key:X-API-Key", "another-key-of-32-characters-999").identify(
        headers, None
    )
    assert one.key != other.key
    # Unkeyed, anyone could hash a guessed key and find it in the report.
    assert one.key != "h:" + blake2b(SECRET.encode(), digest_size=16).hexdigest()


def test_bearer_identity_hashes_the_token() -> None:
    headers: RawHeaders = [(b"authorization", f"Bearer {SECRET}".encode())]
    assert identifier("bearer").identify(headers, None) == ClientId(expected_hash(SECRET), "0042")
    lower = [(b"authorization", f"bearer  {SECRET} ".encode())]
    assert identifier("bearer").identify(lower, None) == ClientId(expected_hash(SECRET), "0042")


@pytest.mark.parametrize("value", [b"Basic dXNlcjpwYXNz", b"Bearer", b"Bearer   "])
def test_other_authorization_is_unidentified(value: bytes) -> None:
    assert identifier("bearer").identify([(b"authorization", value)], None) == UNIDENTIFIED


def test_client_ip_is_the_address() -> None:
    assert identifier("client_ip", None).identify([], ADDRESS) == ClientId("10.1.2.3", None)
    assert identifier("client_ip", None).identify([], None) == UNIDENTIFIED


def test_a_key_longer_than_blake2b_takes_is_hashed_down() -> None:
    long_key = "k" * 100
    client = identifier("bearer", long_key).identify([(b"authorization", b"Bearer tok")], None)
    assert client.key.startswith("h:")


def test_a_header_value_seen_again_is_the_same_client_and_few_values_are_kept() -> None:
    clients = identifier("header:X-Client-Id")
    first = [clients.identify([(b"x-client-id", b"app-%d" % i)], None) for i in range(3)]
    for i in range(KNOWN_KEPT + 10):  # more distinct values than are kept
        clients.identify([(b"x-client-id", b"one-off-%d" % i)], None)
    again = [clients.identify([(b"x-client-id", b"app-%d" % i)], None) for i in range(3)]
    assert again == first == [ClientId(f"app-{i}", None) for i in range(3)]
    assert len(clients._known) <= KNOWN_KEPT

"""Who sent a request, as the usage report names it: a header's value, the client's
address, or, for an API key or a bearer token, a keyed BLAKE2b hash of the secret (the
secret itself is never kept) with its last four characters for recognition.

A header value that is empty, longer than ``MAX_VALUE`` bytes or not printable ASCII is
no identity (the request counts as ``UNIDENTIFIED``): it would be stored as it is, and
such a value is more likely a mistake or a secret than a client's name."""

from __future__ import annotations

import re
from dataclasses import dataclass
from hashlib import blake2b

from cutover.config import ClientsConfig
from cutover.types import RawHeaders
from cutover.vocabulary import ClientIdentity

MAX_VALUE = 256  # bytes of a header value kept as an identity
HINT_MIN = 12  # a secret's last four characters are shown only when it has at least this many
DIGEST_SIZE = 16  # bytes: 32 hex digits
_PRINTABLE = re.compile(rb"[\x20-\x7e]+")


@dataclass(frozen=True, slots=True)
class ClientId:
    key: str  # stored and shown: header value / address; api_key, bearer: "h:" + 32 hex
    hint: str | None  # api_key, bearer: the secret's last four characters (if ≥ 12), else None


UNIDENTIFIED = ClientId("-", None)


def hash_key_bytes(secret: str) -> bytes:
    """The BLAKE2b key for ``secret``: itself, or its digest when over BLAKE2b's 64 bytes."""
    raw = secret.encode("utf-8")
    return raw if len(raw) <= 64 else blake2b(raw, digest_size=64).digest()


class ClientIdentifier:
    def __init__(self, config: ClientsConfig) -> None:
        self.kind = config.kind
        header = config.header or ("authorization" if self.kind == ClientIdentity.BEARER else "")
        self.header = header.lower().encode("latin-1")
        secret = config.hash_key.get_secret_value() if config.hash_key is not None else ""
        self._key = hash_key_bytes(secret) if secret else b""

    def identify(self, headers: RawHeaders, client: tuple[str, int] | None) -> ClientId:
        if self.kind == ClientIdentity.CLIENT_IP:
            return ClientId(client[0], None) if client is not None else UNIDENTIFIED
        value = next((value for name, value in headers if name == self.header), None)
        if value is None:
            return UNIDENTIFIED
        if self.kind == ClientIdentity.BEARER:
            scheme, _, credentials = value.strip().partition(b" ")
            if scheme.lower() != b"bearer":
                return UNIDENTIFIED
            value = credentials
        value = value.strip()
        if not value:
            return UNIDENTIFIED
        if self.kind == ClientIdentity.HEADER:
            if len(value) > MAX_VALUE or not _PRINTABLE.fullmatch(value):
                return UNIDENTIFIED
            return ClientId(value.decode("ascii"), None)
        return self.hashed(value)

    def hashed(self, secret: bytes) -> ClientId:
        digest = blake2b(secret, key=self._key, digest_size=DIGEST_SIZE).hexdigest()
        tail = secret[-4:]
        show = len(secret) >= HINT_MIN and _PRINTABLE.fullmatch(tail) is not None
        return ClientId("h:" + digest, tail.decode("ascii") if show else None)

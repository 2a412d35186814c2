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
KNOWN_KEPT = 4096  # header values whose identity is remembered
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
        self._by_address = self.kind == ClientIdentity.CLIENT_IP
        self._by_header = self.kind == ClientIdentity.HEADER
        # A header's value → its identity, for the last KNOWN_KEPT values: clients are few and
        # call often. Never a secret's (api_key, bearer): those are hashed and forgotten.
        self._known: dict[bytes, ClientId] = {}

    def identify(self, headers: RawHeaders, client: tuple[str, int] | None) -> ClientId:
        if self._by_address:
            return ClientId(client[0], None) if client is not None else UNIDENTIFIED
        wanted, value = self.header, None
        for name, field in headers:
            if name == wanted:
                value = field
                break
        if value is None:
            return UNIDENTIFIED
        if self._by_header:
            known = self._known.get(value)
            if known is None:
                known = self.named(value)
                if len(value) <= MAX_VALUE:
                    if len(self._known) >= KNOWN_KEPT:
                        self._known.clear()
                    self._known[value] = known
            return known
        if self.kind == ClientIdentity.BEARER:
            scheme, _, credentials = value.strip().partition(b" ")
            if scheme.lower() != b"bearer":
                return UNIDENTIFIED
            value = credentials
        value = value.strip()
        if not value:
            return UNIDENTIFIED
        return self.hashed(value)

    @staticmethod
    def named(value: bytes) -> ClientId:
        """The identity a header's own value makes (``identify: header:NAME``)."""
        value = value.strip()
        if not value or len(value) > MAX_VALUE or not _PRINTABLE.fullmatch(value):
            return UNIDENTIFIED
        return ClientId(value.decode("ascii"), None)

    def hashed(self, secret: bytes) -> ClientId:
        digest = blake2b(secret, key=self._key, digest_size=DIGEST_SIZE).hexdigest()
        tail = secret[-4:]
        show = len(secret) >= HINT_MIN and _PRINTABLE.fullmatch(tail) is not None
        return ClientId("h:" + digest, tail.decode("ascii") if show else None)

"""Request ids: a client's ``X-Request-Id`` is kept when it is printable ASCII of at most
128 characters, else one is made (128 random bits in hex, as nginx's ``$request_id``). The
id replaces what the client sent in the request's headers, so it is what goes upstream
(and to the mirror), and it is stamped on every answer, the proxy's own problems included.

Always on: taking the id is one scan of the request's headers, making one is a draw from
``random`` (an id needs to be unique, not secret: ``os.urandom`` is a system call, and a
slow one on some virtual machines), and the stamp is one extra call per response message
(README, "Access log and request ids", has the measurement)."""

from __future__ import annotations

import re
from collections.abc import Awaitable
from random import getrandbits

from cutover.types import Message, Scope, Send

REQUEST_ID_HEADER = b"x-request-id"
MAX_LENGTH = 128
# Printable ASCII; spaces only inside (a parser strips them at either end).
_VALID = re.compile(rb"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")


def new_request_id() -> bytes:
    # Seeded from the OS at import and again in each forked worker (random reseeds at fork).
    return b"%032x" % getrandbits(128)


def is_valid(value: bytes) -> bool:
    return len(value) <= MAX_LENGTH and _VALID.fullmatch(value) is not None


def adopt_request_id(scope: Scope) -> bytes:
    """The request's id: its one valid ``X-Request-Id``, else a new one, which then replaces
    whatever it sent (none, an invalid one, or several) in ``scope["headers"]``."""
    headers = scope["headers"]
    found: bytes | None = None
    count = 0
    wanted = REQUEST_ID_HEADER
    for name, value in headers:
        if name == wanted:
            found = value
            count += 1
    if count == 1 and is_valid(found):  # type: ignore[arg-type]  # count 1: found is set
        return found  # type: ignore[return-value]
    request_id = new_request_id()
    if count:
        kept = [item for item in headers if item[0] != wanted]
        kept.append((wanted, request_id))
    else:
        kept = [*headers, (wanted, request_id)]
    scope["headers"] = kept
    return request_id


def stamping(send: Send, request_id: bytes) -> Send:
    """``send`` with ``X-Request-Id: request_id`` added to the response's headers."""
    header = (REQUEST_ID_HEADER, request_id)

    def stamped(message: Message) -> Awaitable[None]:
        # Returns send's awaitable rather than awaiting it: no extra coroutine per message.
        if message["type"] == "http.response.start":
            message["headers"] = [*message["headers"], header]
        return send(message)

    return stamped

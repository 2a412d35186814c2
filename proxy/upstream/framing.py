"""HTTP/1.1 message framing as plain functions: the request head Cutover writes, how its
body is delimited, and the rules that say how a response's body ends and whether the
connection may carry the next request. No sockets, no parser: the connection and the
client call these where the framing is decided."""

from __future__ import annotations

import base64
from urllib.parse import SplitResult, unquote

from cutover.types import RawHeaders
from cutover.upstream.base import RequestBody

# The client's framing headers are replaced by the framing of what is actually sent.
FRAMING_HEADERS = frozenset({b"content-length", b"transfer-encoding"})
# The end of a chunked body: the last chunk, no trailer fields.
LAST_CHUNK = b"0\r\n\r\n"
# Statuses whose responses end at the head, whatever their headers say (RFC 9110 §15.3.5,
# §15.4.5); interim (1xx) responses and answers to HEAD never carry a body either.
BODILESS_STATUSES = (204, 304)


def origin_fields(parts: SplitResult) -> bytes:
    """The header lines every request to this backend starts with: ``host``, without the
    scheme's default port, and ``authorization`` (Basic) when the URL has userinfo."""
    netloc = parts.netloc.rpartition("@")[2]
    default_port = f":{80 if parts.scheme == 'http' else 443}"
    fields = b"host: " + netloc.removesuffix(default_port).encode("idna") + b"\r\n"
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        token = base64.b64encode(credentials.encode("utf-8"))
        fields += b"authorization: Basic " + token + b"\r\n"
    return fields


def request_head(
    method: str,
    url: str,
    origin: str,
    fields: bytes,
    headers: RawHeaders,
    body: RequestBody,
) -> tuple[bytes, bool]:
    """The request head for ``url`` on ``origin`` (``fields`` from ``origin_fields``), and
    whether the body goes chunked: a whole body is sent with its own length, a stream keeps
    the client's Content-Length when it gave one and is chunked otherwise."""
    if not url.startswith(origin):
        raise ValueError(f"{url!r} is not on {origin}")
    target = url[len(origin) :] or "/"
    lines = [method.encode("ascii"), b" ", target.encode("latin-1"), b" HTTP/1.1\r\n", fields]
    length = None
    for name, value in headers:
        if name in FRAMING_HEADERS:
            if name == b"content-length":
                length = b"%d" % int(value)  # checked digits; without OWS or leading zeros
            continue
        lines += (name, b": ", value, b"\r\n")
    chunked = False
    if isinstance(body, bytes):
        lines += (b"content-length: ", str(len(body)).encode("ascii"), b"\r\n")
    elif body is not None:
        if length is None:
            chunked = True
            lines.append(b"transfer-encoding: chunked\r\n")
        else:
            lines += (b"content-length: ", length, b"\r\n")
    elif length is not None:
        lines += (b"content-length: ", length, b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines), chunked


def encode_chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (RFC 9112 §7.1). ``data`` is not empty: an empty chunk
    reads as the last one (the request body stream never yields one)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def close_delimited(status: int, headers: RawHeaders) -> bool:
    """Whether the body of a final response to a request other than HEAD ends only when
    the backend closes the connection (RFC 9112 §6.3): a status that has a body, without
    Content-Length and without chunked as the last transfer coding."""
    if status in BODILESS_STATUSES:
        return False
    for name, value in headers:
        size = len(name)  # only names of these two lengths are lowercased and compared
        if size == 14:
            if name.lower() == b"content-length":
                return False
        elif (
            size == 17
            and name.lower() == b"transfer-encoding"
            and value.rstrip().lower().endswith(b"chunked")
        ):
            return False
    return True


def may_reuse(keep_alive: bool, request_sent: bool) -> bool:
    """Whether the connection may carry the next request once the response has ended:
    the backend keeps it open (``keep_alive``: the parser's reading of the version, the
    Connection field and the body's framing), and the whole request went out. After an
    answer that came before the upload ended, the backend would read the rest of the
    upload as the start of another request."""
    return keep_alive and request_sent

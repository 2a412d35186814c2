"""Where frames begin in a spliced byte stream, and a close frame of the proxy's own put
between two frames, never inside one. Frames are the ``websockets`` library's own."""

from __future__ import annotations

import os

import pytest
from websockets.frames import Frame, Opcode

from cutover.request.ws_tunnel import FrameCursor, Pipe


def frame(
    payload: bytes, opcode: Opcode = Opcode.BINARY, *, fin: bool = True, mask: bool = True
) -> bytes:
    return Frame(opcode, payload, fin=fin).serialize(mask=mask)


class Sink:
    def __init__(self) -> None:
        self.data = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 300_000])
@pytest.mark.parametrize("mask", [False, True])
def test_the_cursor_follows_frames_of_every_length(size: int, mask: bool) -> None:
    data = frame(os.urandom(size), mask=mask) + frame(b"next", Opcode.TEXT, mask=mask)
    cursor = FrameCursor()
    for i in range(0, len(data), 7):  # in pieces that cut headers and payloads anywhere
        cursor.advance(data[i : i + 7])
    assert cursor.at_boundary and not cursor.close_seen
    first = FrameCursor()
    assert first.advance(data, to_boundary=True) == 0  # at a boundary already
    part = FrameCursor()
    part.advance(data[:1])  # inside the first frame's header
    assert part.advance(data[1:], to_boundary=True) == len(frame(b"x" * size, mask=mask)) - 1


def test_the_cursor_sees_a_close_frame() -> None:
    cursor = FrameCursor()
    cursor.advance(frame(b"\x03\xe8", Opcode.CLOSE))
    assert cursor.close_seen


@pytest.mark.parametrize("mask", [False, True])
@pytest.mark.parametrize("piece", [1, 2, 3, 1000])
def test_the_cursor_reads_the_first_close_frames_code(mask: bool, piece: int) -> None:
    # The access log's close code: the payload's first two bytes, unmasked, however the
    # bytes arrive; a later close frame does not change it.
    data = frame(b"data", mask=mask) + frame(b"\x0f\xa0bye", Opcode.CLOSE, mask=mask)
    data += frame(b"\x03\xe8", Opcode.CLOSE, mask=mask)
    cursor = FrameCursor()
    for i in range(0, len(data), piece):
        cursor.advance(data[i : i + piece])
    assert (cursor.close_seen, cursor.close_code) == (True, 4000)


def test_a_close_frame_without_a_code_has_none() -> None:
    cursor = FrameCursor()
    cursor.advance(frame(b"", Opcode.CLOSE))
    assert (cursor.close_seen, cursor.close_code) == (True, None)


def test_a_close_of_our_own_waits_for_the_frame_in_flight() -> None:
    sink = Sink()
    pipe = Pipe(sink, masked=False)  # type: ignore[arg-type]
    data = frame(b"a" * 1000, fin=False, mask=False)
    pipe.carry(data[:500])
    pipe.end(1001)
    assert not sink.closed  # mid-frame: nothing injected yet
    pipe.carry(data[500:] + frame(b"dropped", mask=False))
    assert sink.data == data + b"\x88\x02\x03\xe9"  # the frame finished, then our close
    assert sink.closed


def test_no_close_frame_of_ours_after_the_peers_own() -> None:
    sink = Sink()
    pipe = Pipe(sink, masked=False)  # type: ignore[arg-type]
    closing = frame(b"\x0f\xa0", Opcode.CLOSE, mask=False)
    pipe.carry(closing)
    pipe.end(1014, source_gone=True)
    assert sink.data == closing and sink.closed


def test_a_source_gone_mid_frame_is_cut_without_a_frame() -> None:
    sink = Sink()
    pipe = Pipe(sink, masked=True)  # type: ignore[arg-type]
    pipe.carry(frame(b"b" * 100)[:50])
    pipe.end(1014, source_gone=True)
    assert len(sink.data) == 50 and sink.closed

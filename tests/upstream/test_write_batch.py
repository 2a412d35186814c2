"""The fast path's requests to a backend, held for the rest of the loop's turn (WriteBatch):
each written once, in order, after the turn; none to a connection closed meanwhile; a later
turn's writes are not stuck behind a flush that already ran."""

from __future__ import annotations

import asyncio

from cutover.upstream.write_batch import WriteBatch


class RecordingTransport:
    def __init__(self, log: list[tuple[str, bytes]], name: str) -> None:
        self.log, self.name, self.closing = log, name, False

    def write(self, data: bytes) -> None:
        assert not self.closing, "written after close"
        self.log.append((self.name, data))

    def is_closing(self) -> bool:
        return self.closing


def test_the_writes_of_one_turn_go_out_after_it_once_each_in_order() -> None:
    async def run() -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
        log: list[tuple[str, bytes]] = []
        batch = WriteBatch(asyncio.get_running_loop())
        a, b = RecordingTransport(log, "a"), RecordingTransport(log, "b")
        batch.write(a, b"GET /1")
        batch.write(b, b"GET /2")
        batch.write(a, b"GET /3")
        during = list(log)
        await asyncio.sleep(0)
        return during, log

    during, after = asyncio.run(run())
    assert during == []
    assert after == [("a", b"GET /1"), ("b", b"GET /2"), ("a", b"GET /3")]


def test_a_connection_closed_before_the_flush_is_written_nothing() -> None:
    async def run() -> list[tuple[str, bytes]]:
        log: list[tuple[str, bytes]] = []
        batch = WriteBatch(asyncio.get_running_loop())
        gone, kept = RecordingTransport(log, "gone"), RecordingTransport(log, "kept")
        batch.write(gone, b"GET /moot")
        batch.write(kept, b"GET /ok")
        gone.closing = True  # the exchange was given up on in the same turn
        await asyncio.sleep(0)
        return log

    assert asyncio.run(run()) == [("kept", b"GET /ok")]


def test_each_turn_flushes_its_own_writes() -> None:
    async def run() -> list[list[tuple[str, bytes]]]:
        log: list[tuple[str, bytes]] = []
        batch = WriteBatch(asyncio.get_running_loop())
        transport = RecordingTransport(log, "t")
        seen = []
        for turn in range(3):
            batch.write(transport, b"GET /%d" % turn)
            await asyncio.sleep(0)
            seen.append(list(log))
        return seen

    assert asyncio.run(run()) == [
        [("t", b"GET /0")],
        [("t", b"GET /0"), ("t", b"GET /1")],
        [("t", b"GET /0"), ("t", b"GET /1"), ("t", b"GET /2")],
    ]

"""The keep-alive connections to one backend: opened on demand, handed out most recently
used first, closed once idle for ``pool_idle``, none kept once the pool is retired. The
pool never reads or writes a byte of HTTP: its connections do."""

from __future__ import annotations

import asyncio
import ssl
from collections import deque

from cutover.config import TimeoutsConfig
from cutover.upstream.base import UpstreamConnectError, UpstreamTimeout
from cutover.upstream.connection import Connection
from cutover.upstream.write_batch import WriteBatch


class ConnectionPool:
    """Keep-alive connections to one backend, most recently used first."""

    def __init__(
        self, host: str, port: int, tls: ssl.SSLContext | None, timeouts: TimeoutsConfig
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.connect_timeout = timeouts.connect
        self.idle_timeout = timeouts.pool_idle
        self.loop = asyncio.get_running_loop()
        self.batch = WriteBatch(self.loop)  # what the fast path's requests are written by
        self._idle: deque[Connection] = deque()
        self._open: set[Connection] = set()
        self._closed = False
        self._retired = False
        self._sweep: asyncio.TimerHandle | None = None

    async def acquire(self) -> Connection:
        connection = self.take_idle()
        return connection if connection is not None else await self._connect()

    def take_idle(self) -> Connection | None:
        """The most recently used idle connection still fresh, or None (then ``acquire``)."""
        idle = self._idle
        if idle:
            now = self.loop.time()
            while idle:
                connection = idle.pop()
                if not connection.closed and now - connection.idle_since < self.idle_timeout:
                    connection.reused = True
                    return connection
                connection.close()
        return None

    def release(self, connection: Connection) -> None:
        if self._closed or self._retired or connection.closed:
            connection.close()
            return
        connection.idle_since = self.loop.time()
        self._idle.append(connection)
        if self._sweep is None:
            self._sweep = self.loop.call_later(self.idle_timeout, self._expire_idle)

    def _expire_idle(self) -> None:
        """Close the connections unused for ``pool_idle``; again later while any are left."""
        self._sweep = None
        cutoff = self.loop.time() - self.idle_timeout
        idle = self._idle
        while idle and idle[0].idle_since <= cutoff:
            idle.popleft().close()
        if idle:
            self._sweep = self.loop.call_later(idle[0].idle_since - cutoff, self._expire_idle)

    def drop_idle(self) -> None:
        while self._idle:
            self._idle.pop().close()

    def retire(self) -> None:
        """Keep no connection from now on: the idle ones close now, a busy one when its
        exchange is done (``release``); new ones may still be opened and are not kept."""
        self._retired = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self.drop_idle()

    def forget(self, connection: Connection) -> None:
        self._open.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)

    async def _connect(self) -> Connection:
        where = f"{self.host}:{self.port}"
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await self.loop.create_connection(
                    lambda: Connection(self),
                    self.host,
                    self.port,
                    ssl=self.tls,
                    server_hostname=self.host if self.tls is not None else None,
                )
        except TimeoutError:
            raise UpstreamTimeout(f"connecting to {where} timed out") from None
        except OSError as exc:  # refused, unreachable, DNS, TLS
            raise UpstreamConnectError(f"cannot connect to {where}: {exc}") from None
        if self._closed:
            connection.close()
            raise UpstreamConnectError("the upstream client is closed")
        self._open.add(connection)
        return connection

    def close(self) -> None:
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
        for connection in [*self._open, *self._idle]:
            connection.close()
        self._idle.clear()
        self._open.clear()

"""Which app answers which socket: ``Listeners``, the app uvicorn serves on the proxy
socket, and ``AppListener``, a listening socket served with an ASGI app of its own.

uvicorn serves every socket it is handed with its one app. The admin API gets an
``AppListener`` instead: its own asyncio server on its own socket, speaking uvicorn's HTTP
protocol, so the app that answers a connection is decided by the socket the kernel accepted
it on, never by an address or port the request carries.
"""

from __future__ import annotations

import asyncio
import socket

import uvicorn
from uvicorn.server import ServerState

from cutover.ops.gateway import Gateway
from cutover.ops.tls import ServingTls
from cutover.ops.tls_reload import CertificateReloader
from cutover.request.app import run_lifespan
from cutover.request.fast_path import FastPath
from cutover.types import Receive, Scope, Send


class AppListener:
    def __init__(self, sock: socket.socket, config: uvicorn.Config) -> None:
        """``sock`` is bound already; ``config`` names the app and the protocol options
        (its host, port and lifespan are not used)."""
        self.sock = sock
        self.config = config
        self.state = ServerState()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        config = self.config
        if not config.loaded:
            config.load()
        loop = asyncio.get_running_loop()

        def protocol() -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.state, app_state={}, _loop=loop
            )

        self._server = await loop.create_server(protocol, sock=self.sock, backlog=config.backlog)

    def close(self) -> None:
        """Stop accepting connections; those already accepted go on."""
        if self._server is not None:
            self._server.close()

    async def stop(self, grace: float) -> None:
        """Stop accepting, close idle connections, give the requests in flight up to
        ``grace`` seconds, then cancel what is left."""
        self.close()
        for connection in list(self.state.connections):
            connection.shutdown()
        tasks = set(self.state.tasks)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)


class Listeners:
    """The ASGI app uvicorn runs on the proxy socket: every request on it goes to the
    proxy. Its lifespan starts and stops the gateway and the admin API, which is served on
    a socket of its own (``AppListener``): no request accepted on the proxy socket can
    reach the admin app, whatever address or port it names. With ``tls`` (the proxy
    socket's), the certificate is reloaded on SIGHUP and when its files change."""

    def __init__(
        self, gateway: Gateway, admin: AppListener | None = None, tls: ServingTls | None = None
    ) -> None:
        self.gateway = gateway
        self.admin = admin
        self.certificates = (
            None
            if tls is None
            else CertificateReloader(tls, gateway.metrics.config_reload_failures)
        )

    @property
    def fast_path(self) -> FastPath:
        """The proxy's fast path, for the protocol serving the proxy socket."""
        return self.gateway.proxy.fast_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await run_lifespan(receive, send, self.startup, self.shutdown)
            return
        await self.gateway.proxy(scope, receive, send)

    async def startup(self) -> None:
        await self.gateway.startup()
        if self.certificates is not None:
            self.certificates.start()
            if self.gateway.reloader is not None:
                self.gateway.reloader.on_hangup.append(self.certificates.request)
        if self.admin is not None:
            await self.admin.start()

    async def shutdown(self) -> None:
        if self.certificates is not None:
            await self.certificates.stop()
        if self.admin is not None:
            await self.gateway.close_streams()  # the console's: they would hold the drain
            await self.admin.stop(self.gateway.settings.shutdown.grace)
        await self.gateway.shutdown()

"""Certificate reloads: on SIGHUP (``request``) and when the certificate, key or client CA
file changes (polled, read in a thread), one at a time. A refused reload keeps the running
certificate, logged with its reason and counted with the config reloads that failed."""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import Counter

from cutover.ops.tls import ServingTls, TlsError, file_digest

logger = logging.getLogger("cutover.tls")

POLL = 1.0  # seconds between two reads of the files


class CertificateReloader:
    def __init__(self, tls: ServingTls, failures: Counter, *, poll: float = POLL) -> None:
        self.tls = tls
        self.failures = failures
        self.poll = poll
        self._wanted = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._reloader()), asyncio.create_task(self._watch())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def request(self) -> None:
        """Ask for a reload (SIGHUP); returns at once."""
        self._wanted.set()

    async def _reloader(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            await self.reload()

    async def _watch(self) -> None:
        """Reload once the files changed and then stayed the same for one poll: a rotation
        that replaces the key and the certificate one after the other is read once, whole.
        Files that failed to load are not tried again until they change again."""
        previous: bytes | None = None
        while True:
            await asyncio.sleep(self.poll)
            try:
                digest = await asyncio.to_thread(file_digest, self.tls.config)
            except Exception as exc:  # never expected: file_digest reads empty on OSError
                logger.error("reading the TLS files failed: %s", exc)
                continue
            if digest == previous and digest not in (self.tls.digest, self.tls.attempted):
                self.request()
            previous = digest

    async def reload(self) -> bool:
        """Read the files again and serve them to new connections; returns whether they are
        the ones served now."""
        try:
            await self.tls.reload()
        except TlsError as exc:
            logger.error(
                "TLS certificate reload refused, the running certificate stays: listen.tls: %s",
                exc.reason,
            )
            self.failures.inc()
            return False
        except Exception:
            logger.exception("TLS certificate reload failed, the running certificate stays")
            self.failures.inc()
            return False
        logger.info("TLS certificate reloaded from %s", self.tls.config.cert_file)
        return True

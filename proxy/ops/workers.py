"""``cutover run --workers N``: uvicorn's multiprocess supervisor, one Gateway per worker.

Every worker routes identically (the sticky hash is the same everywhere), shares the two
listening sockets, and reads the rollout from the state file (``coordination.py``): one of
them leads the guard, the others adopt what it saves within a guard interval. Metrics are
written by every worker and summed on ``/metrics`` (prometheus-client multiprocess mode);
when a worker exits, the supervisor removes its per-process series (``mark_process_dead``),
so ``/metrics`` does not report a dead process's breaker state for ever.

Each worker builds its gateway from what the parent hands it in ``WorkerApp``: the config
path and the admin socket (multiprocessing passes a socket in a pickled object on as a file
descriptor). uvicorn serves the proxy socket; the admin API is served on its own socket
(``listener.AppListener``), so a connection is answered by the app of the socket it came in on.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from prometheus_client import multiprocess
from uvicorn.supervisors import Multiprocess

from cutover.config import Settings, StateBackend, load_settings
from cutover.ops.assembly import build_access_log
from cutover.ops.gateway import Gateway
from cutover.ops.listener import Listeners
from cutover.ops.server import admin_listener, bind, server_config, serving_tls, tls_options
from cutover.ops.tls import ServingTls
from cutover.request.fast_protocol import configure
from cutover.request.metrics import Metrics
from cutover.rollout.state import StateStore

ENV_METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client reads it from the environment


class DrainingSupervisor(Multiprocess):
    def __init__(
        self,
        config: uvicorn.Config,
        sockets: list[socket.socket],
        admin_socket: socket.socket,
        *,
        metrics_dir: str,
    ) -> None:
        super().__init__(config, sockets)
        self.admin_socket = admin_socket  # handed to each worker in its WorkerApp
        self.metrics_dir = metrics_dir
        self._known: set[int] = set()

    def terminate_all(self) -> None:
        # The supervisor's own copies of the listening sockets would keep them open (the
        # kernel accepting connections nobody will serve) while the workers drain.
        for sock in [*self.sockets, self.admin_socket]:
            sock.close()
        super().terminate_all()

    def init_processes(self) -> None:
        super().init_processes()
        self._forget_dead()

    # A worker leaves the list when it died and was replaced, was retired by a SIGHUP
    # restart, or was dropped by SIGTTOU: after each of these, forget the ones now gone.
    def keep_subprocess_alive(self) -> None:
        super().keep_subprocess_alive()
        self._forget_dead()

    def restart_all(self) -> None:
        super().restart_all()
        self._forget_dead()

    def handle_ttou(self) -> None:
        super().handle_ttou()
        self._forget_dead()

    def _forget_dead(self) -> None:
        alive = {process.pid for process in self.processes if process.pid is not None}
        for pid in self._known - alive:
            multiprocess.mark_process_dead(pid, self.metrics_dir)
        self._known = alive


@dataclass(frozen=True)
class WorkerApp:
    """uvicorn's app factory, pickled into each worker process and called there once.
    ``tls`` is pickled in the same object graph as the uvicorn config's
    ``ssl_context_factory`` (its bound method), so in a worker both are one object: the
    context the worker serves is the one its reloads swap."""

    config_path: str
    admin_socket: socket.socket
    metrics_dir: str
    log_level: str
    tls: ServingTls | None = None

    def __call__(self) -> Listeners:
        settings = load_settings(self.config_path)
        configure(settings.limits)
        gateway = Gateway(settings, config_path=self.config_path, multiprocess_dir=self.metrics_dir)
        admin = admin_listener(gateway, self.admin_socket, settings, log_level=self.log_level)
        return Listeners(gateway, admin, self.tls)


def serve_workers(
    settings: Settings, *, config_path: str | Path, workers: int, log_level: str
) -> None:
    """Validate, bind both listeners, then supervise ``workers`` processes until a signal."""
    if settings.state.backend == StateBackend.FILE:
        StateStore(settings.state.path).load()  # a bad state file stops us before binding
    tls = serving_tls(settings)  # as a bad certificate does
    access_log = build_access_log(settings, Metrics())  # and an access log that cannot open
    if access_log is not None:
        access_log.close()
    proxy_socket = bind(settings.listen.host, settings.listen.port)
    admin_socket = bind(settings.admin.host, settings.admin.port)
    metrics_dir = tempfile.mkdtemp(prefix="cutover-metrics-")
    os.environ[ENV_METRICS_DIR] = metrics_dir
    app = WorkerApp(str(Path(config_path).resolve()), admin_socket, metrics_dir, log_level, tls)
    config = server_config(
        app,
        factory=True,
        workers=workers,
        log_level=log_level,
        http=configure(settings.limits),
        timeout_keep_alive=settings.listen.keep_alive,
        timeout_graceful_shutdown=settings.shutdown.grace,
        **tls_options(tls),
    )
    try:
        DrainingSupervisor(config, [proxy_socket], admin_socket, metrics_dir=metrics_dir).run()
    finally:
        admin_socket.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)

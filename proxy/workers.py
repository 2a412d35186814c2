"""``cutover run --workers N``: uvicorn's multiprocess supervisor, one Gateway per worker.

Every worker routes identically (the sticky hash is the same everywhere), shares the two
listening sockets, and reads the rollout from the state file (``coordination.py``): one of
them leads the guard, the others adopt what it saves within a guard interval. Metrics are
written by every worker and summed on ``/metrics`` (prometheus-client multiprocess mode);
when a worker exits, the supervisor removes its per-process series (``mark_process_dead``),
so ``/metrics`` does not report a dead process's breaker state for ever.

The worker entry point reads three variables the parent sets: the environment is how a
spawned process gets its arguments.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from prometheus_client import multiprocess
from uvicorn.supervisors import Multiprocess

from .config import Settings, load_settings
from .gateway import Gateway, Listeners
from .protocol import configure
from .state import StateStore

ENV_CONFIG = "CUTOVER_CONFIG"
ENV_ADMIN_PORT = "CUTOVER_WORKER_ADMIN_PORT"
ENV_METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"


class DrainingSupervisor(Multiprocess):
    def __init__(self, *args: object, metrics_dir: str, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.metrics_dir = metrics_dir
        self._known: set[int] = set()

    def terminate_all(self) -> None:
        # The supervisor's own copies of the listening sockets would keep them open (the
        # kernel accepting connections nobody will serve) while the workers drain.
        for sock in self.sockets:
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


def worker_app() -> Listeners:
    """uvicorn's app factory, run once in each worker process."""
    config_path = os.environ[ENV_CONFIG]
    settings = load_settings(config_path)
    configure(settings.limits.max_url_bytes, settings.limits.max_header_bytes)
    gateway = Gateway(
        settings, config_path=config_path, multiprocess_dir=os.environ[ENV_METRICS_DIR]
    )
    return Listeners(gateway, int(os.environ[ENV_ADMIN_PORT]))


def serve_workers(
    settings: Settings, *, config_path: str | Path, workers: int, log_level: str
) -> None:
    """Validate, bind both listeners, then supervise ``workers`` processes until a signal."""
    from .server import bind, server_config  # the server module imports this one

    StateStore(settings.state.path).load()  # a bad state file stops us before binding
    proxy_socket = bind(settings.listen.host, settings.listen.port)
    admin_socket = bind(settings.admin.host, settings.admin.port)
    metrics_dir = tempfile.mkdtemp(prefix="cutover-metrics-")
    os.environ[ENV_CONFIG] = str(Path(config_path).resolve())
    os.environ[ENV_ADMIN_PORT] = str(admin_socket.getsockname()[1])
    os.environ[ENV_METRICS_DIR] = metrics_dir
    config = server_config(
        "proxy.workers:worker_app",
        factory=True,
        workers=workers,
        log_level=log_level,
        http=configure(settings.limits.max_url_bytes, settings.limits.max_header_bytes),
        timeout_keep_alive=settings.listen.keep_alive,
        timeout_graceful_shutdown=settings.shutdown.grace,
    )
    try:
        supervisor = DrainingSupervisor(
            config, sockets=[proxy_socket, admin_socket], metrics_dir=metrics_dir
        )
        supervisor.run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)

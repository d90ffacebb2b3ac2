"""gunicorn, configured from Settings: gthread workers, the app preloaded in the master.

Preloading builds the app (and validates settings and templates) once before forking. LiteLLM is
imported after the fork, in a warm-up thread per worker: a module import in progress must not
cross a fork, and the port should be open (and /health answering) at once.
"""

from __future__ import annotations

import errno
import logging
import math
import socket
from typing import Any

from gunicorn.app.base import BaseApplication

from ..errors import SettingsError
from ..models.limiter import SharedSlots
from ..settings import Settings
from .app import create_app, services_of

log = logging.getLogger(__name__)


def _shared_slots(server: Any) -> SharedSlots | None:
    """The LLM_CONCURRENCY slots the workers share (None with one worker): built in the master by preloading."""
    slots = getattr(services_of(server.app.wsgi()).client, "slots", None)
    return slots if isinstance(slots, SharedSlots) else None


def _pre_fork(server: Any, worker: Any) -> None:
    slots = _shared_slots(server)
    if slots is not None:
        worker.llm_slots_index = slots.assign()


def _post_fork(server: Any, worker: Any) -> None:
    slots = _shared_slots(server)
    if slots is not None:
        slots.attach(worker.llm_slots_index)


def _child_exit(server: Any, worker: Any) -> None:
    # In the master, after a worker exited: slots it held when it died (kill -9, OOM, timeout) are free again.
    slots = _shared_slots(server)
    index = getattr(worker, "llm_slots_index", None)
    if slots is not None and index is not None:
        freed = slots.reclaim(index)
        if freed:
            log.warning("worker %s exited holding %d of the LLM_CONCURRENCY slots; they are free again", worker.pid,
                        freed)


def post_worker_init(worker: Any) -> None:
    """What each worker runs once it is forked (gunicorn's hook; the tests' in-process app runs it too)."""
    services = services_of(worker.wsgi)
    services.warm_up()
    settings = services.settings
    if settings.jobs_enabled:
        # After the fork, like the warm-up: the queue's connections and threads belong to this worker. A restarted
        # backend resumes its unfinished jobs from here, without waiting for a request. Each worker takes its share
        # of LLM_CONCURRENCY tasks at a time, so a selection spreads over all of them.
        services.consumers.start(threads=math.ceil(settings.llm_concurrency / settings.worker_processes))
        if services.label_studio is None:
            log.warning("LABEL_STUDIO_URL/LABEL_STUDIO_API_KEY not set: tasks left to a job after the predict deadline "
                        "are not written back to Label Studio; the next \"Retrieve predictions\" collects them")


def worker_exit(server: Any, worker: Any) -> None:
    """What each worker runs as it exits (gunicorn's hook; the tests' in-process app runs it too)."""
    # Let tasks that outlived their request finish, so their paid answers reach the cache.
    app = getattr(worker, "wsgi", None)
    if app is not None and "llm_backend" in getattr(app, "extensions", {}):
        services = services_of(app)
        services.runner.shutdown()
        # Tasks in progress finish (answers reach the cache and the ledger); queued ones wait for the next start.
        services.consumers.stop(timeout=services.settings.llm_timeout)


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "bind": f"{settings.host}:{settings.port}",
        "workers": settings.worker_processes,
        "worker_class": "gthread",
        "threads": settings.threads,
        "preload_app": True,
        # A worker is killed if silent this long: it must outlast the predict deadline.
        "timeout": int(settings.predict_deadline + settings.llm_timeout + 30),
        "graceful_timeout": int(settings.llm_timeout + 10),
        "keepalive": 5,
        "loglevel": settings.log_level.lower(),
        "accesslog": "-" if settings.log_level == "DEBUG" else None,
        "errorlog": "-",
        "pre_fork": _pre_fork,
        "post_fork": _post_fork,
        "child_exit": _child_exit,
        "post_worker_init": post_worker_init,
        "worker_exit": worker_exit,
        "proc_name": "llm-backend",
    }


class _Application(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        for key, value in gunicorn_options(self.settings).items():
            if value is not None:
                self.cfg.set(key, value)

    def load(self) -> Any:
        return create_app(self.settings, consumers=False)  # started in each worker after the fork


def check_port_free(host: str, port: int) -> None:
    """Fail with the setting to change when the port is taken (gunicorn itself retries, then says "Can't connect")."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                raise
            why = "is in use by another program" if exc.errno == errno.EADDRINUSE else "needs privileges to bind"
            raise SettingsError(
                f"port {port} on {host} {why}: stop that program, or set PORT to a free port (e.g. PORT={port + 1} "
                f"llm-backend serve, or --port {port + 1}) and connect Label Studio to that port") from None


def run_gunicorn(settings: Settings) -> None:
    check_port_free(settings.host, settings.port)
    _Application(settings).run()

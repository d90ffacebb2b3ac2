"""The backend's app served over real HTTP by a thread of the test process: what a `serve` worker runs, without a
process to start.

A `serve` subprocess imports LiteLLM again (about 2.6 s of CPU) and gunicorn around it; tests that only need a
backend Label Studio can call (Label Studio is a real process either way, and calls it over HTTP) get this instead.
It is built as `serve` builds it: settings read from the environment `serve` would be started with, the app
`create_app(settings, consumers=False)` that gunicorn preloads, then what `serve` does in its worker after the fork
(the warm-up and the job consumers, `web/server.py`) and at the worker's exit. Log records go to a file in the
format `serve` writes, so tests read `log()` as they read a subprocess's output. One process, one worker: tests
about processes (kill -9, restarts, replicas, signals, gunicorn's workers, start-up) keep the subprocess.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server

from llm_backend.cli.main import LOG_FORMAT  # the format `serve` logs in, which tests read lines of
from llm_backend.settings import Settings, load_settings
from llm_backend.web.app import create_app, services_of
from llm_backend.web.server import post_worker_init, worker_exit


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        """gunicorn writes no access log below DEBUG; neither does this."""


def settings_from_env(env: dict[str, str]) -> Settings:
    """The Settings `serve` reads when started with `env` over this process's environment."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        return load_settings()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class AppServer:
    """`url`, `port`, `log()`, `log_path` and `stop()` as `tests.conftest.BackendProcess` has them."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        # One worker: gunicorn's shared slots across worker processes have no meaning in one process.
        settings = settings_from_env({"WORKERS": "1", **env})
        self.port = settings.port
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._handler = logging.FileHandler(log_path, encoding="utf-8")
        self._handler.setFormatter(logging.Formatter(LOG_FORMAT))
        self._handler.setLevel(settings.log_level)
        self._logger = logging.getLogger("llm_backend")
        self._level = self._logger.level
        self._logger.setLevel(settings.log_level)  # the root logger of a test run passes WARNING and up only
        logging.getLogger().addHandler(self._handler)
        try:
            self.app = create_app(settings, consumers=False)
            self._worker = SimpleNamespace(wsgi=self.app)
            post_worker_init(self._worker)  # warm-up, and the job consumers with the whole of LLM_CONCURRENCY
            self._server = make_server("127.0.0.1", self.port, self.app, threaded=True,
                                       request_handler=_QuietHandler)
        except BaseException:
            self._detach_log()
            raise
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"app-server-{self.port}",
                                        daemon=True)
        self._thread.start()
        self._stopped = False

    def log(self) -> str:
        self._handler.flush()
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self) -> int:
        """Stop answering, then what `serve` does at a worker's exit, and close the stores. 0, as a clean exit."""
        if self._stopped:
            return 0
        self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=30)
        worker_exit(None, self._worker)
        services_of(self.app).close()
        self._detach_log()
        return 0

    def _detach_log(self) -> None:
        logging.getLogger().removeHandler(self._handler)
        self._handler.close()
        self._logger.setLevel(self._level)

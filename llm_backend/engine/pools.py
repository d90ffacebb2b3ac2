"""A thread pool made on first use.

Threads do not survive a fork: with `--preload` gunicorn builds the services in its master and forks the
workers, so a pool made at construction would exist in the master only. Made on first use, it is made in the
process that runs tasks (a worker, `llm-backend worker`, an offline command)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor


class LazyPool:
    def __init__(self, workers: int, name: str) -> None:
        self.workers = workers
        self.name = name
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    def get(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix=self.name)
            return self._executor

    def shutdown(self) -> None:
        """Wait for what runs, then drop the pool (the next `get` makes a new one)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=False)

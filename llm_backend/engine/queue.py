"""The job queue: huey on SQLite in CACHE_DIR, or on Redis when CACHE_URL is set, with two additions for speed.

* `enqueue_many`: the messages of a selection in one transaction (SQLite) or a few LPUSHes (Redis), not one
  transaction per task while the consumers already compete with the submitting request for the queue.
* SQLite: huey opens every write with `begin exclusive`. Threads of one process that meet the lock held wait in
  SQLite's busy handler, which sleeps 1, 2, 5, 10... ms between tries whether or not the lock was freed meanwhile;
  a process-wide Python lock around those transactions makes them wait for each other instead, and leaves the
  busy handler to what it is for, other processes.

huey is imported when the queue is first used, never at start-up (`import llm_backend` stays light).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..settings import Settings

QUEUE_NAME = "llm-backend"


@functools.cache
def _storage_classes() -> tuple[type, type]:
    from huey.storage import RedisStorage, SqliteStorage, to_blob

    class LockedSqliteStorage(SqliteStorage):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._write_lock = threading.Lock()
            super().__init__(*args, **kwargs)

        @contextlib.contextmanager
        def db(self, commit: bool = False, close: bool = False) -> Iterator[Any]:
            if not commit:  # a read: WAL readers do not block
                with super().db(commit, close) as cursor:
                    yield cursor
                return
            with self._write_lock, super().db(commit, close) as cursor:
                yield cursor

        def enqueue_many(self, messages: list[bytes]) -> None:
            with self.db(commit=True) as cursor:
                cursor.executemany("insert into task (queue, data, priority) values (?, ?, ?)",
                                   [(self.name, to_blob(message), 0) for message in messages])

    class BatchRedisStorage(RedisStorage):  # type: ignore[misc]
        def enqueue_many(self, messages: list[bytes]) -> None:
            for start in range(0, len(messages), 1000):
                self.conn.lpush(self.queue_key, *messages[start:start + 1000])

    return LockedSqliteStorage, BatchRedisStorage


def open_huey(settings: Settings) -> Any:
    """The queue: huey on SQLite in CACHE_DIR, or on Redis at CACHE_URL."""
    from huey import Huey

    sqlite_storage, redis_storage = _storage_classes()
    if settings.cache_url:
        return Huey(QUEUE_NAME, results=False, storage_class=redis_storage, url=settings.cache_url, blocking=True,
                    read_timeout=1)
    path = Path(settings.cache_dir)
    path.mkdir(parents=True, exist_ok=True)
    return Huey(QUEUE_NAME, results=False, storage_class=sqlite_storage, filename=str(path / "queue.sqlite3"),
                timeout=30)

"""The response cache: validated answers by request key, so a re-run or retried batch is free.

SQLite (a file in CACHE_DIR, WAL mode, safe across gunicorn workers) by default; Redis when
CACHE_URL is set so several replicas share one cache. Only answers that passed validation are
stored (the caller decides). A cache that fails is logged and bypassed: it must never fail a task.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from .. import fastjson

log = logging.getLogger(__name__)


class Cache(Protocol):
    def get(self, key: str) -> dict[str, Any] | None: ...
    def set(self, key: str, value: dict[str, Any]) -> None: ...
    def describe(self) -> str: ...
    def disconnect(self) -> None: ...


class NullCache:
    def get(self, key: str) -> dict[str, Any] | None:
        return None

    def set(self, key: str, value: dict[str, Any]) -> None:
        return None

    def describe(self) -> str:
        return "off"

    def disconnect(self) -> None:
        return None


class SQLiteFile:
    """A SQLite file shared by threads and processes: one connection per thread, WAL journal.

    Writes go through `_write` or `_transaction`: threads of one process wait for each other on a Python lock,
    not in SQLite's busy handler, which sleeps 1, 2, 5, 10... ms between tries whether or not the lock was freed
    meanwhile (other processes still meet it, rarely)."""

    def __init__(self, path: Path, *schema: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._opened: list[sqlite3.Connection] = []  # every thread's, so that `disconnect` can close them all
        db = self._connect()
        db.execute("PRAGMA journal_mode=WAL")
        for statement in schema:
            db.execute(statement)

    def _connect(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        # A connection must not cross a fork (gunicorn --preload builds the app in the master).
        if connection is None or self._local.pid != os.getpid():
            connection = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA busy_timeout=30000")
            connection.execute("PRAGMA synchronous=NORMAL")
            # One connection per thread: keep each page cache small so memory does not scale with THREADS.
            connection.execute("PRAGMA cache_size=-512")
            self._local.connection = connection
            self._local.pid = os.getpid()
            with self._write_lock:
                self._opened.append(connection)
        return connection

    def disconnect(self) -> None:
        """Close every thread's connection (`Services.close`); a later use opens a new one."""
        with self._write_lock:
            opened, self._opened = self._opened, []
            self._local = threading.local()
        for connection in opened:
            connection.close()

    def _write(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        """One statement, one transaction."""
        db = self._connect()
        with self._write_lock:
            return db.execute(sql, params)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """Several statements in one transaction: one commit instead of one each."""
        db = self._connect()
        with self._write_lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")


class RedisConnection:
    """A Redis client for one store, shared by its threads (redis-py pools the connections itself)."""

    def __init__(self, url: str, *, socket_timeout: float = 5) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=socket_timeout, socket_connect_timeout=5)

    def disconnect(self) -> None:
        """Close the pooled connections (`Services.close`); a later use opens new ones."""
        self._redis.close()


class SQLiteCache(SQLiteFile):
    def __init__(self, path: Path) -> None:
        super().__init__(path, "CREATE TABLE IF NOT EXISTS responses"
                               " (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)")

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            row = self._connect().execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            log.warning("cache read failed (%s); calling the model instead", exc)
            return None
        return fastjson.loads(row[0]) if row else None

    def set(self, key: str, value: dict[str, Any]) -> None:
        try:
            # One statement is one transaction: a crash leaves the row either absent or whole.
            self._write("INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)",
                        (key, fastjson.dumps(value), time.time()))
        except sqlite3.Error as exc:
            log.warning("cache write failed (%s); the answer is returned but not cached", exc)

    def describe(self) -> str:
        return f"sqlite:{self.path}"


class RedisCache(RedisConnection):
    def __init__(self, url: str, prefix: str = "llm-backend:response:", ttl: int | None = None) -> None:
        super().__init__(url)
        self.prefix = prefix
        self.ttl = ttl
        self._url = url

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            raw = self._redis.get(self.prefix + key)
        except Exception as exc:  # redis errors must not fail a task
            log.warning("redis cache read failed (%s); calling the model instead", type(exc).__name__)
            return None
        return fastjson.loads(raw) if raw else None

    def set(self, key: str, value: dict[str, Any]) -> None:
        try:
            self._redis.set(self.prefix + key, fastjson.dumps(value), ex=self.ttl)
        except Exception as exc:
            log.warning("redis cache write failed (%s)", type(exc).__name__)

    def describe(self) -> str:
        # The URL may carry a password: show only scheme and host.
        from urllib.parse import urlsplit

        parts = urlsplit(self._url)
        return f"redis:{parts.hostname}:{parts.port or 6379}"


def open_cache(enabled: bool, cache_dir: Path, cache_url: str | None) -> Cache:
    if not enabled:
        return NullCache()
    if cache_url:
        return RedisCache(cache_url)
    return SQLiteCache(Path(cache_dir) / "responses.sqlite3")

"""The job ledger, which is also the job queue: SQLite on one machine, Redis (`jobstore_redis.py`) for several.

SQLite (a file in CACHE_DIR, shared by gunicorn workers and `llm-backend worker` on one host) by default;
Redis when CACHE_URL is set, so several replicas share one ledger. There is no queue beside it: a task is
queued by its record's state, and a consumer claims the oldest queued record in one write transaction that
reads it and marks it `running` under the consumer's id (`claim`; the records and their states are in
`engine/jobrecords.py`). A claimed task's lease is its owner's heartbeat: once that is older than the
lease, any consumer's recovery moves the task back to `queued` (`engine/consumers.py`), which is the
redelivery.

A task's data (its text: up to MAX_TASK_CHARS) has a table of its own, written once: SQLite rewrites a whole
row when any column of it changes, and a 1 MB document in the record's row was written again at its claim,
its finish and its delivery (tens of ms each, more when the WAL checkpoints).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from .. import fastjson
from .cache import SQLiteFile
from .jobrecords import ACTIVE, ANY_OWNER, DELIVERED, WORKING, Claim, JobInfo, JobStore, TaskRecord
from .jobstore_redis import RedisJobStore
from .retention import prune_sqlite

__all__ = ["ACTIVE", "ANY_OWNER", "DELIVERED", "WORKING", "Claim", "JobInfo", "JobStore", "RedisJobStore",
           "SQLiteJobStore", "TaskRecord", "open_job_store"]

_MOVE = "UPDATE tasks SET state = ?, owner = ?, body = ?, queued_at = COALESCE(?, queued_at) WHERE job = ? AND task = ?"


class SQLiteJobStore(SQLiteFile):
    blocking = False  # SQLite cannot notify another process: idle consumers poll `queued` (engine/consumers.py)

    def __init__(self, path: Path) -> None:
        super().__init__(
            path,
            "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, body TEXT NOT NULL)",
            # queued_at: when the record last became `queued`; claims take the oldest first.
            "CREATE TABLE IF NOT EXISTS tasks (job TEXT NOT NULL, task INTEGER NOT NULL, state TEXT NOT NULL, "
            "owner TEXT, body TEXT NOT NULL, data TEXT NOT NULL, queued_at REAL NOT NULL DEFAULT 0, "
            "PRIMARY KEY (job, task))",
            "CREATE INDEX IF NOT EXISTS tasks_state ON tasks (job, state)",
            "CREATE TABLE IF NOT EXISTS consumers (id TEXT PRIMARY KEY, seen REAL NOT NULL)",
            # tasks.data: '' for a record added since; a ledger written before keeps its data there.
            "CREATE TABLE IF NOT EXISTS task_data (job TEXT NOT NULL, task INTEGER NOT NULL, data TEXT NOT NULL, "
            "PRIMARY KEY (job, task))",
        )
        db = self._connect()
        if "queued_at" not in {row[1] for row in db.execute("PRAGMA table_info(tasks)")}:
            # A ledger written when a separate queue (huey, queue.sqlite3) delivered the tasks: its queued records
            # become the queue as they are.
            with self._write_lock:
                db.execute("ALTER TABLE tasks ADD COLUMN queued_at REAL NOT NULL DEFAULT 0")
        # The queue: only queued records are in this index, oldest first.
        db.execute("CREATE INDEX IF NOT EXISTS tasks_queue ON tasks (queued_at) WHERE state = 'queued'")

    def put_job(self, job: JobInfo) -> None:
        self._write("INSERT OR REPLACE INTO jobs (id, body) VALUES (?, ?)", (job.id, job.to_json()))

    def get_job(self, job_id: str) -> JobInfo | None:
        row = self._connect().execute("SELECT body FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return JobInfo.from_json(row[0]) if row else None

    def jobs(self) -> list[JobInfo]:
        return [JobInfo.from_json(row[0]) for row in self._connect().execute("SELECT body FROM jobs ORDER BY id")]

    def add_tasks(self, job_id: str, items: list[tuple[TaskRecord, dict[str, Any]]]) -> set[int]:
        """Add the records not there yet (with their task data), in one transaction; the ids added. A record added
        `queued` is in the queue from the commit on."""
        added = set()
        with self._transaction() as db:
            for record, task in items:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO tasks (job, task, state, owner, body, data, queued_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (job_id, record.task_id, record.state, record.owner, record.to_json(), "",
                     record.updated or record.submitted))
                if cursor.rowcount == 1:
                    added.add(record.task_id)
                    _put_data(db, job_id, record.task_id, task)
        return added

    def get_task(self, job_id: str, task_id: int) -> TaskRecord | None:
        row = self._connect().execute("SELECT body FROM tasks WHERE job = ? AND task = ?", (job_id, task_id)).fetchone()
        return TaskRecord.from_json(row[0]) if row else None

    def task_data(self, job_id: str, task_id: int) -> dict[str, Any] | None:
        data = _data(self._connect(), job_id, task_id)
        return dict(fastjson.loads(data)) if data is not None else None

    def set_task_data(self, job_id: str, task_id: int, task: dict[str, Any]) -> None:
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM tasks WHERE job = ? AND task = ?", (job_id, task_id)).fetchone():
                _put_data(db, job_id, task_id, task)

    def records(self, job_id: str, task_ids: list[int] | None = None,
                states: frozenset[str] | None = None) -> list[TaskRecord]:
        db = self._connect()
        if task_ids is None and states is not None:  # the write-back and recovery polls: an index, not a scan
            marks = ",".join("?" * len(states))
            rows = db.execute(f"SELECT body FROM tasks WHERE job = ? AND state IN ({marks}) ORDER BY task",
                              (job_id, *sorted(states))).fetchall()
        elif task_ids is None:
            rows = db.execute("SELECT body FROM tasks WHERE job = ? ORDER BY task", (job_id,)).fetchall()
        else:
            rows = []
            for start in range(0, len(task_ids), 500):  # SQLite's limit on bound parameters
                chunk = task_ids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                rows += db.execute(f"SELECT body FROM tasks WHERE job = ? AND task IN ({marks})",
                                   (job_id, *chunk)).fetchall()
        found = [TaskRecord.from_json(row[0]) for row in rows]
        return found if states is None else [record for record in found if record.state in states]

    def working(self, job_id: str, task_ids: set[int]) -> set[int]:
        """Which of these tasks are still queued or running: ids only, from the state index, no record decoded
        (a /predict asks this many times a second while its tasks run)."""
        marks = ",".join("?" * len(WORKING))
        if len(task_ids) <= 500:  # SQLite's limit on bound parameters
            ids = ",".join("?" * len(task_ids))
            rows = self._connect().execute(
                f"SELECT task FROM tasks WHERE job = ? AND state IN ({marks}) AND task IN ({ids})",
                (job_id, *sorted(WORKING), *task_ids)).fetchall()
        else:
            rows = self._connect().execute(f"SELECT task FROM tasks WHERE job = ? AND state IN ({marks})",
                                           (job_id, *sorted(WORKING))).fetchall()
        return {row[0] for row in rows} & task_ids

    def move(self, job_id: str, record: TaskRecord, from_states: frozenset[str] | set[str],
             owner: str | None = ANY_OWNER) -> bool:
        """Replace the task's record if it is in one of `from_states` (and owned by `owner`). A record moved to
        `queued` goes to the back of the queue."""
        states = sorted(from_states)
        sql = f"{_MOVE} AND state IN ({','.join('?' * len(states))})"
        params: list[Any] = [*_moved(record), job_id, record.task_id, *states]
        if owner != ANY_OWNER:
            sql += " AND owner IS ?"
            params.append(owner)
        return self._write(sql, params).rowcount == 1

    def move_many(self, job_id: str, records: list[TaskRecord], from_states: frozenset[str] | set[str]) -> set[int]:
        """`move` for many tasks (any owner) in one transaction; the ids moved."""
        states = sorted(from_states)
        sql = f"{_MOVE} AND state IN ({','.join('?' * len(states))})"
        moved = set()
        with self._transaction() as db:
            for record in records:
                if db.execute(sql, (*_moved(record), job_id, record.task_id, *states)).rowcount == 1:
                    moved.add(record.task_id)
        return moved

    def claim(self, consumer: str, finish: tuple[str, TaskRecord] | None = None) -> Claim | None:
        """The oldest queued task, moved to `running` under `consumer`: read and marked in one write transaction,
        which no other connection's write can interleave (BEGIN IMMEDIATE), so each task is claimed once.
        `finish`: the consumer's previous task (job id, its record moved on from `running`), written in the same
        transaction if the consumer still owns it."""
        with self._transaction() as db:
            if finish is not None:
                job_id, done = finish
                db.execute(f"{_MOVE} AND state = 'running' AND owner IS ?",
                           (*_moved(done), job_id, done.task_id, consumer))
            row = db.execute("SELECT job, body FROM tasks WHERE state = 'queued' ORDER BY queued_at LIMIT 1").fetchone()
            if row is None:
                return None
            record = TaskRecord.from_json(row[1]).moved("running", owner=consumer)
            db.execute("UPDATE tasks SET state = 'running', owner = ?, body = ? WHERE job = ? AND task = ?",
                       (consumer, record.to_json(), row[0], record.task_id))
            data = _data(db, row[0], record.task_id)
        return Claim(row[0], record, dict(fastjson.loads(data or "{}")))

    def queued(self) -> bool:
        """Whether any task waits (a read: an idle consumer asks this, and claims only when it is true)."""
        return self._connect().execute("SELECT 1 FROM tasks WHERE state = 'queued' LIMIT 1").fetchone() is not None

    def relist(self) -> int:
        return 0  # a queued row is in the queue (its index) by being queued

    def wait_for_work(self, timeout: float) -> None:
        time.sleep(timeout)  # not called: `blocking` is False, the consumers poll `queued` with a backoff

    def heartbeat(self, consumer: str, at: float | None = None) -> None:
        self._write("INSERT OR REPLACE INTO consumers (id, seen) VALUES (?, ?)",
                    (consumer, time.time() if at is None else at))

    def consumers(self) -> dict[str, float]:
        return {row[0]: row[1] for row in self._connect().execute("SELECT id, seen FROM consumers")}

    def prune(self, before: float) -> int:
        """Remove what finished before `before` (engine/retention.py); the number of task records removed."""
        with self._transaction() as db:
            return prune_sqlite(db, before)


def _put_data(db: sqlite3.Connection, job_id: str, task_id: int, task: dict[str, Any]) -> None:
    db.execute("INSERT OR REPLACE INTO task_data (job, task, data) VALUES (?, ?, ?)",
               (job_id, task_id, fastjson.dumps(task)))


def _data(db: sqlite3.Connection, job_id: str, task_id: int) -> str | None:
    """A task's data: its own row, else (a ledger written before) its record's column; None: no such task."""
    row = db.execute("SELECT data FROM task_data WHERE job = ? AND task = ?", (job_id, task_id)).fetchone()
    if row is not None:
        return str(row[0])
    row = db.execute("SELECT data FROM tasks WHERE job = ? AND task = ?", (job_id, task_id)).fetchone()
    return str(row[0]) if row is not None else None


def _moved(record: TaskRecord) -> tuple[Any, ...]:
    """The SET values of `_MOVE`: state, owner, body, and when it was queued (None: unchanged)."""
    return record.state, record.owner, record.to_json(), record.updated if record.state == "queued" else None


def open_job_store(cache_dir: Path, cache_url: str | None) -> JobStore:
    if cache_url:
        return RedisJobStore(cache_url)
    return SQLiteJobStore(Path(cache_dir) / "jobstate.sqlite3")

"""Where background jobs keep their progress: one record per job and per task, with atomic state moves.

The queue library (huey, `engine/jobs.py`) delivers and runs the work; it forgets a message once a
worker has taken it, and keeps no per-task outcome. This store is the ledger around it: which
tasks a job has, who is running or posting each one (`owner`, a consumer id with a heartbeat), the
outcome, and the usage. Every state change is a compare-and-set (`move`), so two workers, two
replicas, a /predict request and the write-back never both take the same task:

    queued -> running -> done -> returned   (answered by /predict within its deadline)
                              -> posting -> posted | present   (written back to Label Studio)
                      -> failed            (no prediction; the next submission queues it again)

SQLite (a file in CACHE_DIR, shared by gunicorn workers and `llm-backend worker` on one host) by
default; Redis when CACHE_URL is set, so several replicas share one ledger as they share the queue.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Protocol

from .cache import RedisConnection, SQLiteFile
from .retention import prune_redis, prune_sqlite

ACTIVE = frozenset({"queued", "running", "done", "posting"})  # work or delivery still ahead
DELIVERED = frozenset({"returned", "posted", "present"})  # Label Studio has (or is storing) this prediction
WORKING = frozenset({"queued", "running"})  # not finished: what a waiting /predict polls for
ANY_OWNER = "*"  # `move` without an owner condition


@dataclass(frozen=True)
class JobInfo:
    """One job per project and model_version: every submission of that pair adds to it."""

    id: str
    project: str
    model_version: str
    label_config: str
    model: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    writeback: bool = False
    created: float = 0.0
    updated: float = 0.0
    halted: str | None = None  # a systemic cause key: queued tasks are not sent to the model
    halted_message: str | None = None
    fingerprint: str = ""  # Jobs.fingerprint(project) of the submitter: who may run its tasks

    @staticmethod
    def key(project: str, model_version: str) -> str:
        return f"{project}:{model_version}"

    def to_json(self) -> str:
        # Its fields as they are: asdict() deep-copies every nested dict first, a tenth of a millisecond a record
        return json.dumps({name: getattr(self, name) for name in _FIELD_NAMES[type(self)]}, ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str | bytes) -> JobInfo:
        return cls(**json.loads(raw))


@dataclass(frozen=True)
class TaskRecord:
    task_id: int
    state: str
    owner: str | None = None
    updated: float = 0.0
    submitted: float = 0.0
    finished: float | None = None
    status: str | None = None  # ok | cached | failed (the engine's TaskOutcome.status)
    item: dict[str, Any] | None = None  # {"result", "score", "model_version"}: what Label Studio stores
    error: str | None = None
    error_code: str | None = None
    cause: str | None = None  # core.causes key of a failure
    usage: dict[str, Any] | None = None
    ran_by: str | None = None  # the consumer that predicted it
    bounces: int = 0  # times a consumer with other settings put it back in the queue
    bounced_since: float | None = None
    # (Epoch seconds) a /predict waits for this task until then, in whichever process: the consumer that runs it
    # retries transient failures until then, and the write-back leaves it to that /predict.
    awaited_until: float | None = None
    facts: dict[str, Any] | None = None  # TaskOutcome.facts(): controls left out, text not read, repairs, signal

    def moved(self, state: str, **changes: Any) -> TaskRecord:
        return replace(self, state=state, updated=time.time(), **changes)

    def to_json(self) -> str:
        # Its fields as they are: asdict() deep-copies every nested dict first, a tenth of a millisecond a record
        return json.dumps({name: getattr(self, name) for name in _FIELD_NAMES[type(self)]}, ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str | bytes) -> TaskRecord:
        return cls(**json.loads(raw))


_FIELD_NAMES = {cls: tuple(f.name for f in fields(cls)) for cls in (JobInfo, TaskRecord)}


class JobStore(Protocol):
    def put_job(self, job: JobInfo) -> None: ...
    def get_job(self, job_id: str) -> JobInfo | None: ...
    def jobs(self) -> list[JobInfo]: ...
    def add_tasks(self, job_id: str, items: list[tuple[TaskRecord, dict[str, Any]]]) -> set[int]: ...
    def get_task(self, job_id: str, task_id: int) -> TaskRecord | None: ...
    def task_data(self, job_id: str, task_id: int) -> dict[str, Any] | None: ...
    def set_task_data(self, job_id: str, task_id: int, task: dict[str, Any]) -> None: ...
    def records(self, job_id: str, task_ids: list[int] | None = None,
                states: frozenset[str] | None = None) -> list[TaskRecord]: ...
    def working(self, job_id: str, task_ids: set[int]) -> set[int]: ...
    def move(self, job_id: str, record: TaskRecord, from_states: frozenset[str] | set[str],
             owner: str | None = ANY_OWNER) -> bool: ...
    def move_many(self, job_id: str, records: list[TaskRecord], from_states: frozenset[str] | set[str]) -> set[int]: ...
    def heartbeat(self, consumer: str) -> None: ...
    def consumers(self) -> dict[str, float]: ...
    def prune(self, before: float) -> int: ...
    def disconnect(self) -> None: ...


class SQLiteJobStore(SQLiteFile):
    def __init__(self, path: Path) -> None:
        super().__init__(
            path,
            "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, body TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS tasks (job TEXT NOT NULL, task INTEGER NOT NULL, state TEXT NOT NULL, "
            "owner TEXT, body TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (job, task))",
            "CREATE INDEX IF NOT EXISTS tasks_state ON tasks (job, state)",
            "CREATE TABLE IF NOT EXISTS consumers (id TEXT PRIMARY KEY, seen REAL NOT NULL)",
        )

    def put_job(self, job: JobInfo) -> None:
        self._write("INSERT OR REPLACE INTO jobs (id, body) VALUES (?, ?)", (job.id, job.to_json()))

    def get_job(self, job_id: str) -> JobInfo | None:
        row = self._connect().execute("SELECT body FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return JobInfo.from_json(row[0]) if row else None

    def jobs(self) -> list[JobInfo]:
        return [JobInfo.from_json(row[0]) for row in self._connect().execute("SELECT body FROM jobs ORDER BY id")]

    def add_tasks(self, job_id: str, items: list[tuple[TaskRecord, dict[str, Any]]]) -> set[int]:
        """Add the records not there yet (with their task data), in one transaction; the ids added."""
        added = set()
        with self._transaction() as db:
            for record, task in items:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO tasks (job, task, state, owner, body, data) VALUES (?, ?, ?, ?, ?, ?)",
                    (job_id, record.task_id, record.state, record.owner, record.to_json(),
                     json.dumps(task, ensure_ascii=False)))
                if cursor.rowcount == 1:
                    added.add(record.task_id)
        return added

    def get_task(self, job_id: str, task_id: int) -> TaskRecord | None:
        row = self._connect().execute("SELECT body FROM tasks WHERE job = ? AND task = ?", (job_id, task_id)).fetchone()
        return TaskRecord.from_json(row[0]) if row else None

    def task_data(self, job_id: str, task_id: int) -> dict[str, Any] | None:
        row = self._connect().execute("SELECT data FROM tasks WHERE job = ? AND task = ?", (job_id, task_id)).fetchone()
        return dict(json.loads(row[0])) if row else None

    def set_task_data(self, job_id: str, task_id: int, task: dict[str, Any]) -> None:
        self._write("UPDATE tasks SET data = ? WHERE job = ? AND task = ?",
                    (json.dumps(task, ensure_ascii=False), job_id, task_id))

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
        """Replace the task's record if it is in one of `from_states` (and owned by `owner`)."""
        states = sorted(from_states)
        sql = (f"UPDATE tasks SET state = ?, owner = ?, body = ? WHERE job = ? AND task = ? "
               f"AND state IN ({','.join('?' * len(states))})")
        params: list[Any] = [record.state, record.owner, record.to_json(), job_id, record.task_id, *states]
        if owner != ANY_OWNER:
            sql += " AND owner IS ?"
            params.append(owner)
        return self._write(sql, params).rowcount == 1

    def move_many(self, job_id: str, records: list[TaskRecord], from_states: frozenset[str] | set[str]) -> set[int]:
        """`move` for many tasks (any owner) in one transaction; the ids moved."""
        states = sorted(from_states)
        sql = (f"UPDATE tasks SET state = ?, owner = ?, body = ? WHERE job = ? AND task = ? "
               f"AND state IN ({','.join('?' * len(states))})")
        moved = set()
        with self._transaction() as db:
            for record in records:
                if db.execute(sql, (record.state, record.owner, record.to_json(), job_id, record.task_id,
                                    *states)).rowcount == 1:
                    moved.add(record.task_id)
        return moved

    def heartbeat(self, consumer: str) -> None:
        self._write("INSERT OR REPLACE INTO consumers (id, seen) VALUES (?, ?)", (consumer, time.time()))

    def consumers(self) -> dict[str, float]:
        return {row[0]: row[1] for row in self._connect().execute("SELECT id, seen FROM consumers")}

    def prune(self, before: float) -> int:
        """Remove what finished before `before` (engine/retention.py); the number of task records removed."""
        with self._transaction() as db:
            return prune_sqlite(db, before)


# KEYS[1] the job's task hash; ARGV: task id, new body, allowed states (comma-separated), owner or "*" (any).
_MOVE = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return 0 end
local record = cjson.decode(current)
local allowed = false
for state in string.gmatch(ARGV[3], '[^,]+') do
  if record['state'] == state then allowed = true end
end
if not allowed then return 0 end
if ARGV[4] ~= '*' then
  local owner = record['owner']
  if owner == cjson.null then owner = '' end
  if owner ~= ARGV[4] then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

# KEYS[1] the job's task hash; ARGV: task ids. Returns those still queued or running (decoded in Redis, not here).
_WORKING = """
local found = {}
for _, id in ipairs(ARGV) do
  local current = redis.call('HGET', KEYS[1], id)
  if current then
    local state = cjson.decode(current)['state']
    if state == 'queued' or state == 'running' then table.insert(found, id) end
  end
end
return found
"""


class RedisJobStore(RedisConnection):
    def __init__(self, url: str, prefix: str = "llm-backend:jobs:") -> None:
        super().__init__(url, socket_timeout=10)
        self._prefix = prefix
        self._move = self._redis.register_script(_MOVE)
        self._working = self._redis.register_script(_WORKING)

    def _tasks_key(self, job_id: str) -> str:
        return f"{self._prefix}{job_id}:tasks"

    def _data_key(self, job_id: str) -> str:
        return f"{self._prefix}{job_id}:data"

    def put_job(self, job: JobInfo) -> None:
        self._redis.hset(f"{self._prefix}index", job.id, job.to_json())

    def get_job(self, job_id: str) -> JobInfo | None:
        raw = self._redis.hget(f"{self._prefix}index", job_id)
        return JobInfo.from_json(raw) if raw else None

    def jobs(self) -> list[JobInfo]:
        found = [JobInfo.from_json(raw) for raw in self._redis.hgetall(f"{self._prefix}index").values()]
        return sorted(found, key=lambda job: job.id)

    def add_tasks(self, job_id: str, items: list[tuple[TaskRecord, dict[str, Any]]]) -> set[int]:
        added = set()
        for start in range(0, len(items), 500):
            chunk = items[start:start + 500]
            # Data first: a record is never visible without the task it describes.
            data = self._redis.pipeline(transaction=False)
            for record, task in chunk:
                data.hsetnx(self._data_key(job_id), str(record.task_id), json.dumps(task, ensure_ascii=False))
            data.execute()
            tasks = self._redis.pipeline(transaction=False)
            for record, _task in chunk:
                tasks.hsetnx(self._tasks_key(job_id), str(record.task_id), record.to_json())
            added.update(record.task_id for (record, _task), new in zip(chunk, tasks.execute(), strict=True) if new)
        return added

    def get_task(self, job_id: str, task_id: int) -> TaskRecord | None:
        raw = self._redis.hget(self._tasks_key(job_id), str(task_id))
        return TaskRecord.from_json(raw) if raw else None

    def task_data(self, job_id: str, task_id: int) -> dict[str, Any] | None:
        raw = self._redis.hget(self._data_key(job_id), str(task_id))
        return dict(json.loads(raw)) if raw else None

    def set_task_data(self, job_id: str, task_id: int, task: dict[str, Any]) -> None:
        self._redis.hset(self._data_key(job_id), str(task_id), json.dumps(task, ensure_ascii=False))

    def records(self, job_id: str, task_ids: list[int] | None = None,
                states: frozenset[str] | None = None) -> list[TaskRecord]:
        if task_ids is None:
            raws = list(self._redis.hgetall(self._tasks_key(job_id)).values())
        else:
            raws = []
            for start in range(0, len(task_ids), 1000):
                raws += self._redis.hmget(self._tasks_key(job_id), [str(t) for t in task_ids[start:start + 1000]])
        found = sorted((TaskRecord.from_json(raw) for raw in raws if raw), key=lambda record: record.task_id)
        return found if states is None else [record for record in found if record.state in states]

    def working(self, job_id: str, task_ids: set[int]) -> set[int]:
        ids = sorted(task_ids)
        found: set[int] = set()
        for start in range(0, len(ids), 1000):  # short scripts: Redis serves nothing else while one runs
            found.update(int(raw) for raw in self._working(keys=[self._tasks_key(job_id)],
                                                           args=[str(t) for t in ids[start:start + 1000]]))
        return found

    def move(self, job_id: str, record: TaskRecord, from_states: frozenset[str] | set[str],
             owner: str | None = ANY_OWNER) -> bool:
        expected = owner or ""
        moved = self._move(keys=[self._tasks_key(job_id)],
                           args=[str(record.task_id), record.to_json(), ",".join(sorted(from_states)), expected])
        return bool(moved)

    def move_many(self, job_id: str, records: list[TaskRecord], from_states: frozenset[str] | set[str]) -> set[int]:
        states = ",".join(sorted(from_states))
        moved = set()
        for start in range(0, len(records), 500):
            chunk = records[start:start + 500]
            pipe = self._redis.pipeline(transaction=False)
            for record in chunk:
                self._move(keys=[self._tasks_key(job_id)],
                           args=[str(record.task_id), record.to_json(), states, ANY_OWNER], client=pipe)
            moved.update(record.task_id for record, done in zip(chunk, pipe.execute(), strict=True) if done)
        return moved

    def heartbeat(self, consumer: str) -> None:
        self._redis.hset(f"{self._prefix}consumers", consumer, str(time.time()))

    def consumers(self) -> dict[str, float]:
        return {key.decode(): float(value) for key, value in self._redis.hgetall(f"{self._prefix}consumers").items()}

    def prune(self, before: float) -> int:
        return prune_redis(self._redis, self._prefix, before)


def open_job_store(cache_dir: Path, cache_url: str | None) -> JobStore:
    if cache_url:
        return RedisJobStore(cache_url)
    return SQLiteJobStore(Path(cache_dir) / "jobstate.sqlite3")

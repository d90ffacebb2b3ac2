"""The job ledger and queue on Redis (CACHE_URL), shared by replicas: records in hashes, a ready list of queued tasks.

Each job has a hash of task records (JSON) and a hash of task data. Beside them one list, `ready`, holds an
entry ("job<TAB>task") for every queued record: whatever makes a record `queued` (adding it, `move` to
`queued`) appends its entry in the same script, so a queued record always has one. `claim` is one script:
it pops entries until it finds a record still queued (an entry left by a task that was claimed, failed or
queued twice meanwhile is dropped) and marks it `running` under the consumer, so a task is never claimed
twice and no `kill -9` can lose it between the pop and the mark. Idle consumers block in BLMOVE on the list
(moved onto itself, so nothing is taken) until an entry arrives, instead of polling. Scripts are short:
Redis serves nothing else while one runs.
"""

from __future__ import annotations

import json
import time
from typing import Any

from .. import fastjson
from .cache import RedisConnection
from .jobrecords import ANY_OWNER, Claim, JobInfo, TaskRecord
from .retention import prune_redis

# KEYS[1] the job's task hash, KEYS[2] the ready list; ARGV: task id, new body, allowed states (comma-separated),
# owner or "*" (any), the ready entry to append ("" when the new state is not `queued`).
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
if ARGV[5] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[5]) end
return 1
"""

# KEYS[1] the job's task hash, KEYS[2] the ready list; ARGV: (task id, body, ready entry or "") per record.
# Adds the records not there yet, and queues those added with an entry; returns 1 or 0 per record.
_ADD = """
local added = {}
for i = 1, #ARGV, 3 do
  local new = redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1])
  if new == 1 and ARGV[i + 2] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[i + 2]) end
  table.insert(added, new)
end
return added
"""

# KEYS[1] the ready list; ARGV: key prefix, the consumer (JSON string), now (JSON number), entries to look at.
# Returns {job, task, body, data} of the claimed task, nil when the list is empty, 1 when ARGV[4] entries were
# dropped without finding a queued record (the caller asks again).
_CLAIM = """
-- Records are written compact (engine/fastjson.py); before orjson, with spaces after ',' and ':'.
local heads = {
  {'"state":"queued","owner":null,"updated":', '"state":"running","owner":', ',"updated":'},
  {'"state": "queued", "owner": null, "updated": ', '"state": "running", "owner": ', ', "updated": '},
}
for _ = 1, tonumber(ARGV[4]) do
  local entry = redis.call('LPOP', KEYS[1])
  if not entry then return nil end
  local job, task = string.match(entry, '^(.*)\\t(%d+)$')
  if job then
    local tasks = ARGV[1] .. job .. ':tasks'
    local current = redis.call('HGET', tasks, task)
    if current and cjson.decode(current)['state'] == 'queued' then
      -- The record as Python wrote it (fields in order), with state, owner and updated replaced in place:
      -- decoding and encoding it here would round its numbers to 14 digits.
      local body
      for _, head in ipairs(heads) do
        local s, e = string.find(current, head[1], 1, true)
        local stop = s and string.find(current, ',', e + 1, true)
        if stop then
          body = string.sub(current, 1, s - 1) .. head[2] .. ARGV[2] .. head[3] .. ARGV[3] .. string.sub(current, stop)
          break
        end
      end
      if not body then
        local record = cjson.decode(current)
        record['state'] = 'running'
        record['owner'] = cjson.decode(ARGV[2])
        record['updated'] = tonumber(ARGV[3])
        body = cjson.encode(record)
      end
      redis.call('HSET', tasks, task, body)
      return {job, task, body, redis.call('HGET', ARGV[1] .. job .. ':data', task) or 'null'}
    end
  end
end
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
    blocking = True  # idle consumers wait in BLMOVE for a ready entry

    def __init__(self, url: str, prefix: str = "llm-backend:jobs:") -> None:
        super().__init__(url, socket_timeout=10)
        self._prefix = prefix
        self._ready = f"{prefix}ready"
        self._move = self._redis.register_script(_MOVE)
        self._add = self._redis.register_script(_ADD)
        self._claim = self._redis.register_script(_CLAIM)
        self._working = self._redis.register_script(_WORKING)

    def _tasks_key(self, job_id: str) -> str:
        return f"{self._prefix}{job_id}:tasks"

    def _data_key(self, job_id: str) -> str:
        return f"{self._prefix}{job_id}:data"

    @staticmethod
    def _entry(job_id: str, record: TaskRecord) -> str:
        """The ready entry of a record that becomes `queued`; "" for any other state."""
        return f"{job_id}\t{record.task_id}" if record.state == "queued" else ""

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
                data.hsetnx(self._data_key(job_id), str(record.task_id), fastjson.dumps(task))
            data.execute()
            args = [value for record, _task in chunk
                    for value in (str(record.task_id), record.to_json(), self._entry(job_id, record))]
            new = self._add(keys=[self._tasks_key(job_id), self._ready], args=args)
            added.update(record.task_id for (record, _task), flag in zip(chunk, new, strict=True) if flag)
        return added

    def get_task(self, job_id: str, task_id: int) -> TaskRecord | None:
        raw = self._redis.hget(self._tasks_key(job_id), str(task_id))
        return TaskRecord.from_json(raw) if raw else None

    def task_data(self, job_id: str, task_id: int) -> dict[str, Any] | None:
        raw = self._redis.hget(self._data_key(job_id), str(task_id))
        return dict(fastjson.loads(raw)) if raw else None

    def set_task_data(self, job_id: str, task_id: int, task: dict[str, Any]) -> None:
        self._redis.hset(self._data_key(job_id), str(task_id), fastjson.dumps(task))

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
        moved = self._move(keys=[self._tasks_key(job_id), self._ready],
                           args=[str(record.task_id), record.to_json(), ",".join(sorted(from_states)), expected,
                                 self._entry(job_id, record)])
        return bool(moved)

    def move_many(self, job_id: str, records: list[TaskRecord], from_states: frozenset[str] | set[str]) -> set[int]:
        states = ",".join(sorted(from_states))
        moved = set()
        for start in range(0, len(records), 500):
            chunk = records[start:start + 500]
            pipe = self._redis.pipeline(transaction=False)
            for record in chunk:
                self._move(keys=[self._tasks_key(job_id), self._ready],
                           args=[str(record.task_id), record.to_json(), states, ANY_OWNER,
                                 self._entry(job_id, record)], client=pipe)
            moved.update(record.task_id for record, done in zip(chunk, pipe.execute(), strict=True) if done)
        return moved

    def claim(self, consumer: str, finish: tuple[str, TaskRecord] | None = None) -> Claim | None:
        """The oldest queued task, moved to `running` under `consumer` in one script; `finish` (the consumer's
        previous task) is written first, if the consumer still owns it."""
        if finish is not None:
            self.move(finish[0], finish[1], {"running"}, owner=consumer)
        while True:
            found = self._claim(keys=[self._ready], args=[self._prefix, json.dumps(consumer), repr(time.time()), 200])
            if found is None:
                return None
            if isinstance(found, list):
                job, _task, body, data = (part.decode() for part in found)
                return Claim(job, TaskRecord.from_json(body), dict(fastjson.loads(data) or {}))

    def queued(self) -> bool:
        return bool(self._redis.llen(self._ready))

    def relist(self) -> int:
        """Give the queued records an entry when the ready list is empty; the number listed. Every queued record
        has an entry, so an empty list with queued records means a ledger written before the list existed (with
        huey's queue beside it, before an upgrade). A duplicate entry (a task queued meanwhile) is harmless: the
        claim that meets it finds the record taken and drops it."""
        if self._redis.llen(self._ready):
            return 0
        entries = [f"{job.id}\t{record.task_id}" for job in self.jobs()
                   for record in self.records(job.id, states=frozenset({"queued"}))]
        for start in range(0, len(entries), 1000):
            self._redis.rpush(self._ready, *entries[start:start + 1000])
        return len(entries)

    def wait_for_work(self, timeout: float) -> None:
        """Block until the ready list has an entry or `timeout` passes; the entry stays (moved onto its own list)."""
        self._redis.blmove(self._ready, self._ready, max(1, round(timeout)), "LEFT", "LEFT")

    def heartbeat(self, consumer: str, at: float | None = None) -> None:
        self._redis.hset(f"{self._prefix}consumers", consumer, str(time.time() if at is None else at))

    def consumers(self) -> dict[str, float]:
        return {key.decode(): float(value) for key, value in self._redis.hgetall(f"{self._prefix}consumers").items()}

    def prune(self, before: float) -> int:
        return prune_redis(self._redis, self._prefix, before)

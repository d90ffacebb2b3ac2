"""Pruning the job ledger: finished task records older than JOB_RETENTION_HOURS go, and jobs left empty.

A record is finished when nothing is ahead of it: answered to a /predict (`returned`), written back
(`posted`, `present`) or `failed`. Each removal re-checks the record in the same statement (SQLite) or
script (Redis), so a task submitted again meanwhile (moved back to `queued`) is never removed; a job is
removed only when it has no task left and was not submitted to since the cut-off. A pruned task that
Label Studio sends again is simply a new task of its job.
"""

from __future__ import annotations

import sqlite3
from typing import Any

FINISHED = ("returned", "posted", "present", "failed")


def prune_sqlite(db: sqlite3.Connection, before: float) -> int:
    """In one transaction of the caller's; the number of task records removed."""
    marks = ",".join("?" * len(FINISHED))
    removed = db.execute(f"DELETE FROM tasks WHERE state IN ({marks}) AND json_extract(body, '$.updated') < ?",
                         (*FINISHED, before)).rowcount
    if removed:  # their data (engine/jobstore.py keeps it in a table of its own)
        db.execute("DELETE FROM task_data WHERE NOT EXISTS "
                   "(SELECT 1 FROM tasks WHERE tasks.job = task_data.job AND tasks.task = task_data.task)")
    db.execute("DELETE FROM jobs WHERE json_extract(body, '$.updated') < ? AND id NOT IN (SELECT job FROM tasks)",
               (before,))
    db.execute("DELETE FROM consumers WHERE seen < ?", (before,))
    return int(removed)


# KEYS[1] the job's task hash, KEYS[2] its data hash; ARGV[1] the cut-off, ARGV[2..] task ids.
_PRUNE_TASKS = """
local removed = 0
for i = 2, #ARGV do
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  if current then
    local record = cjson.decode(current)
    local state = record['state']
    if (state == 'returned' or state == 'posted' or state == 'present' or state == 'failed')
        and record['updated'] < tonumber(ARGV[1]) then
      redis.call('HDEL', KEYS[1], ARGV[i])
      redis.call('HDEL', KEYS[2], ARGV[i])
      removed = removed + 1
    end
  end
end
return removed
"""

# KEYS[1] the job index, KEYS[2] the job's task hash; ARGV[1] the job id, ARGV[2] the cut-off.
_PRUNE_JOB = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and redis.call('HLEN', KEYS[2]) == 0 and cjson.decode(current)['updated'] < tonumber(ARGV[2]) then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
"""


def prune_redis(redis: Any, prefix: str, before: float) -> int:
    """The number of task records removed, job by job, a few hundred ids per script."""
    tasks_script, job_script = redis.register_script(_PRUNE_TASKS), redis.register_script(_PRUNE_JOB)
    removed = 0
    for raw_id in redis.hkeys(f"{prefix}index"):
        job_id = raw_id.decode()
        tasks, data = f"{prefix}{job_id}:tasks", f"{prefix}{job_id}:data"
        ids = [key.decode() for key in redis.hkeys(tasks)]
        for start in range(0, len(ids), 500):  # short scripts: Redis serves nothing else while one runs
            removed += int(tasks_script(keys=[tasks, data], args=[before, *ids[start:start + 500]]))
        job_script(keys=[f"{prefix}index", tasks], args=[job_id, before])
    stale = [name for name, seen in redis.hgetall(f"{prefix}consumers").items() if float(seen) < before]
    if stale:
        redis.hdel(f"{prefix}consumers", *stale)
    return removed

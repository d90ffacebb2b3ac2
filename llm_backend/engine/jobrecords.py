"""The job ledger's records and what a store of them must do: one record per job and per task, atomic moves.

The ledger is the job queue too (`engine/jobstore.py`: SQLite, `engine/jobstore_redis.py`: Redis). A task is
queued by writing its record in state `queued`; a consumer *claims* it by moving it to `running` under its own
consumer id, in one atomic step (`claim`), so no two consumers ever hold the same task; the claim is its
*lease*, held for as long as the owner's heartbeat is fresh. Every other state change is a compare-and-set
(`move`), so two workers, two replicas, a /predict request and the write-back never both take the same task:

    queued -> running -> done -> returned   (answered by /predict within its deadline)
                              -> posting -> posted | present   (written back to Label Studio)
                      -> failed            (no prediction; the next submission queues it again)
    running -> queued                      (its owner's heartbeat stopped: redelivered; or the wrong settings)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields, replace
from typing import Any, Protocol

from .. import fastjson

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
        return fastjson.dumps({name: getattr(self, name) for name in _FIELD_NAMES[type(self)]})

    @classmethod
    def from_json(cls, raw: str | bytes) -> JobInfo:
        return cls(**fastjson.loads(raw))


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
        # Its fields in order (the Redis claim script edits the JSON text: engine/jobstore_redis.py)
        return fastjson.dumps({name: getattr(self, name) for name in _FIELD_NAMES[type(self)]})

    @classmethod
    def from_json(cls, raw: str | bytes) -> TaskRecord:
        return cls(**fastjson.loads(raw))


_FIELD_NAMES = {cls: tuple(f.name for f in fields(cls)) for cls in (JobInfo, TaskRecord)}


@dataclass(frozen=True)
class Claim:
    """A task a consumer claimed: its job, its record (now `running` under that consumer) and its data."""

    job_id: str
    record: TaskRecord
    data: dict[str, Any]


class JobStore(Protocol):
    blocking: bool  # whether `wait_for_work` blocks until a task is queued (Redis) or a consumer polls (SQLite)

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
    def claim(self, consumer: str, finish: tuple[str, TaskRecord] | None = None) -> Claim | None: ...
    def queued(self) -> bool: ...
    def relist(self) -> int: ...
    def wait_for_work(self, timeout: float) -> None: ...
    def heartbeat(self, consumer: str, at: float | None = None) -> None: ...
    def consumers(self) -> dict[str, float]: ...
    def prune(self, before: float) -> int: ...
    def disconnect(self) -> None: ...

"""A job's progress as numbers: counts by state, rate and ETA, usage, cache hits, errors by cause.

Pure: a `JobInfo` and its task records in, a `JobStatus` out. Shared by the status page, its JSON
twin (`/jobs`) and `label-project --wait`. Nothing of a task's data is read here: only states,
timings, usage and error texts (which name causes, never the task's text).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ..core.causes import BY_KEY, INTERNAL
from ..core.usage import Usage
from .jobstore import DELIVERED, JobInfo, TaskRecord
from .outcome import TaskOutcome, signal_counts

RATE_WINDOW = 60.0  # seconds of finished tasks the rate is measured over
TASKS_LISTED = 20  # failed task ids shown per cause: enough to open a few, not a page of numbers


@dataclass(frozen=True)
class ErrorGroup:
    cause: str
    title: str
    fix: str
    tasks: int
    last_error: str
    last_at: float
    task_ids: list[int] = field(default_factory=list)  # the first TASKS_LISTED failed tasks, by id


@dataclass(frozen=True)
class JobStatus:
    id: str
    project: str
    model_version: str
    model: str | None
    writeback: bool
    created: float
    total: int
    queued: int
    running: int
    finished: int  # answered, waiting to be delivered (returned to /predict or written back)
    delivered: int  # in Label Studio: returned by /predict, written back, or found there already
    failed: int
    written_back: int
    cached: int
    answered: int  # ok + cached
    usage: Usage
    rate: float | None  # tasks per second over the last minute
    eta_seconds: float | None
    halted: str | None
    errors: list[ErrorGroup] = field(default_factory=list)
    # As the batch summary counts them (engine/outcome.py), over the answered tasks:
    partial: int = 0  # some controls left out, or some of a long text not read
    unread: int = 0  # some of a long text not read
    reply_repairs: int = 0  # the reply needed a repair to be read
    signals: dict[str, int] = field(default_factory=dict)  # where the scores came from

    @property
    def done(self) -> int:
        return self.finished + self.delivered

    @property
    def cache_hit_rate(self) -> float | None:
        return self.cached / self.answered if self.answered else None

    @property
    def active(self) -> bool:
        return self.queued + self.running > 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["usage"] = self.usage.to_dict()
        data.update(done=self.done, cache_hit_rate=self.cache_hit_rate, active=self.active)
        return data


def _usage(records: list[TaskRecord]) -> Usage:
    return Usage.total(Usage(**record.usage) for record in records if record.usage)


def _errors(records: list[TaskRecord], shown: int) -> list[ErrorGroup]:
    groups: dict[str, list[TaskRecord]] = {}
    for record in records:
        if record.state == "failed":
            groups.setdefault(record.cause or INTERNAL.key, []).append(record)
    result = []
    for key, failed in groups.items():
        cause = BY_KEY.get(key, INTERNAL)
        last = max(failed, key=lambda r: r.finished or 0.0)
        ids = sorted(record.task_id for record in failed)[:TASKS_LISTED]
        result.append(ErrorGroup(cause.key, cause.title, cause.fix, len(failed), (last.error or "")[:300],
                                 last.finished or 0.0, ids))
    return sorted(result, key=lambda group: -group.last_at)[:shown]


def job_status(job: JobInfo, records: list[TaskRecord], now: float | None = None, *, errors_shown: int = 5
               ) -> JobStatus:
    now = time.time() if now is None else now
    states = [record.state for record in records]
    queued, running, failed = states.count("queued"), states.count("running"), states.count("failed")
    finished = states.count("done") + states.count("posting")
    delivered = sum(state in DELIVERED for state in states)
    answered = [r for r in records if r.item is not None and r.status in ("ok", "cached")]
    recent = [r for r in records if r.finished is not None and now - r.finished <= RATE_WINDOW]
    first = min((r.finished for r in recent if r.finished is not None), default=None)
    span = max(now - first, 1.0) if first is not None else None
    rate = len(recent) / span if span else None
    remaining = queued + running
    eta = remaining / rate if rate and remaining else (0.0 if not remaining else None)
    outcomes = [TaskOutcome("ok", regions=[], **TaskOutcome.from_facts(r.facts)) for r in answered]
    return JobStatus(
        id=job.id, project=job.project, model_version=job.model_version, model=job.model, writeback=job.writeback,
        created=job.created, total=len(records), queued=queued, running=running, finished=finished,
        delivered=delivered, failed=failed, written_back=states.count("posted"),
        cached=sum(r.status == "cached" for r in answered), answered=len(answered), usage=_usage(records),
        rate=rate, eta_seconds=eta, halted=job.halted_message, errors=_errors(records, errors_shown),
        partial=sum(o.partial for o in outcomes), unread=sum(o.unread_characters > 0 for o in outcomes),
        reply_repairs=sum(bool(o.repairs) for o in outcomes), signals=signal_counts(outcomes),
    )

"""One /predict, whichever way its tasks run: one outcome type, one log line, one whole-batch rule.

Label Studio's batch call (a project, tasks with ids, no annotator's context) goes through the project's
durable job (`engine/jobs.py`): its tasks are submitted, the request waits until its deadline and collects
what finished, and the rest runs on and is written back to Label Studio (or collected by the next click).
Any other /predict (an annotator's interactive context, tasks without ids, JOBS_ENABLED=false) runs its
tasks on the task runner (`engine/task_runner.py`), whose leftovers finish into the cache.

Both give one `TaskOutcome` per task, and from there everything is shared: the result items, the log line
(`BatchSummary`), and the whole-batch rule: when every task failed for one cause outside the tasks (the
key, the model server, the model), the request fails as one error (a 502) that names the fix, logged once
and shown on the status page.

Nothing here starts job consumers: they run where the process starts them (`serve`'s workers, `llm-backend
worker`, an in-process app when it is built).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from ..core.causes import BY_KEY, CAUSES, Cause, classify_failure, common_systemic_cause
from ..core.config import LabelConfig
from ..core.usage import Usage
from ..errors import BatchFailedError
from ..redact import redact
from ..settings import Settings
from .job import PredictionJob
from .jobs import Collected, Jobs
from .jobstore import TaskRecord
from .outcome import BatchSummary, TaskOutcome
from .problems import Problems
from .task_runner import TaskRunner

log = logging.getLogger(__name__)

MAX_ID = 2**53  # ids past this are not Label Studio's (and would overflow SQLite's integers)
SYSTEMIC = [cause for cause in CAUSES if cause.systemic]

WRITEBACK_OFF = ("write-back is off (LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY are not set): press Retrieve "
                 "predictions again later to collect it")
NOT_AN_OBJECT = "task must be a JSON object"


@dataclass(frozen=True)
class PredictRequest:
    """What one /predict asks, parsed: the tasks as sent, and the project's config, model and version."""

    config: LabelConfig
    project: str | None
    model_version: str
    tasks: list[Any]
    started: float  # time.time() when the request arrived: its deadline counts from here (every deadline is on
    # the wall clock: the job ledger shares them between processes and hosts)
    model: str | None = None  # the project's model (extra_params), None: LLM_MODEL
    params: dict[str, Any] = field(default_factory=dict)
    instruction: str | None = None  # an annotator's interactive context


def job_task_ids(tasks: list[Any]) -> bool:
    """Whether every task is a Label Studio task with an integer id (what a job can track)."""
    return bool(tasks) and all(isinstance(task, dict) and type(task.get("id")) is int and 0 <= task["id"] < MAX_ID
                               for task in tasks)


def whole_batch_cause(outcomes: list[TaskOutcome]) -> Cause | None:
    """The one systemic cause every task failed for, or None (a task answered, pending, or failed otherwise)."""
    if not outcomes or any(outcome.status != "failed" for outcome in outcomes):
        return None
    return common_systemic_cause([BY_KEY.get(outcome.cause or "") or classify_failure(outcome.error_code,
                                                                                       outcome.error)
                                  for outcome in outcomes])


class PredictPipeline:
    """Runs a /predict's tasks through the job or directly, and answers both the same way."""

    def __init__(self, settings: Settings, runner: TaskRunner, jobs: Jobs, health: Problems) -> None:
        self.settings = settings
        self.runner = runner
        self.jobs = jobs
        self.health = health

    def predict(self, request: PredictRequest) -> list[dict[str, Any]]:
        """The result items, one per task in order; raises BatchFailedError when the whole batch failed."""
        through_job = (self.settings.jobs_enabled and request.project is not None and request.instruction is None
                       and job_task_ids(request.tasks))
        outcomes, note = self._through_job(request) if through_job else (self._direct(request), "")
        summary = BatchSummary.of(outcomes, time.time() - request.started)
        log.info("%s%s", summary.log_line(), note)
        self._check_whole_batch(request, outcomes)
        if any(outcome.regions is not None for outcome in outcomes):
            for cause in SYSTEMIC:
                self.health.clear(f"predict:{cause.key}")
        return [outcome.to_result(request.model_version) for outcome in outcomes]

    def _deadline(self, request: PredictRequest) -> float:
        return request.started + self.settings.predict_deadline

    # -- the direct path -----------------------------------------------------------------------------

    def _direct(self, request: PredictRequest) -> list[TaskOutcome]:
        # Transient model failures are retried until the request's deadline, not a fixed number of times.
        deadline = self._deadline(request)
        jobs: list[PredictionJob | None] = [
            PredictionJob(request.config, request.project, task, request.instruction, request.model,
                          dict(request.params), deadline=deadline) if isinstance(task, dict) else None
            for task in request.tasks
        ]
        ran = iter(self.runner.outcomes([job for job in jobs if job is not None], deadline - time.time()))
        return [next(ran) if job is not None else TaskOutcome("failed", error=NOT_AN_OBJECT, project=request.project)
                for job in jobs]

    # -- the job path --------------------------------------------------------------------------------

    def _through_job(self, request: PredictRequest) -> tuple[list[TaskOutcome], str]:
        project = str(request.project)
        deadline = self._deadline(request)
        job = self.jobs.job(project, request.model_version, request.config.xml, request.model, dict(request.params))
        submission = self.jobs.submit(job, request.tasks, received=request.started, await_until=deadline)
        collected = self.jobs.collect(submission, self.jobs.wait(submission, deadline))
        outcomes = [_outcome_of(int(task["id"]), collected, job.writeback, project) for task in request.tasks]
        note = f" (job {job.id}: {len(collected.pending)} left to it"
        if not job.writeback and collected.pending:
            note += ", write-back off: the next click collects them"
        return outcomes, note + ")"

    # -- the whole-batch rule ------------------------------------------------------------------------

    def _check_whole_batch(self, request: PredictRequest, outcomes: list[TaskOutcome]) -> None:
        """Every task failed for one systemic cause: one ERROR with its fix, on the status page and as a 502."""
        cause = whole_batch_cause(outcomes)
        if cause is None:
            return
        example = redact(outcomes[0].error or "")[:300]
        where = (f"all {len(outcomes)} tasks failed (project {request.project}, model "
                 f"{request.model or self.settings.llm_model}; first error: {example})")
        message = f"{cause.title}: {where}. Fix: {cause.fix}"
        log.error("predict: %s", message)
        self.health.report(f"predict:{cause.key}", cause.title, where, cause.fix)
        raise BatchFailedError(message, code=f"model_{cause.key}")


def _outcome_of(task_id: int, collected: Collected, writeback: bool, project: str) -> TaskOutcome:
    """A task of a job's submission, as the direct path would have answered it."""
    item = collected.items.get(task_id)
    if item is not None:
        record = collected.records.get(task_id)
        return TaskOutcome(record.status if record is not None and record.status else "ok",
                           regions=item.get("result"), score=item.get("score"), error=item.get("error"),
                           usage=_usage(record), project=project,
                           **TaskOutcome.from_facts(record.facts if record is not None else None))
    failed = collected.failed.get(task_id)
    if failed is not None:
        return TaskOutcome("failed", error=redact(failed.error or "failed"), error_code=failed.error_code,
                           cause=failed.cause, usage=_usage(failed), project=project)
    if task_id in collected.delivered:
        return TaskOutcome("delivered", error="already delivered to Label Studio (written back, or answered to "
                                              "another request) while this request ran", project=project)
    after = "it will be written back to Label Studio when done" if writeback else WRITEBACK_OFF
    # No `result`: Label Studio stores nothing now; the job delivers it exactly once.
    return TaskOutcome("timeout", error=f"not finished before the deadline (PREDICT_DEADLINE); it runs on as a "
                                        f"background job and {after}", project=project)


def _usage(record: TaskRecord | None) -> Usage:
    return Usage(**record.usage) if record is not None and record.usage else Usage()

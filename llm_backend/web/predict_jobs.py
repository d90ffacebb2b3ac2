"""/predict through the job queue: submit the selection, answer what finishes by the deadline, let the
rest run on as the project's job (written back to Label Studio, or collected by the next click).

Used for Label Studio's batch calls (a project and task ids); interactive calls (an annotator's
context) and bodies without task ids keep the direct path in `protocol.py`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..core.causes import BY_KEY, CAUSES, INTERNAL, Cause, common_systemic_cause
from ..core.config import LabelConfig
from ..engine.jobs import Collected, Submission
from ..errors import BatchFailedError
from ..models.router import ModelChoice
from ..redact import redact
from ..services import Services

log = logging.getLogger(__name__)

MAX_ID = 2**53  # ids past this are not Label Studio's (and would overflow SQLite's integers)
SYSTEMIC = [cause for cause in CAUSES if cause.systemic]

WRITEBACK_OFF = ("write-back is off (LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY are not set): press Retrieve "
                 "predictions again later to collect it")


def job_task_ids(tasks: list[Any]) -> bool:
    """Whether every task is a Label Studio task with an integer id (what a job can track)."""
    return bool(tasks) and all(isinstance(task, dict) and type(task.get("id")) is int and 0 <= task["id"] < MAX_ID
                               for task in tasks)


def predict_with_jobs(services: Services, config: LabelConfig, project: str, version: str, choice: ModelChoice,
                      tasks: list[dict[str, Any]], started: float) -> dict[str, Any]:
    settings = services.settings
    jobs = services.jobs
    received = time.time() - (time.monotonic() - started)
    deadline = started + settings.predict_deadline
    job = jobs.job(project, version, config.xml, choice.model, dict(choice.params))
    submission = jobs.submit(job, tasks, received=received, await_until=deadline)
    services.consumers.start(persistent=False)  # already running under `serve`; an app in a test starts them here
    collected = jobs.collect(submission, jobs.wait(submission, deadline))
    _check_whole_batch(services, submission, collected)
    if collected.items:
        for cause in SYSTEMIC:
            services.health.clear(f"predict:{cause.key}")
    results = [_item(task["id"], collected, version, job.writeback) for task in tasks]
    log.info("predict (job %s): %d tasks in %.2f s: answered=%d failed=%d left to the job=%d%s", job.id, len(tasks),
             time.monotonic() - started, len(collected.items), len(collected.failed), len(collected.pending),
             "" if job.writeback or not collected.pending else " (write-back off: the next click collects them)")
    return {"results": results, "model_version": version}


def _item(task_id: int, collected: Collected, version: str, writeback: bool) -> dict[str, Any]:
    if task_id in collected.items:
        return collected.items[task_id]
    failed = collected.failed.get(task_id)
    if failed is not None:
        return {"model_version": version, "error": redact(failed.error or "failed")}
    if task_id in collected.delivered:
        return {"model_version": version, "error": "already delivered to Label Studio (written back, or answered to "
                                                    "another request) while this request ran"}
    after = "it will be written back to Label Studio when done" if writeback else WRITEBACK_OFF
    # No `result`: Label Studio stores nothing now; the job delivers it exactly once.
    return {"model_version": version, "error": f"not finished before the deadline (PREDICT_DEADLINE); it runs on as "
                                                f"a background job and {after}"}


def _check_whole_batch(services: Services, submission: Submission, collected: Collected) -> None:
    """Every task failed for one systemic cause: one ERROR with its fix, on the status page and as a 502."""
    if collected.items or collected.pending or collected.delivered or not collected.failed:
        return
    causes: list[Cause] = [BY_KEY.get(record.cause or "", INTERNAL) for record in collected.failed.values()]
    cause = common_systemic_cause(causes)
    if cause is None:
        return
    example = redact(next(iter(collected.failed.values())).error or "")[:300]
    where = (f"all {len(collected.failed)} tasks failed (project {submission.job.project}, model "
             f"{submission.job.model or services.settings.llm_model}; first error: {example})")
    message = f"{cause.title}: {where}. Fix: {cause.fix}"
    log.error("predict: %s", message)
    services.health.report(f"predict:{cause.key}", cause.title, where, cause.fix)
    raise BatchFailedError(message, code=f"model_{cause.key}")

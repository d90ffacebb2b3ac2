"""Post finished predictions to Label Studio, at most one per task and model_version.

Label Studio's import endpoint does not deduplicate, so idempotence is ours. Before each batch is
posted, Label Studio is asked which of its tasks already hold a prediction of this model_version
(a /predict answer it stored, an earlier post, a post that went through just before a crash) and
those are skipped. The records of a batch are moved to `posting` (owned by this consumer) before
the check and to `posted`/`present` after the answer, so the crash window is honest: a consumer
killed between the two leaves `posting` records with a dead owner; whoever adopts them asks Label
Studio again before posting, and posts only what is still missing.

`post_once` is the reusable part (a project, a version, prediction items); `WriteBack` drains a
job store's finished records into it in batches.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..label_studio import FIX, LabelStudioAPIError, LabelStudioClient
from ..redact import redact
from .jobstore import JobInfo, JobStore, TaskRecord
from .problems import Problems

log = logging.getLogger(__name__)

BATCH = 100  # predictions per import request: one bulk insert in Label Studio


@dataclass
class PostResult:
    posted: list[int] = field(default_factory=list)  # task ids given a new prediction
    present: list[int] = field(default_factory=list)  # task ids that already had one of this version


def post_once(client: LabelStudioClient, project: str | int, model_version: str,
              items: list[dict[str, Any]]) -> PostResult:
    """Import `items` ({"task", "result", "score", "model_version"}) except for tasks that already hold
    a prediction of `model_version`. Raises LabelStudioAPIError when Label Studio refuses."""
    result = PostResult()
    for start in range(0, len(items), BATCH):
        batch = items[start:start + BATCH]
        present = client.tasks_with_version(project, [int(item["task"]) for item in batch], model_version)
        missing = [item for item in batch if int(item["task"]) not in present]
        client.import_predictions(project, missing)
        result.present += sorted(present)
        result.posted += [int(item["task"]) for item in missing]
    return result


class WriteBack:
    """Drains `done` records of jobs with write-back into Label Studio, one batch per request."""

    def __init__(self, store: JobStore, client: LabelStudioClient, consumer: str,
                 live_consumers: Callable[[], set[str]],
                 held: Callable[[str, TaskRecord], bool] = lambda job, record: False,
                 problems: Problems | None = None) -> None:
        self.store = store
        self.client = client
        self.consumer = consumer
        self.live_consumers = live_consumers
        self.held = held  # a /predict waits for the task: it answers it itself
        self.problems = problems  # a failing write-back is shown on the status page
        self._failures: dict[str, float] = {}  # job id -> when posting may be tried again

    def run_once(self) -> int:
        """Post what is ready in every job; the number of predictions posted."""
        posted = 0
        # Every job, whoever submitted it: a `serve` without credentials may queue what a worker with them posts.
        for job in self.store.jobs():
            if time.monotonic() >= self._failures.get(job.id, 0.0):
                posted += self._drain(job)
        return posted

    def _claim(self, job: JobInfo, records: list[TaskRecord]) -> list[TaskRecord]:
        live = self.live_consumers()
        claimed = []
        for record in records:
            if record.state == "done" and record.item is not None and not self.held(job.id, record):
                source, owner = {"done"}, record.owner
            elif record.state == "posting" and record.owner not in live:
                source, owner = {"posting"}, record.owner  # its poster died mid-post: check again, then post
            else:
                continue
            mine = record.moved("posting", owner=self.consumer)
            if self.store.move(job.id, mine, source, owner=owner):
                claimed.append(mine)
            if len(claimed) >= BATCH:
                break
        return claimed

    def _drain(self, job: JobInfo) -> int:
        posted = 0
        while True:
            candidates = self.store.records(job.id, states=frozenset({"done", "posting"}))
            claimed = self._claim(job, candidates)
            if not claimed:
                return posted
            items = [{"task": r.task_id, **(r.item or {})} for r in claimed]
            try:
                result = post_once(self.client, job.project, job.model_version, items)
            except LabelStudioAPIError as exc:
                # Give the batch back; Label Studio is asked again before the next try.
                for record in claimed:
                    self.store.move(job.id, record.moved("done", owner=None), {"posting"}, owner=self.consumer)
                self._failures[job.id] = time.monotonic() + 10
                log.warning("write-back to Label Studio for project %s failed, retrying in 10 s: %s", job.project,
                            redact(exc.message))
                if self.problems is not None:
                    self.problems.report("writeback", "writing predictions back to Label Studio fails",
                                         f"project {job.project}: {redact(exc.message)[:300]}", FIX)
                return posted
            if self.problems is not None:
                self.problems.clear("writeback")
            self._failures.pop(job.id, None)
            by_id = {record.task_id: record for record in claimed}
            for task_id in result.posted:
                self.store.move(job.id, by_id[task_id].moved("posted"), {"posting"}, owner=self.consumer)
            for task_id in result.present:
                self.store.move(job.id, by_id[task_id].moved("present"), {"posting"}, owner=self.consumer)
            posted += len(result.posted)
            log.info("project %s: wrote %d predictions of %s back to Label Studio (%d already there)", job.project,
                     len(result.posted), job.model_version, len(result.present))

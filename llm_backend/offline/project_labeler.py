"""Pre-annotate a whole Label Studio project from outside Label Studio (`label-project`).

Label Studio gives an ML backend's /predict 100 s, which a large project never fits in. Here the
backend pulls instead: it asks for the tasks that have no prediction of the current
model_version, a page at a time, and submits them to the project's job, the same durable job a
"Retrieve predictions" click feeds (`engine/jobs.py`). Its consumers predict them and the
write-back posts them to Label Studio in batches, at most one prediction per task and version.
With `wait` (the default) this process runs consumers itself and shows progress until the job
is done; without, `serve` or `llm-backend worker` on the same queue does the work. With
`--batch-api` (`run_provider_batch`) the tasks go through the provider's batch API instead, and their
predictions are imported with the same once-only post (`engine/writeback.post_once`).

Label Studio 1.23.2 endpoints used:

* `GET /api/projects/{id}`: the label config.
* `GET /api/tasks?project=&page_size=&query=` with Data Manager filters
  `predictions_model_versions not_contains [version]` and `id > last id`, ordered by id. Paging
  by id rather than by page number, because every imported page shrinks the filtered set and
  page numbers would skip tasks. The "contains" filter matches substrings, so each task's
  `predictions_model_versions` is checked again here.
* `POST /api/projects/{id}/import/predictions` (by the write-back).

Resuming needs no state file of its own: imported tasks are skipped by the filter, queued ones
are still in the queue, and what was predicted but not imported is in the job's ledger and the
response cache, so it costs no LLM call.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..core.causes import BY_KEY, INTERNAL, Cause
from ..core.config import LabelConfig, parse_label_config
from ..core.usage import Usage
from ..engine.jobstore import DELIVERED, JobInfo, TaskRecord
from ..engine.outcome import BatchSummary, TaskOutcome
from ..engine.writeback import post_once
from ..errors import LLMBackendError
from ..label_studio import LabelStudioAPIError, LabelStudioClient, has_version
from ..services import Services
from .files import prediction_item
from .provider_batch import ProviderBatchRun
from .runs import PredictionRun, Progress


class ProjectError(LLMBackendError):
    code = "invalid_project"


@dataclass
class LabelProjectResult:
    model_version: str
    pending: int  # tasks without a prediction of this version when the run started
    job: str = ""
    submitted: int = 0
    posted: int = 0  # predictions this run's job imported into Label Studio
    outcomes: list[TaskOutcome] = field(default_factory=list)
    errors: dict[str, list[Any]] = field(default_factory=dict)
    causes: dict[str, Cause] = field(default_factory=dict)  # error message -> its cause
    interrupted: bool = False
    waited: bool = True
    seconds: float = 0.0

    @property
    def summary(self) -> BatchSummary:
        return BatchSummary.of(self.outcomes, self.seconds)

    @property
    def failed(self) -> int:
        return sum(outcome.regions is None for outcome in self.outcomes)


def _query(version: str, after: int) -> dict[str, Any]:
    return {
        "filters": {"conjunction": "and", "items": [
            {"filter": "filter:tasks:predictions_model_versions", "operator": "not_contains", "type": "List",
             "value": [version]},
            {"filter": "filter:tasks:id", "operator": "greater", "type": "Number", "value": after},
        ]},
        "ordering": ["tasks:id"],
    }


class ProjectLabeler:
    def __init__(self, client: LabelStudioClient, services: Services, project_id: int, *, page_size: int = 100) -> None:
        self.client = client
        self.services = services
        self.project_id = project_id
        self.page_size = page_size
        self.config, self.model_version = self._setup()

    def _setup(self) -> tuple[LabelConfig, str]:
        try:
            project = self.client.project(self.project_id)
        except LabelStudioAPIError as exc:
            if exc.http_status == 404:
                raise ProjectError(f"Label Studio at {self.client.url} has no project {self.project_id} "
                                   "(or this API key cannot see it)") from None
            raise
        config = parse_label_config(str(project.get("label_config") or ""))
        if not config.controls:
            kinds = "; ".join(f"{s.name} <{s.tag}>: {s.reason}" for s in config.skipped)
            raise ProjectError(f"project {self.project_id}'s label config has no control this backend can predict "
                               f"({kinds})")
        # Keyed like the service keys it (prompts/projects/<id>/), so versions match a connected backend.
        return config, self.services.predictor.model_version(config, str(self.project_id))

    def _page(self, after: int, size: int, fields: str | None = "all") -> tuple[list[dict[str, Any]], int]:
        # fields=all: without it Label Studio answers predictions_model_versions as "" (so the exact check in
        # pages(), needed because the filter matches substrings, would see nothing), and no annotations.
        return self.client.task_page(self.project_id, _query(self.model_version, after), size, fields=fields)

    def pending(self) -> int:
        """How many tasks lack a prediction of the current model_version."""
        return self._page(0, 1)[1]

    def pages(self, fields: str | None = "all") -> Iterator[list[dict[str, Any]]]:
        after = 0
        while True:
            tasks, _total = self._page(after, self.page_size, fields)
            if not tasks:
                return
            after = max(int(task["id"]) for task in tasks)
            yield [task for task in tasks if not has_version(task, self.model_version)]

    def run(self, *, limit: int | None = None, progress: bool | None = None, wait: bool = True
            ) -> LabelProjectResult:
        """Submit every task lacking this version's prediction (at most `limit`) to the project's job and, with
        `wait`, work it here until it is done; Ctrl-C stops after the tasks in progress, which are imported.
        `progress`: a bar on stderr (None: only on a terminal)."""
        started, since = time.monotonic(), time.time()
        result = LabelProjectResult(self.model_version, self.pending())
        jobs = self.services.jobs
        job = jobs.job(str(self.project_id), self.model_version, self.config.xml, None, {}, writeback=True)
        result.job, submitted = job.id, []
        consumers = self.services.consumers
        try:
            if wait:
                consumers.start()  # work starts while the next pages are fetched
            for page in self.pages():
                room = None if limit is None else limit - len(submitted)
                tasks = page if room is None else page[:room]
                jobs.submit(job, tasks, received=since)
                submitted += [int(task["id"]) for task in tasks]
                if room is not None and len(tasks) >= room:
                    break
            result.submitted = len(submitted)
            if wait:
                self._wait(job, submitted, progress)
        except KeyboardInterrupt:
            result.interrupted = True
        finally:
            if wait:
                consumers.stop()  # in-flight tasks finish and what finished is imported
        result.waited = wait
        self._collect(result, job, submitted, since)
        result.seconds = time.monotonic() - started
        return result

    def run_provider_batch(self, batch: ProviderBatchRun, *, limit: int | None = None,
                  progress: bool | None = None) -> LabelProjectResult:
        """The whole project (or `limit` tasks) through the provider's batch API in one go, then imported
        a page at a time. Ctrl-C while the batch runs leaves it running; the next run resumes it."""
        started = time.monotonic()
        result = LabelProjectResult(self.model_version, self.pending())
        tasks = [task for page in self.pages() for task in page][:limit]
        with Progress(len(tasks), f"project {self.project_id}", progress) as bar:
            try:
                run = batch.run(tasks, progress=bar)
                self._collect_run(result, tasks, run)
                items = self._items(tasks, run)
                for start in range(0, len(items), self.page_size):
                    result.posted += self.post(items[start:start + self.page_size])
                result.interrupted = run.interrupted
            except KeyboardInterrupt:
                result.interrupted = True
        if not result.interrupted:
            batch.close()
        result.seconds = time.monotonic() - started
        return result

    def _items(self, tasks: list[dict[str, Any]], run: PredictionRun) -> list[dict[str, Any]]:
        items = []
        for task, outcome in zip(tasks, run.outcomes, strict=True):
            item = prediction_item(outcome, self.model_version) if outcome is not None else None
            if item is not None:
                items.append({"task": task["id"], **item})
        return items

    @staticmethod
    def _collect_run(result: LabelProjectResult, tasks: list[dict[str, Any]], run: PredictionRun) -> None:
        result.outcomes += run.finished
        for message, ids in run.errors.items():
            result.errors.setdefault(message, []).extend(ids)
        result.causes.update(run.causes)

    def post(self, items: list[dict[str, Any]]) -> int:
        """Import predictions, skipping tasks that already hold one of this version (idempotent)."""
        return len(post_once(self.client, self.project_id, self.model_version, items).posted)

    def _wait(self, job: JobInfo, task_ids: list[int], progress: bool | None) -> None:
        with Progress(len(task_ids), f"project {self.project_id}", progress) as bar:
            while True:
                records = self.services.job_store.records(job.id, task_ids)
                settled = [r for r in records if r.state in DELIVERED or r.state == "failed"]
                bar.show(len(settled), sum(r.state == "failed" for r in records), _usage(records))
                if len(settled) == len(task_ids):
                    return
                time.sleep(0.2)

    def _collect(self, result: LabelProjectResult, job: JobInfo, task_ids: list[int], since: float) -> None:
        for record in self.services.job_store.records(job.id, task_ids):
            if record.state == "posted" and record.updated >= since:
                result.posted += 1
            if record.finished is None or record.finished < since:
                continue  # not run by this run (delivered before, or still queued)
            result.outcomes.append(_outcome(record))
            if record.state == "failed":
                result.errors.setdefault(record.error or "failed", []).append(record.task_id)
                result.causes.setdefault(record.error or "failed", BY_KEY.get(record.cause or "", INTERNAL))


def _usage(records: list[TaskRecord]) -> Usage:
    return Usage.total(Usage(**record.usage) for record in records if record.usage)


def _outcome(record: TaskRecord) -> TaskOutcome:
    regions = (record.item or {}).get("result") if record.state != "failed" else None
    return TaskOutcome(record.status or "failed", regions=regions, error=record.error, error_code=record.error_code,
                       usage=Usage(**record.usage) if record.usage else Usage())

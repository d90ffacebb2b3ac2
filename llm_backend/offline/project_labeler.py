"""Pre-annotate a whole Label Studio project from outside Label Studio (`label-project`).

Label Studio gives an ML backend's /predict 100 s, which a large project never fits in. Here the
backend pulls instead: it asks for the tasks that have no prediction of the current
model_version, a page at a time, predicts them through the service's runner and imports each
page's predictions in one request.

Label Studio 1.23.2 endpoints used:

* `GET /api/projects/{id}`: the label config.
* `GET /api/tasks?project=&page_size=&query=` with Data Manager filters
  `predictions_model_versions not_contains [version]` and `id > last id`, ordered by id. Paging
  by id rather than by page number, because every imported page shrinks the filtered set and
  page numbers would skip tasks. The "contains" filter matches substrings, so each task's
  `predictions_model_versions` is checked again here.
* `POST /api/projects/{id}/import/predictions`: a list of `{task, result, score, model_version}`
  stored in one bulk insert; it answers `{"created": n}`.

Resuming needs no state file: what was imported is skipped by the filter, and what was predicted
but not imported (an interruption mid-page) is in the response cache, so it costs no LLM call.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..core.config import LabelConfig, parse_label_config
from ..engine.outcome import BatchSummary, TaskOutcome
from ..errors import LLMBackendError
from ..label_studio import LabelStudioAPIError, LabelStudioClient
from ..services import Services
from .files import prediction_item
from .provider_batch import ProviderBatchRun
from .runs import PredictionRun, Progress, predict_tasks


class ProjectError(LLMBackendError):
    code = "invalid_project"


@dataclass
class LabelProjectResult:
    model_version: str
    pending: int  # tasks without a prediction of this version when the run started
    posted: int = 0
    outcomes: list[TaskOutcome] = field(default_factory=list)
    errors: dict[str, list[Any]] = field(default_factory=dict)
    interrupted: bool = False
    seconds: float = 0.0

    @property
    def summary(self) -> BatchSummary:
        return BatchSummary.of(self.outcomes, self.seconds)

    @property
    def failed(self) -> int:
        return sum(outcome.regions is None for outcome in self.outcomes)


def _filters(version: str, after: int) -> str:
    return json.dumps({
        "filters": {"conjunction": "and", "items": [
            {"filter": "filter:tasks:predictions_model_versions", "operator": "not_contains", "type": "List",
             "value": [version]},
            {"filter": "filter:tasks:id", "operator": "greater", "type": "Number", "value": after},
        ]},
        "ordering": ["tasks:id"],
    })


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

    def _page(self, after: int, size: int, fields: str | None = None) -> tuple[list[dict[str, Any]], int]:
        params: dict[str, Any] = {"project": self.project_id, "page": 1, "page_size": size,
                                  "query": _filters(self.model_version, after)}
        if fields:
            params["fields"] = fields  # "all" adds each task's annotations (and predictions)
        body = self.client.json("GET", "/api/tasks", params=params)
        if not isinstance(body, dict) or not isinstance(body.get("tasks"), list):
            raise LabelStudioAPIError("Label Studio's GET /api/tasks answered without a \"tasks\" list")
        return body["tasks"], int(body.get("total") or 0)

    def pending(self) -> int:
        """How many tasks lack a prediction of the current model_version."""
        return self._page(0, 1)[1]

    def pages(self, fields: str | None = None) -> Iterator[list[dict[str, Any]]]:
        after = 0
        while True:
            tasks, _total = self._page(after, self.page_size, fields)
            if not tasks:
                return
            after = max(int(task["id"]) for task in tasks)
            yield [task for task in tasks if not has_version(task, self.model_version)]

    def post(self, items: list[dict[str, Any]]) -> int:
        """Import predictions in one request; raise if Label Studio stored fewer than sent."""
        if not items:
            return 0
        answer = self.client.json("POST", f"/api/projects/{self.project_id}/import/predictions", json=items)
        created = int((answer or {}).get("created", 0))
        if created != len(items):
            raise LabelStudioAPIError(
                f"Label Studio stored {created} of {len(items)} predictions for project {self.project_id} "
                "(it drops predictions that do not fit the project's label config; was it changed meanwhile?)"
            )
        return created

    def run(self, *, limit: int | None = None, progress: bool | None = None) -> LabelProjectResult:
        """Predict and import page by page; stop after `limit` tasks, or on Ctrl-C once what
        already finished is imported. `progress`: a bar on stderr (None: only on a terminal)."""
        started = time.monotonic()
        result = LabelProjectResult(self.model_version, self.pending())
        total = result.pending if limit is None else min(result.pending, limit)
        remaining = limit
        with Progress(total, f"project {self.project_id}", progress) as bar:
            try:
                for page in self.pages():
                    tasks = page if remaining is None else page[:remaining]
                    run = predict_tasks(self.services, self.config, tasks, str(self.project_id), progress=bar)
                    self._collect(result, tasks, run)
                    result.posted += self.post(self._items(tasks, run))
                    if remaining is not None:
                        remaining -= len(tasks)
                    if run.interrupted:
                        result.interrupted = True
                        break
                    if remaining is not None and remaining <= 0:
                        break
            except KeyboardInterrupt:
                # Between pages or while importing: the answers are cached, the next run imports them.
                result.interrupted = True
        result.seconds = time.monotonic() - started
        return result

    def run_batch(self, batch: ProviderBatchRun, *, limit: int | None = None,
                  progress: bool | None = None) -> LabelProjectResult:
        """The whole project (or `limit` tasks) through the provider's batch API in one go, then imported
        a page at a time. Ctrl-C while the batch runs leaves it running; the next run resumes it."""
        started = time.monotonic()
        result = LabelProjectResult(self.model_version, self.pending())
        tasks = [task for page in self.pages() for task in page][:limit]
        with Progress(len(tasks), f"project {self.project_id}", progress) as bar:
            try:
                run = batch.run(tasks, progress=bar)
                self._collect(result, tasks, run)
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
    def _collect(result: LabelProjectResult, tasks: list[dict[str, Any]], run: PredictionRun) -> None:
        result.outcomes += run.finished
        for message, ids in run.errors.items():
            result.errors.setdefault(message, []).extend(ids)

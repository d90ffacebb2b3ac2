"""`--batch-api`: a whole run through the provider's batch API at about half the price, then the normal path.

1. Every task's request is rendered as the normal path would render it (`Predictor.prepare`); tasks
   whose answer is in the response cache are not sent, nor texts longer than the model's context
   window (the normal path asks them in parts, engine/longtext.py).
2. Requests already held by an open batch of the same model and server (the batch store, next to
   the cache) are not sent again: that batch is polled instead. This is how a restarted run resumes.
3. The rest is uploaded as JSONL, one line per distinct request (its `custom_id` is the cache key),
   in as many batches as the provider's limits need; each batch id is stored the moment the
   provider accepts it.
4. Every batch is polled until it ends. Ctrl-C stops the polling, not the batches: the next run
   picks them up where they are.
5. The output and error files are read, and every task goes through the batch runner: a task whose
   request was answered becomes an outcome like any other answer (validated, aligned, scored,
   cached); a task whose line failed or whose answer is invalid goes through the normal path once.
6. `close()`, once the results are delivered (the file written, the predictions imported), marks
   the batches used.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.config import LabelConfig
from ..core.usage import Usage
from ..engine.predictor import PredictionJob
from ..engine.provider_batch_answers import ProviderBatchAnswers, first_model, plain_predictor
from ..engine.provider_batch_store import ProviderBatchRecord
from ..engine.task_runner import TaskRunner
from ..errors import LLMBackendError
from ..models.client import Completion, LLMRequest
from ..models.provider_batches import (
    ProviderBatchClient,
    ProviderBatchStatus,
    chunks,
    provider_batch_target,
    request_line,
)
from ..services import Services
from .runs import PredictionRun, Progress, predict_tasks

log = logging.getLogger(__name__)


@dataclass
class ProviderBatchReport:
    """What the provider batches did in one run, and what they cost against the regular price."""

    created: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    statuses: dict[str, ProviderBatchStatus] = field(default_factory=dict)
    requests: int = 0  # distinct requests this run needed that were not cached
    answered: int = 0  # lines that came back with an answer
    failed: dict[str, str] = field(default_factory=dict)  # cache key -> why its line has no answer
    invalid: int = 0  # answers not valid for the config (asked again through the normal path)
    used: int = 0  # tasks answered from a batch
    usage: Usage = field(default_factory=Usage)  # the answered lines: tokens, and cost at the batch price
    regular_cost: float | None = 0.0  # the same tokens at the regular price

    @property
    def saved(self) -> float | None:
        if self.usage.cost is None or self.regular_cost is None:
            return None
        return self.regular_cost - self.usage.cost

    @property
    def pending(self) -> list[ProviderBatchStatus]:
        return [status for status in self.statuses.values() if not status.done]

    def lines(self) -> list[str]:
        if not self.statuses:
            return ["batch API: nothing to send (every answer needed is in the cache)"]
        created = f"{len(self.created)} created" + (f", {len(self.resumed)} resumed" if self.resumed else "")
        count = len(self.statuses)
        lines = [f"batch API: {count} batch{'es' if count > 1 else ''} ({created}); {self.answered} answers, "
                 f"{len(self.failed)} failed lines, {self.invalid} invalid answers (asked again normally); "
                 f"{self.used} tasks answered from the batch"]
        if self.answered:
            usage = self.usage
            regular = "unknown" if self.regular_cost is None else f"${self.regular_cost:.6f}"
            saved = "unknown" if self.saved is None else f"${self.saved:.6f}"
            lines.append(f"batch cost {usage.cost_text()} for {usage.prompt_tokens} prompt + "
                         f"{usage.completion_tokens} completion tokens; {regular} at regular prices, saved {saved}")
        return lines


class ProviderBatchRun:
    """One `--batch-api` run over a list of tasks of one label config."""

    def __init__(self, services: Services, config: LabelConfig, project: str | None, *, poll_interval: float = 30.0,
                 on_status: Callable[[str], None] | None = None) -> None:
        self.services = services
        self.config = config
        self.project = project
        self.poll_interval = poll_interval
        self.on_status = on_status or (lambda line: log.info("%s", line))
        self.plain = plain_predictor(services.predictor)
        self.name = first_model(services.predictor)
        settings = services.settings
        self.target = provider_batch_target(settings, services.routing, self.name)
        self.client = ProviderBatchClient(self.target, services.pricing, timeout=settings.llm_timeout,
                                  max_retries=settings.llm_max_retries, retry_max_wait=settings.llm_retry_max_wait)
        self.report = ProviderBatchReport()
        self._records: list[ProviderBatchRecord] = []

    def run(self, tasks: list[dict[str, Any]], progress: Progress | None = None) -> PredictionRun:
        """Send, poll, collect, and predict every task; KeyboardInterrupt while polling leaves the batches
        running (their ids are stored) and propagates."""
        needed = self._needed(tasks)
        self.report.requests = len(needed)
        self._records = self._resume(needed)
        self._records += self._submit(needed)
        self._poll()
        answers = self._collect(needed)
        predictor = ProviderBatchAnswers(self.services.predictor, answers)
        runner = TaskRunner(predictor, self.services.settings.llm_concurrency)
        try:
            run = predict_tasks(self.services, self.config, tasks, self.project, progress=progress, runner=runner)
        finally:
            runner.shutdown()
        self.report.used, self.report.invalid = predictor.used, len(predictor.invalid)
        return run

    def close(self) -> None:
        """The batches' answers are delivered: they need not be polled again."""
        for record in self._records:
            self.services.provider_batches.close(record.id)

    def _needed(self, tasks: list[dict[str, Any]]) -> dict[str, LLMRequest]:
        """Distinct requests of the first model that the cache does not answer, by cache key."""
        needed: dict[str, LLMRequest] = {}
        for task in tasks:
            job = PredictionJob(self.config, self.project, task, model=self.name)
            try:
                prepared = self.plain.prepare(job)
                request, inputs = prepared.request, prepared.inputs
                if self.plain.long_texts.plan(job, request, inputs.texts, inputs.image_sizes) is not None:
                    continue  # longer than the model's context: the normal path asks it in parts
            except LLMBackendError:
                continue  # the normal path reports it
            key = request.cache_key
            if key not in needed and self.services.cache.get(key) is None:
                needed[key] = request
        return needed

    def _resume(self, needed: dict[str, LLMRequest]) -> list[ProviderBatchRecord]:
        api_base = self.target.params.get("api_base")
        records = [record for record in self.services.provider_batches.open()
                   if record.same_target(self.target.model, api_base) and not needed.keys().isdisjoint(record.keys)]
        for record in records:
            self.report.resumed.append(record.id)
            self.on_status(f"resuming batch {record.id} (submitted {time.ctime(record.created)}): "
                           f"{len(record.keys)} requests")
        return records

    def _submit(self, needed: dict[str, LLMRequest]) -> list[ProviderBatchRecord]:
        covered = {key for record in self._records for key in record.keys}
        lines = [request_line(key, request, self.target) for key, request in needed.items() if key not in covered]
        records = []
        for keys, data in chunks(lines):
            status = self.client.submit(data, {"source": "llm-backend", "project": self.project or ""})
            record = ProviderBatchRecord(status.id, self.name, self.target.model, self.target.params.get("api_base"),
                                 tuple(keys), time.time(), self.project)
            self.services.provider_batches.add(record)  # before anything else can fail: a restart must find it
            records.append(record)
            self.report.created.append(status.id)
            self.on_status(f"created batch {status.id}: {len(keys)} requests to {self.target.where}")
        return records

    def _poll(self) -> None:
        while True:
            for record in self._records:
                known = self.report.statuses.get(record.id)
                if known is not None and known.done:
                    continue
                status = self.client.retrieve(record.id)
                if status != known:
                    self.on_status(status.line())
                self.report.statuses[record.id] = status
            if not self.report.pending:
                return
            time.sleep(self.poll_interval)

    def _collect(self, needed: dict[str, LLMRequest]) -> dict[str, Completion]:
        answers: dict[str, Completion] = {}
        for record in self._records:
            status = self.report.statuses[record.id]
            found = {line.key: line for line in self.client.results(status) if line.key in needed}
            for key in record.keys:
                line = found.get(key)
                if key not in needed:
                    continue
                if line is not None and line.completion is not None:
                    answers[key] = line.completion
                else:
                    reason = line.error if line is not None else f"no line in batch {record.id} ({status.status})"
                    self.report.failed[key] = reason or "no answer"
        self._bill(answers)
        return answers

    def _bill(self, answers: dict[str, Completion]) -> None:
        price = self.services.pricing.price(self.name)
        report = self.report
        report.answered = len(answers)
        report.usage = Usage.total(completion.usage for completion in answers.values())
        regular = [price.cost(c.prompt_tokens, c.completion_tokens) for c in answers.values()]
        report.regular_cost = None if None in regular else sum(r for r in regular if r is not None)

"""Answers that came back from a provider batch, turned into outcomes exactly like any other answer.

`ProviderBatchAnswers` is a `TaskPredictor` for the batch runner: a task whose request was answered in the
batch is validated, aligned, scored and cached by the plain predictor's own functions
(`prepare`, `answer_outcome`); with a cascade, that answer is the first step and the cascade goes
on from it. A task whose line failed, or whose answer is not valid for the config, goes through
the normal path once (a fresh call, with its repair round). Nothing is decided here that the
normal path decides differently.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any

from ..core.config import LabelConfig
from ..core.usage import Usage
from ..errors import LLMBackendError
from ..models.client import Completion
from .cascade import Cascade
from .metrics import Metrics
from .outcome import TaskOutcome, count_outcome, count_usage
from .predictor import PredictionJob, Predictor, TaskPredictor

log = logging.getLogger(__name__)


def plain_predictor(predictor: TaskPredictor) -> Predictor:
    """The predictor that asks one model: the cascade's, or the predictor itself."""
    inner = predictor.predictor if isinstance(predictor, Cascade) else predictor
    if not isinstance(inner, Predictor):
        raise TypeError(f"no plain Predictor behind {type(predictor).__name__}")
    return inner


def first_model(predictor: TaskPredictor) -> str:
    """The model a batch asks: the cascade's first step, or LLM_MODEL."""
    if isinstance(predictor, Cascade):
        return predictor.steps[0]
    return plain_predictor(predictor).settings.llm_model


class ProviderBatchAnswers:
    def __init__(self, predictor: TaskPredictor, answers: dict[str, Completion]) -> None:
        self.predictor = predictor
        self.plain = plain_predictor(predictor)
        self.answers = answers
        self.metrics: Metrics = predictor.metrics
        self._lock = threading.Lock()
        self.used = 0  # tasks answered from the batch
        self._billed: set[str] = set()  # keys whose answer was billed to a task (tasks may share a request)
        self.invalid: dict[str, str] = {}  # cache key -> why the batch's answer was not used

    def model_version(self, config: LabelConfig, project: str | None, model: str | None = None,
                      params: dict[str, Any] | None = None) -> str:
        return self.predictor.model_version(config, project, model, params)

    def predict(self, job: PredictionJob) -> TaskOutcome:
        outcome, unused = self._from_batch(job)
        if outcome is not None:
            count_outcome(self.metrics, outcome)
            return outcome
        outcome = self.predictor.predict(job)
        if unused is not None:  # an invalid answer was paid for too
            count_usage(self.metrics, job.project, unused)
            outcome = dataclasses.replace(outcome, usage=unused + outcome.usage)
        return outcome

    def _from_batch(self, job: PredictionJob) -> tuple[TaskOutcome | None, Usage | None]:
        """The outcome of the batch's answer; or None and the usage of an answer that was not valid."""
        cascade = self.predictor if isinstance(self.predictor, Cascade) and job.model is None else None
        step = dataclasses.replace(job, model=cascade.steps[0]) if cascade is not None else job
        try:
            prepared = self.plain.prepare(step)
        except LLMBackendError:
            return None, None  # the normal path fails it with the same error, and says so
        key = prepared.request.cache_key
        completion = self.answers.get(key)
        if completion is None:
            return None, None
        with self._lock:
            first = key not in self._billed
            self._billed.add(key)
        # Identical tasks share one request line: the first is billed for it, the others are cache hits.
        usage = completion.usage if first else None
        try:
            outcome = self.plain.answer_outcome("ok" if first else "cached", step, prepared, completion, usage)
        except LLMBackendError as exc:
            with self._lock:
                self.invalid[key] = exc.message
            log.info("task %s: the batch's answer is not valid (%s); asking again", job.task.get("id"), exc.message)
            return None, usage
        self.plain.cache.set(key, completion.to_cache())
        with self._lock:
            self.used += 1
        return (cascade.cascade(job, first=outcome) if cascade is not None else outcome), None

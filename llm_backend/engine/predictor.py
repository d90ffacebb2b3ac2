"""One task: the request builder's request, the answer source's answer, then regions and scores.

`Predictor` composes the two parts (engine/request_builder.py: task -> the exact request and what regions
need; engine/answer_source.py: request -> the validated answer, from the cache, a twin in flight or the model)
with long texts (engine/longtext.py), other orders (engine/orders.py), scores (engine/confidence.py) and the
task's outcome.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from ..core.answer import Answer
from ..core.config import LabelConfig
from ..core.demo import is_demo
from ..core.regions import RegionInputs, build_regions
from ..core.usage import Usage
from ..errors import ContextWindowError, LLMBackendError, TaskError
from ..models.client import Completion, CompletionClient, LLMRequest
from ..models.context import ContextWindows
from ..models.pricing import Pricing
from ..models.router import load_routing
from ..redact import redact
from ..settings import Settings
from .answer_source import AnswerSource
from .cache import Cache
from .confidence import Confidence, calibrate_task
from .examples import ExampleStore
from .fetch import MediaFetcher
from .inputs import ImageInput
from .job import Answered, PredictionJob
from .longtext import LongTexts
from .metrics import Metrics
from .orders import apply_caps, ask_reordered, with_reorders
from .outcome import TaskOutcome, count_outcome
from .prompts import PromptLibrary
from .request_builder import PreparedTask, RequestBuilder

__all__ = ["PredictionJob", "Predictor", "PreparedTask", "TaskPredictor", "log_answer"]

log = logging.getLogger(__name__)



class TaskPredictor(Protocol):
    """What the batch runner, the web layer and the offline commands need of a predictor."""

    metrics: Metrics

    def predict(self, job: PredictionJob) -> TaskOutcome: ...

    def model_version(self, config: LabelConfig, project: str | None, model: str | None = None,
                      params: dict[str, Any] | None = None) -> str: ...


def log_answer(task_id: object, outcome: TaskOutcome) -> None:
    """The task's own log line when its answer took more than one clean reply: repairs, a partial answer."""
    signal = [f"confidence: {outcome.signal}"] if outcome.signal and outcome.signal != "off" else []
    notes = []
    if outcome.repairs:
        notes.append("reply read with repairs: " + ", ".join(outcome.repairs))
    if outcome.usage.repairs:
        notes.append("valid after a repair round")
    if outcome.invalid_controls:
        log.warning("task %s answered in part: %s%s", task_id, outcome.error,
                    "".join(f"; {n}" for n in signal + notes))
    elif notes:  # worth INFO: the reply needed help
        log.info("task %s answered: %s", task_id, "; ".join(signal + notes))
    elif signal:  # a clean reply: which signal scored it is DEBUG detail
        log.debug("task %s answered: %s", task_id, signal[0])


class Predictor:
    """One task: its request (the request builder), its answer (the answer source), then regions and scores."""

    def __init__(
        self,
        settings: Settings,
        prompts: PromptLibrary,
        client: CompletionClient,
        cache: Cache,
        metrics: Metrics,
        fetcher: MediaFetcher | None = None,
        examples: ExampleStore | None = None,
        routes: dict[str, tuple[str, ...]] | None = None,
        windows: ContextWindows | None = None,
        pricing: Pricing | None = None,
        confidence: Confidence | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.requests = RequestBuilder(settings, prompts, fetcher, examples, routes)
        self.answers = AnswerSource(client, prompts, cache, metrics)
        # Scores: the confidence signal, and the project's calibration (engine/confidence.py).
        self.confidence = confidence or Confidence(settings, client, cache)
        self.align_options = self.requests.align_options
        # Texts longer than the model's context window (see engine/longtext.py).
        self.long_texts = LongTexts(settings, windows or ContextWindows(settings.llm_context_tokens),
                                    pricing or Pricing(settings, load_routing(settings)), self, self.align_options)

    # -- the two parts, as the long-text engine, the orders and the offline commands use them ----------

    @property
    def client(self) -> CompletionClient:
        return self.answers.client

    @property
    def cache(self) -> Cache:
        return self.answers.cache

    def model_version(self, config: LabelConfig, project: str | None, model: str | None = None,
                      params: dict[str, Any] | None = None) -> str:
        return self.requests.model_version(config, project, model, params)

    def examples_in_use(self, job: PredictionJob) -> bool:
        return self.requests.examples_in_use(job)

    def build_request(self, job: PredictionJob, texts: dict[str, str],
                      images: dict[str, ImageInput] | None = None, long_text: dict[str, Any] | None = None
                      ) -> LLMRequest:
        return self.requests.build_request(job, texts, images, long_text)

    def prepare(self, job: PredictionJob) -> PreparedTask:
        return self.requests.prepare(job)

    def answer(self, job: PredictionJob, request: LLMRequest, inputs: RegionInputs) -> Answered:
        return self.answers.answer(job, request, inputs)

    # -- one task ------------------------------------------------------------------------------------

    def predict(self, job: PredictionJob) -> TaskOutcome:
        outcome = self.attempt(job)
        calibrate_task(self.confidence, job.project, outcome,
                       lambda: self.model_version(job.config, job.project, job.model, job.extra or None))
        count_outcome(self.metrics, outcome)
        return outcome

    def attempt(self, job: PredictionJob) -> TaskOutcome:
        """`predict` without counting the task in the metrics (a cascade counts one task once)."""
        try:
            outcome = self._predict(job)
            if outcome.status == "ok":
                log_answer(job.task.get("id"), outcome)
        except LLMBackendError as exc:
            message = redact(exc.message)
            usage = exc.usage if isinstance(exc, TaskError) else Usage()
            outcome = TaskOutcome("failed", error=message, usage=usage, error_code=exc.code)
            log.warning("task %s failed: %s", job.task.get("id"), message)
        except Exception:
            log.exception("task %s failed with an unexpected error", job.task.get("id"))
            outcome = TaskOutcome("failed", error="internal error while predicting this task; see the server log")
        outcome.model = job.model or self.settings.llm_model
        outcome.project = job.project
        return outcome

    def answer_outcome(self, status: str, job: PredictionJob, prepared: PreparedTask, completion: Completion,
                       usage: Usage | None = None, *, partial: bool = False) -> TaskOutcome:
        """A completion received some other way (a provider batch) as an outcome: judged, read, validated,
        aligned and scored like every answer. Raises AnswerError when it is cut off, refused, empty or not
        valid for the config (with `partial`, only when no control is valid)."""
        reading = self.answers.received(job.config, prepared.request, completion)
        answer = reading.partial() if partial else reading.strict()
        outcome = self._outcome(status, job, prepared.inputs, answer, completion, usage, prepared.request)
        outcome.model, outcome.project = job.model or self.settings.llm_model, job.project
        return outcome

    def _predict(self, job: PredictionJob) -> TaskOutcome:
        prepared = self.prepare(job)
        request, inputs = prepared.request, prepared.inputs
        plan = self.long_texts.plan(job, request, inputs.texts, inputs.image_sizes)
        if plan is not None:
            return self.long_texts.predict(job, inputs.texts, plan)
        try:
            answered = self.answer(job, request, inputs)
        except ContextWindowError as exc:
            # The provider knows its window better than we do (an unknown model, another tokenizer).
            plan = self.long_texts.after_overflow(job, request, inputs.texts, inputs.image_sizes, exc)
            outcome = self.long_texts.predict(job, inputs.texts, plan)
            outcome.usage = exc.usage + outcome.usage
            return outcome
        reorders = ask_reordered(self, job, inputs.texts, answered.answer)  # a spec's other orders (Pairwise)
        outcome = self._outcome(answered.status, job, inputs, with_reorders(answered.answer, reorders),
                                answered.completion, answered.usage, request)
        return apply_caps(outcome, reorders)

    def _outcome(self, status: str, job: PredictionJob, inputs: RegionInputs, answer: Answer,
                 completion: Completion, usage: Usage | None = None, request: LLMRequest | None = None) -> TaskOutcome:
        scores, signal, sampled = self.confidence.scores(job.config, request, answer, completion, job.deadline,
                                                         demo=is_demo(job.model or self.settings.llm_model))
        report = build_regions(job.config, answer.values, inputs, scores)
        region_scores = [r["score"] for r in report.regions if r.get("score") is not None]
        return TaskOutcome(
            status,
            regions=report.regions,
            score=min(region_scores) if region_scores else None,
            usage=(usage or Usage()) + sampled,
            dropped=len(answer.dropped),
            unaligned=len(report.unaligned),
            left_out=report.left_out,
            error=answer.invalid_text() or None,
            invalid_controls=len(answer.invalid),
            repairs=answer.repairs,
            signal=signal,
        )

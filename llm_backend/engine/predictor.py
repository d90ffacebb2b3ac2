"""One task through the pure core: inputs -> prompt -> (cached) model answer -> validation -> regions."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Protocol

from ..core.align import AlignOptions
from ..core.answer import Answer, parse_answer
from ..core.config import LabelConfig
from ..core.demo import is_demo
from ..core.regions import RegionInputs, build_regions
from ..core.schema import json_schema
from ..core.usage import Usage
from ..errors import ContextWindowError, LLMBackendError, TaskError
from ..models.client import Completion, CompletionClient, LLMRequest
from ..models.context import ContextWindows
from ..models.pricing import Pricing
from ..models.router import load_routing
from ..redact import redact
from ..settings import Settings
from .cache import Cache
from .confidence import Confidence, calibrate_task
from .examples import ExampleStore, Snapshot, select_examples
from .exchange import DemoClient, Exchanger, problem_error, reply_problem
from .fetch import MediaFetcher
from .inputs import ImageInput, task_images, task_markup, task_texts
from .job import Answered, PredictionJob
from .longtext import LongTexts
from .metrics import Metrics
from .orders import apply_caps, ask_reordered, with_reorders
from .outcome import TaskOutcome, count_outcome
from .prompts import PromptLibrary
from .singleflight import SingleFlight

log = logging.getLogger(__name__)


LOGPROB_PROVIDERS = ("openai/", "hosted_vllm/", "azure/", "gpt-")


class TaskPredictor(Protocol):
    """What the batch runner, the web layer and the offline commands need of a predictor."""

    metrics: Metrics

    def predict(self, job: PredictionJob) -> TaskOutcome: ...

    def model_version(self, config: LabelConfig, project: str | None, model: str | None = None,
                      params: dict[str, Any] | None = None) -> str: ...


@dataclass(frozen=True)
class PreparedTask:
    """A task ready to send: the exact request (its `cache_key` keys the cache) and what its regions need."""

    request: LLMRequest
    inputs: RegionInputs


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
        self.fetcher = fetcher
        self.examples = examples
        self.prompts = prompts
        self.client = client
        self.cache = cache
        self.metrics = metrics
        # Scores: the confidence signal, and the project's calibration (engine/confidence.py).
        self.confidence = confidence or Confidence(settings, client, cache)
        # Router model name -> its deployments' LiteLLM models (from LLM_ROUTER_CONFIG).
        self.routes: dict[str, tuple[str, ...]] = routes or {}
        self.exchanger = Exchanger(client, prompts, cache, metrics)
        self._flights: SingleFlight[Answered] = SingleFlight()
        self.align_options = AlignOptions(
            fuzzy_threshold=settings.align_fuzzy_threshold, all_occurrences=settings.ner_all_occurrences
        )
        # Texts longer than the model's context window (see engine/longtext.py).
        self.long_texts = LongTexts(settings, windows or ContextWindows(settings.llm_context_tokens),
                                    pricing or Pricing(settings, load_routing(settings)), self, self.align_options)

    def model_version(self, config: LabelConfig, project: str | None, model: str | None = None,
                      params: dict[str, Any] | None = None) -> str:
        """Stable while model, templates and config stay the same; changes when any of them changes."""
        model = model or self.settings.llm_model
        parts = {
            "model": model,
            "temperature": self.settings.llm_temperature,
            "max_tokens": self.settings.llm_max_tokens,
            "mode": self.settings.llm_output_mode,
            "config": config.fingerprint,
            "prompts": self.prompts.fingerprint(project),
            "align": [self.align_options.fuzzy_threshold, self.align_options.all_occurrences],
            "examples": self._snapshot_id(project),
            "long_text": [self.settings.long_text_strategy, self.settings.ner_passes, self.settings.llm_context_tokens],
        }
        if params:
            parts["params"] = params  # a project's extra_params, the cascade
        digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:10]
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", model.rsplit("/", 1)[-1])[:40] or "model"
        return f"{slug}-{digest}"

    def _snapshot(self, project: str | None) -> Snapshot | None:
        if self.examples is None or project is None or self.settings.fewshot_k == 0:
            return None
        return self.examples.latest(project)

    def _snapshot_id(self, project: str | None) -> str | None:
        snapshot = self._snapshot(project)
        return snapshot.id if snapshot else None

    def _examples_for(self, job: PredictionJob, texts: dict[str, str]) -> list[dict[str, str]]:
        snapshot = self._snapshot(job.project) if job.fewshot else None
        if snapshot is None:
            return []
        chosen = select_examples(snapshot.examples, "\n".join(texts.values()), k=self.settings.fewshot_k,
                                 budget_tokens=self.settings.fewshot_max_tokens,
                                 exclude_task=str(job.task.get("id")) if job.task.get("id") is not None else None)
        return [{"text": example.text, "answer": example.answer_json} for example in chosen]

    def examples_in_use(self, job: PredictionJob) -> bool:
        return job.fewshot and self._snapshot(job.project) is not None

    def _wants_logprobs(self, model: str) -> bool:
        mode = self.settings.llm_logprobs
        if mode != "auto":
            return mode == "on"
        # Providers known to return token log-probabilities; asking others may be refused outright.
        return all(target.startswith(LOGPROB_PROVIDERS) for target in self.routes.get(model, (model,)))

    def _response_format(self, schema: dict[str, Any]) -> dict[str, Any] | None:
        mode = self.settings.llm_output_mode
        if mode == "schema":
            return {"type": "json_schema", "json_schema": {"name": "annotation", "schema": schema, "strict": True}}
        if mode == "json":
            return {"type": "json_object"}
        return None

    def build_request(self, job: PredictionJob, texts: dict[str, str],
                      images: dict[str, ImageInput] | None = None, long_text: dict[str, Any] | None = None
                      ) -> LLMRequest:
        """The request for a task; `long_text` tells the templates that the text is a part of a longer one."""
        images = images or {}
        schema = json_schema(job.config)
        context = self.prompts.base_context(job.config, self.settings.llm_output_mode, schema)
        objects = []
        for name, obj in job.config.objects.items():
            if name in texts:
                objects.append({"name": name, "tag": obj.tag, "field": obj.data_key, "text": texts[name],
                                "is_image": False})
            elif name in images:
                objects.append({"name": name, "tag": obj.tag, "field": obj.data_key, "text": "",
                                "is_image": True, "width": images[name].width, "height": images[name].height})
        context.update(
            task={"id": job.task.get("id"), "data": job.task.get("data", {})},
            objects=objects,
            instruction=job.instruction,
            examples=self._examples_for(job, texts),
        )
        if long_text is not None:
            context["long_text"] = long_text
        messages = [message.as_dict() for message in self.prompts.messages(job.project, context)]
        if images:
            # Images travel as content parts of the user message, in the order the prompt names them.
            user: dict[str, Any] = messages[-1]
            user["content"] = [{"type": "text", "text": user["content"]},
                               *({"type": "image_url", "image_url": {"url": image.url}} for image in images.values())]
        return LLMRequest(
            model=job.model or self.settings.llm_model,
            messages=tuple(messages),
            response_format=self._response_format(schema),
            temperature=job.extra.get("temperature", self.settings.llm_temperature),
            max_tokens=job.extra.get("max_tokens", self.settings.llm_max_tokens),
            # A routing file's deployments carry their own api_base; one set here would bypass the Router.
            api_base=None if self.settings.llm_router_config else self.settings.api_base,
            logprobs=self._wants_logprobs(job.model or self.settings.llm_model),
        )

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

    def prepare(self, job: PredictionJob) -> PreparedTask:
        """Read the task's inputs and render the request a run would send (raises TaskError when it cannot)."""
        texts = task_texts(job.config, job.task, self.fetcher)
        images = task_images(job.config, job.task, self.fetcher, self.settings.image_url_passthrough)
        size = sum(len(text) for text in texts.values())
        if size > self.settings.max_task_chars:
            # A resource limit, not a context one: longer texts are split to fit the model (engine/longtext.py).
            raise TaskError(f"task text has {size} characters, over MAX_TASK_CHARS={self.settings.max_task_chars}; "
                            "split the document or raise the limit")
        inputs = RegionInputs(texts, {name: (image.width, image.height) for name, image in images.items()},
                              self.align_options, task_markup(job.config, job.task))
        return PreparedTask(self.build_request(job, texts, images), inputs)

    def answer_outcome(self, status: str, job: PredictionJob, prepared: PreparedTask, completion: Completion,
                       usage: Usage | None = None, *, partial: bool = False) -> TaskOutcome:
        """A completion received some other way (the cache, a provider batch) as an outcome: judged, read,
        validated, aligned and scored like every answer. Raises AnswerError when it is cut off, refused,
        empty or not valid for the config (with `partial`, only when no control is valid)."""
        problem = reply_problem(job.config, completion)
        if problem is not None:
            raise problem_error(problem, completion, prepared.request, None)
        answer = parse_answer(job.config, completion.content, completion.reasoning, partial=partial)
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
        reorders = ask_reordered(self, job, inputs.texts, answered.answer)  # Pairwise: both orders
        outcome = self._outcome(answered.status, job, inputs, with_reorders(answered.answer, reorders),
                                answered.completion, answered.usage, request)
        return apply_caps(outcome, reorders)

    def answer(self, job: PredictionJob, request: LLMRequest, inputs: RegionInputs) -> Answered:
        """The validated answer to one request: from the cache, from an identical request in flight, or paid for
        (`inputs`: the texts the request shows, which the demo model answers from)."""
        cached = self._cached(job, request)
        if cached is not None:
            return cached
        # The demo model answers from rules in this process: nothing is sent anywhere or paid for.
        client = DemoClient(job.config, inputs) if is_demo(request.model) else None

        def ask() -> Answered:
            # Read again as the flight's leader: an identical flight that ended between the read above and now
            # has left its answer in the cache, and asking again would pay twice for it.
            again = self._cached(job, request)
            if again is not None:
                return again
            exchange = self.exchanger.run(job.config, job.project, request, job.deadline, client)
            return Answered("ok", exchange.completion, exchange.answer, exchange.usage)

        answered, shared = self._flights.do(request.cache_key, ask)
        if shared:
            return Answered("cached", answered.completion, answered.answer, Usage())
        return answered

    def _cached(self, job: PredictionJob, request: LLMRequest) -> Answered | None:
        cached = self.cache.get(request.cache_key)
        if cached is None:
            return None
        completion = Completion.from_cache(cached)
        # Partial answers are cached too (they were returned): reading one again gives the same result.
        answer = parse_answer(job.config, completion.content, completion.reasoning, partial=True)
        return Answered("cached", completion, answer, Usage())

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
            error=answer.invalid_text() or None,
            invalid_controls=len(answer.invalid),
            repairs=answer.repairs,
            signal=signal,
        )

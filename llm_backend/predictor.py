"""One task through the pure core: inputs -> prompt -> (cached) model answer -> validation -> regions."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .align import AlignOptions
from .answer import Answer, parse_answer
from .cache import Cache
from .errors import AnswerError, LLMBackendError, LLMError, TaskError
from .examples import ExampleStore, Snapshot, select_examples
from .fetch import MediaFetcher
from .inputs import ImageInput, task_images, task_texts
from .label_config import LabelConfig
from .llm import Completion, CompletionClient, LLMRequest
from .metrics import Metrics
from .prompts import PromptLibrary
from .redact import redact
from .regions import build_regions
from .schema import json_schema
from .scores import control_scores
from .settings import Settings
from .singleflight import SingleFlight

if TYPE_CHECKING:
    from .cascade import CascadeStep

log = logging.getLogger(__name__)


LOGPROB_PROVIDERS = ("openai/", "hosted_vllm/", "azure/", "gpt-")


@dataclass
class TaskOutcome:
    status: str  # ok | cached | failed | timeout
    regions: list[dict[str, Any]] | None = None
    score: float | None = None
    error: str | None = None
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    repaired: bool = False
    dropped: int = 0
    unaligned: int = 0
    model: str | None = None  # the model name asked (LLM_MODEL, a project's model, a cascade step)
    error_code: str | None = None  # the LLMBackendError code of a failure, e.g. invalid_answer
    cascade: list[CascadeStep] = field(default_factory=list)  # every step asked, when a cascade answered

    @property
    def retries(self) -> int:
        if self.cascade:  # each step's first call is not a retry
            return sum(step.retries for step in self.cascade)
        return max(0, self.calls - 1 - int(self.repaired))

    def to_result(self, model_version: str) -> dict[str, Any]:
        """The item Label Studio expects; failures carry no `result` so LS asks again later."""
        if self.regions is None:
            return {"model_version": model_version, "error": self.error or self.status}
        item: dict[str, Any] = {"result": self.regions, "model_version": model_version}
        if self.score is not None:
            item["score"] = self.score
        return item


@dataclass
class _Exchange:
    completion: Completion
    answer: Answer
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost: float | None
    repaired: bool


@dataclass(frozen=True)
class PredictionJob:
    config: LabelConfig
    project: str | None
    task: dict[str, Any]
    instruction: str | None = None
    model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    fewshot: bool = True  # False: no examples in the prompt (the "without examples" evaluation)


def project_id(raw: object) -> str | None:
    """Label Studio sends project as "<id>.<created unix time>"; we key prompts by the id."""
    if raw is None:
        return None
    text = str(raw).split(".", 1)[0].strip()
    return text if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", text) else None


def _add(a: float | None, b: float | None) -> float | None:
    return None if a is None and b is None else (a or 0.0) + (b or 0.0)


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
    ) -> None:
        self.settings = settings
        self.fetcher = fetcher
        self.examples = examples
        self.prompts = prompts
        self.client = client
        self.cache = cache
        self.metrics = metrics
        self._flights: SingleFlight[_Exchange] = SingleFlight()
        # Router model name -> its deployments' LiteLLM models (build_backend fills it from LLM_ROUTER_CONFIG).
        self.routes: dict[str, tuple[str, ...]] = {}
        self.align_options = AlignOptions(
            fuzzy_threshold=settings.align_fuzzy_threshold, all_occurrences=settings.ner_all_occurrences
        )

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
                      images: dict[str, ImageInput] | None = None) -> LLMRequest:
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

    def _exchange(self, job: PredictionJob, request: LLMRequest) -> _Exchange:
        completion = self.client.complete(request)
        calls, prompt_tokens, completion_tokens, cost = (
            completion.attempts, completion.prompt_tokens, completion.completion_tokens, completion.cost,
        )
        repaired = False
        try:
            answer = parse_answer(job.config, completion.content)
        except AnswerError as first_error:
            # One repair round: show the model its reply and what was wrong with it.
            self.metrics.repairs.inc()
            repaired = True
            controls = [{"name": c.name} for c in job.config.controls]
            repair_text = self.prompts.render(job.project, "repair.j2", {"error": first_error.message,
                                                                         "controls": controls})
            retry = request.followed_by({"role": "assistant", "content": completion.content[:20_000]},
                                        {"role": "user", "content": repair_text})
            try:
                completion = self.client.complete(retry)
            except LLMError as exc:
                exc.attempts = calls + getattr(exc, "attempts", 1)  # type: ignore[attr-defined]
                raise
            calls += completion.attempts
            prompt_tokens += completion.prompt_tokens
            completion_tokens += completion.completion_tokens
            cost = _add(cost, completion.cost)
            try:
                answer = parse_answer(job.config, completion.content)
            except AnswerError as second_error:
                invalid = AnswerError(f"invalid answer after one repair: {second_error.message}",
                                      content=completion.content)
                invalid.attempts = calls  # type: ignore[attr-defined]  # both calls were made and billed
                invalid.repaired = True  # type: ignore[attr-defined]  # the second call was a repair, not a retry
                raise invalid from None
        # Stored under the ORIGINAL request: a re-run of a repaired task is free too.
        self.cache.set(request.cache_key, completion.to_cache())
        return _Exchange(completion, answer, calls, prompt_tokens, completion_tokens, cost, repaired)

    def predict(self, job: PredictionJob) -> TaskOutcome:
        outcome = self.attempt(job)
        self._count(outcome)
        return outcome

    def attempt(self, job: PredictionJob) -> TaskOutcome:
        """`predict` without counting the task in the metrics (a cascade counts one task once)."""
        try:
            outcome = self._predict(job)
        except LLMBackendError as exc:
            message = redact(exc.message)
            outcome = TaskOutcome("failed", error=message, calls=getattr(exc, "attempts", 0), error_code=exc.code,
                                  repaired=getattr(exc, "repaired", False))
            log.warning("task %s failed: %s", job.task.get("id"), message)
        except Exception:
            log.exception("task %s failed with an unexpected error", job.task.get("id"))
            outcome = TaskOutcome("failed", error="internal error while predicting this task; see the server log")
        outcome.model = job.model or self.settings.llm_model
        return outcome

    def _predict(self, job: PredictionJob) -> TaskOutcome:
        texts = task_texts(job.config, job.task, self.fetcher)
        images = task_images(job.config, job.task, self.fetcher, self.settings.image_url_passthrough)
        size = sum(len(text) for text in texts.values())
        if size > self.settings.max_task_chars:
            # Truncating would silently leave the rest of the document unlabelled: refuse instead.
            raise TaskError(f"task text has {size} characters, over MAX_TASK_CHARS={self.settings.max_task_chars}; "
                            "split the document or raise the limit if the model's context allows")
        request = self.build_request(job, texts, images)
        sizes = {name: (image.width, image.height) for name, image in images.items()}
        cached = self.cache.get(request.cache_key)
        if cached is not None:
            completion = Completion.from_cache(cached)
            answer = parse_answer(job.config, completion.content)
            return self._outcome("cached", job, texts, answer, completion, sizes)
        exchange, shared = self._flights.do(request.cache_key, lambda: self._exchange(job, request))
        if shared:
            return self._outcome("cached", job, texts, exchange.answer, exchange.completion, sizes)
        outcome = self._outcome("ok", job, texts, exchange.answer, exchange.completion, sizes)
        outcome.calls = exchange.calls
        outcome.prompt_tokens, outcome.completion_tokens = exchange.prompt_tokens, exchange.completion_tokens
        outcome.cost = exchange.cost
        outcome.repaired = exchange.repaired
        return outcome

    def _outcome(self, status: str, job: PredictionJob, texts: dict[str, str], answer: Answer,
                 completion: Completion, image_sizes: dict[str, tuple[int, int]] | None = None) -> TaskOutcome:
        scores = control_scores(job.config, completion.content, completion.logprobs)
        report = build_regions(job.config, answer.values, texts, self.align_options, scores, image_sizes)
        region_scores = [r["score"] for r in report.regions if r.get("score") is not None]
        return TaskOutcome(
            status,
            regions=report.regions,
            score=min(region_scores) if region_scores else None,
            dropped=len(answer.dropped),
            unaligned=len(report.unaligned),
        )

    def _count(self, outcome: TaskOutcome) -> None:
        m = self.metrics
        m.tasks.labels(outcome.status).inc()
        m.llm_calls.inc(outcome.calls)
        m.retries.inc(outcome.retries)
        m.tokens.labels("prompt").inc(outcome.prompt_tokens)
        m.tokens.labels("completion").inc(outcome.completion_tokens)
        if outcome.cost:
            m.cost.inc(outcome.cost)
        if outcome.dropped:
            m.dropped.labels("invalid_value").inc(outcome.dropped)
        if outcome.unaligned:
            m.dropped.labels("unaligned_entity").inc(outcome.unaligned)

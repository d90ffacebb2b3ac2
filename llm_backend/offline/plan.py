"""`llm-backend plan`: what a run will cost and how long it will take, before it runs.

For each model the run would ask (LLM_MODEL, or every cascade step) the plan renders the exact
request of every task (`Predictor.prepare`, as the run would), counts its prompt tokens with
LiteLLM's counter (`Pricing.prompt_tokens`), and leaves out requests the response cache answers
and repeats of the same request. Above `max_render` tasks it renders a seeded random sample and
scales it, with a 95% interval. Answer tokens come from the answers already in the cache for this
model where there are any, else from a typical answer of each control (`core/estimate.py`).

`sample=N` predicts N tasks for real first (annotated ones first; they are cached, so the run does
not pay for them again) and measures what only a real run shows: each model's latency, its
repair rate, the cascade's escalation rate at each step, and, on annotated tasks, each model's
accuracy with the evaluator `eval` uses. Without a sample the later cascade steps have no
escalation rate, so their numbers are unknown (None) rather than guessed.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..core.config import LabelConfig
from ..core.demo import is_demo
from ..core.estimate import run_seconds, scaled_total
from ..core.evaluate import evaluate, gold_result, task_key
from ..core.usage import Usage
from ..engine.cascade import Cascade
from ..engine.confidence import sample_count
from ..engine.longplan import PlannedCall
from ..engine.outcome import TaskOutcome
from ..engine.predictor import PredictionJob
from ..engine.provider_batch_answers import plain_predictor
from ..errors import LLMBackendError
from ..models.client import Completion, CompletionClient, LLMRequest, load_litellm
from ..services import Services
from .answer_tokens import AnswerTokens
from .cascade_report import cascade_steps
from .part_sample import PartSample, PartSampler
from .planned import PlannedRequest, PlannedTask
from .runs import Progress, predict_tasks


class TimedClient:
    """A CompletionClient that records how long each model call took, per model (for `plan --sample`)."""

    def __init__(self, inner: CompletionClient) -> None:
        self.inner = inner
        self.seconds: dict[str, list[float]] = defaultdict(list)
        self._lock = threading.Lock()

    def complete(self, request: LLMRequest, deadline: float | None = None) -> Completion:
        started = time.monotonic()
        try:
            return self.inner.complete(request, deadline)
        finally:
            with self._lock:
                self.seconds[request.model].append(time.monotonic() - started)

    def latency(self, model: str) -> float | None:
        with self._lock:
            measured = self.seconds.get(model)
            return statistics.median(measured) if measured else None


@dataclass
class Measured:
    """What the sample run showed about one model."""

    escalation_rate: float | None = None  # of the tasks it answered, the share passed to the next step
    repairs_per_call: float = 0.0
    accuracy: float | None = None
    annotated: int = 0  # annotated tasks its accuracy is measured on
    latency: float | None = None  # median seconds per call


@dataclass
class ModelPlan:
    model: str
    step: int | None  # cascade step, 1-based; None without a cascade
    tasks: float | None  # tasks that reach this model (None: unknown without a measured escalation rate)
    cached_tasks: float
    calls: float | None
    prompt_tokens: float | None
    completion_tokens: float | None
    completion_source: str  # how answer tokens were estimated: cached answers, sampled parts, control types
    cost_usd: float | None
    batch_cost_usd: float | None
    price_source: str
    seconds: float | None
    seconds_basis: str
    rpm: int | None
    tpm: int | None
    prompt_tokens_interval: tuple[float, float] | None = None  # 95%, when the prompts of a sample were rendered
    cost_usd_max: float | None = None  # a later cascade step if every task reached it
    completion_basis: str = ""  # the answer tokens' estimate in words: the rate measured and on what, or the guess
    completion_tokens_interval: tuple[float, float] | None = None  # 95%, when measured on two calls or more
    cost_usd_interval: tuple[float, float] | None = None  # 95%, from the answer tokens' interval
    prompt_basis: str = "our count"  # or our count times what the provider billed per token of ours (a sample)
    measured: Measured = field(default_factory=Measured)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in _COUNTS:  # estimates of counts are shown as whole numbers
            if isinstance(data[key], float):
                data[key] = round(data[key])
        return data


_COUNTS = ("tasks", "cached_tasks", "calls", "prompt_tokens", "completion_tokens")


@dataclass
class Plan:
    tasks: int
    rendered: int  # tasks whose prompts were rendered and counted (all of them, or a seeded sample)
    model_version: str
    concurrency: int
    models: list[ModelPlan]
    sample: dict[str, Any] | None = None  # the real sample run: tasks, annotated, usage, accuracy
    skipped: dict[str, int] = field(default_factory=dict)  # tasks that cannot be predicted, by reason
    annotated: int = 0  # tasks with an annotation, on which a sample run measures accuracy
    part_sample: dict[str, Any] | None = None  # the long texts' parts asked for real (--sample-parts)

    def _total(self, name: str) -> float | None:
        values = [getattr(model, name) for model in self.models]
        return None if any(value is None for value in values) else sum(values)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tasks": self.tasks, "annotated": self.annotated, "rendered": self.rendered,
            "model_version": self.model_version,
            "concurrency": self.concurrency, "skipped": self.skipped, "sample": self.sample,
            "part_sample": self.part_sample,
            "models": {model.model: model.to_dict() for model in self.models},
            "total": {"cost_usd": self._total("cost_usd"), "batch_cost_usd": self._total("batch_cost_usd"),
                      "seconds": self._total("seconds")},
        }


class Planner:
    def __init__(self, services: Services, config: LabelConfig, project: str | None = None, *,
                 timings: TimedClient | None = None) -> None:
        self.services = services
        self.config = config
        self.project = project
        self.timings = timings
        self.plain = plain_predictor(services.predictor)
        cascade = services.predictor if isinstance(services.predictor, Cascade) else None
        self.models: tuple[str, ...] = cascade.steps if cascade else (services.settings.llm_model,)

    def plan(self, tasks: list[dict[str, Any]], *, sample: int = 0, max_render: int = 2000, seed: int = 0,
             progress: bool | None = None, sample_parts: int = 0) -> Plan:
        load_litellm()  # before the sample run, whose first call would otherwise time the import
        measured = self._sample(tasks, sample, seed, progress) if sample else ({}, None)
        rendered_tasks = tasks if len(tasks) <= max_render else random.Random(seed).sample(tasks, max_render)
        parts = None
        if sample_parts:  # the first model asked: what the run sends first
            first = self.models[0]
            parts = PartSampler(self.plain, self.plain.long_texts.windows, first,
                                lambda: self._render(rendered_tasks, first, {}),
                                self.services.settings.llm_concurrency).run(sample_parts)
        skipped: dict[str, int] = {}
        plans, reach = [], 1.0
        for step, model in enumerate(self.models, start=1):
            rows = self._render(rendered_tasks, model, skipped if step == 1 else {})
            known = measured[0].get(model, Measured())
            if parts is not None and step == 1 and known.latency is None and self.timings is not None:
                known = replace(known, latency=self.timings.latency(model))  # the sampled parts' calls
            plans.append(self._model_plan(model, step if len(self.models) > 1 else None, rows, len(tasks),
                                          reach, known, parts if step == 1 else None))
            rate = known.escalation_rate
            reach = reach * rate if reach is not None and rate is not None else None
        version = self.services.predictor.model_version(self.config, self.project)
        annotated = sum(gold_result(task) is not None for task in tasks)
        return Plan(len(tasks), len(rendered_tasks), version, self.services.settings.llm_concurrency, plans,
                    measured[1], skipped, annotated, parts.to_dict() if parts else None)

    # ---- rendering

    def _render(self, tasks: list[dict[str, Any]], model: str, skipped: dict[str, int]) -> list[PlannedTask | None]:
        pricing, cache = self.services.pricing, self.services.cache
        rows: list[PlannedTask | None] = []
        for task in tasks:
            job = PredictionJob(self.config, self.project, task, model=model)
            try:
                prepared = self.plain.prepare(job)
            except LLMBackendError as exc:
                skipped[exc.message] = skipped.get(exc.message, 0) + 1
                rows.append(None)
                continue
            inputs = prepared.inputs
            try:  # a text longer than the window is asked in parts: count the parts' requests
                parts = self.plain.long_texts.planned_calls(job, prepared.request, inputs.texts, inputs.image_sizes)
            except LLMBackendError as exc:
                skipped[exc.message] = skipped.get(exc.message, 0) + 1
                rows.append(None)
                continue
            calls = parts if parts is not None else \
                [PlannedCall(prepared.request, "\n".join(inputs.texts.values()), "task")]
            requests = []
            for index, call in enumerate(calls):
                request, cached = call.request, cache.get(call.request.cache_key)
                requests.append(PlannedRequest(request.cache_key, pricing.prompt_tokens(request, model),
                                               Completion.from_cache(cached) if cached else None, call.text,
                                               call.kind, request, call.job, call.texts, index == 0))
            rows.append(PlannedTask(requests))
        return rows

    # ---- one model

    def _model_plan(self, model: str, step: int | None, rows: list[PlannedTask | None], population: int,
                    reach: float | None, measured: Measured, parts: PartSample | None = None) -> ModelPlan:
        pricing, settings = self.services.pricing, self.services.settings
        valid = [row for row in rows if row is not None]
        if is_demo(model):  # answers from rules in this process: no call, no token, no bill, no wait
            cached = float(sum(row.cached for row in valid))
            return ModelPlan(model, step, float(population), cached, 0.0, 0.0, 0.0, "demo model", 0.0, 0.0,
                             "the demo model calls nothing", 0.0, "the demo model answers in this process",
                             None, None, measured=measured)
        answers = AnswerTokens(self.config, pricing, model, valid, parts)
        seen: set[str] = set()
        to_send: list[float] = []  # per rendered task: the prompt tokens it adds to the bill
        sent: list[float] = []  # per rendered task: the calls it adds (a long text's parts)
        answer_ends = [0.0, 0.0, 0.0]  # answer tokens of the rendered tasks' new calls, and the 95% interval's ends
        for row in rows:
            new = [r for r in (row.requests if row is not None else []) if r.cached is None and r.key not in seen]
            to_send.append(float(sum(request.prompt_tokens for request in new)))
            sent.append(float(len(new)))
            for request in new:
                answer_ends = [total + value for total, value in zip(answer_ends, answers.tokens(request), strict=True)]
            seen.update(request.key for request in (row.requests if row is not None else []))
        calls_est = scaled_total(sent, population)
        # A sample measured what the provider bills per token of ours (another tokenizer): the bill follows it.
        billed = parts.bill_ratio if parts is not None and parts.bill_ratio else 1.0
        prompt_est = scaled_total(to_send, population).scaled(billed)
        answer_total = answer_ends[0] * population / max(len(rows), 1)
        cached_tasks = scaled_total([1.0 if row is not None and row.cached else 0.0 for row in rows], population)
        per_answer = answer_total / calls_est.value if calls_est.value else \
            (statistics.mean(answers.tokens(r)[0] for row in valid for r in row.requests) if valid else 0.0)
        source = answers.source
        scale = 1.0 + measured.repairs_per_call  # a repair is one more call of about the same size
        price, limits = pricing.price(model), pricing.limits(model)
        interval: tuple[float, float] | None = None
        if step in (None, 1):  # every task reaches the first model
            calls, prompt = calls_est.value * scale, prompt_est.value * scale
            interval = (prompt_est.low * scale, prompt_est.high * scale)
        elif reach is None:  # a later step without a measured escalation rate: only the bound if all escalate
            maximum = price.cost(round(prompt_est.value * scale), round(calls_est.value * per_answer * scale))
            return ModelPlan(model, step, None, cached_tasks.value, None, None, None, source, None, None,
                             price.source, None, "unknown escalation rate", limits.rpm, limits.tpm,
                             cost_usd_max=maximum, measured=measured)
        else:  # the escalated share of the tasks, less those whose answer for this step is cached
            reaching = max(0.0, population * reach - cached_tasks.value)
            mean_prompt = statistics.mean([row.prompt_tokens for row in valid]) if valid else 0.0
            mean_calls = statistics.mean([len(row.requests) for row in valid]) if valid else 1.0
            calls, prompt = reaching * mean_calls * scale, reaching * mean_prompt * scale
        completion = answer_total * scale if step in (None, 1) else calls * per_answer
        samples = sample_count(settings, self.plain.requests.wants_logprobs(model))
        if samples:  # the samples signal: one more call per answer with n=k (the prompt again, k answers)
            calls, prompt, completion = calls * 2, prompt * 2, completion * (1 + samples)
        answer_interval = (completion * answer_ends[1] / answer_ends[0], completion * answer_ends[2] / answer_ends[0]) \
            if answer_ends[0] and answer_ends[1:] != [answer_ends[0]] * 2 else None
        timing = run_seconds(calls, prompt + completion, latency=measured.latency,
                             concurrency=settings.llm_concurrency, rpm=limits.rpm, tpm=limits.tpm)
        cost = price.cost(round(prompt), round(completion))
        ends = [price.cost(round(prompt), round(answers)) for answers in answer_interval or ()]
        cost_interval = (ends[0], ends[1]) if len(ends) == 2 and None not in ends else None
        if cost is None and price.hourly is not None and timing.seconds is not None:
            cost = price.hourly * timing.seconds / 3600  # a machine rented by the hour, busy for the run
        tasks = population * (1.0 if reach is None else reach)
        return ModelPlan(model, step, tasks, cached_tasks.value, calls, prompt, completion, source, cost,
                         price.cost(round(prompt), round(completion), batch=True), price.source,
                         timing.seconds, timing.basis, limits.rpm, limits.tpm, interval, measured=measured,
                         completion_basis=answers.basis(), completion_tokens_interval=answer_interval,
                         cost_usd_interval=cost_interval,  # type: ignore[arg-type]
                         prompt_basis=f"our count x {billed:.3f}, what the provider billed per token of ours on the "
                                      "sampled parts" if billed != 1.0 else "our count")

    # ---- the sample run

    def _sample(self, tasks: list[dict[str, Any]], size: int, seed: int, progress: bool | None
                ) -> tuple[dict[str, Measured], dict[str, Any]]:
        order = list(range(len(tasks)))
        random.Random(seed).shuffle(order)
        order.sort(key=lambda index: gold_result(tasks[index]) is None)  # annotated first, shuffled within
        chosen = [tasks[index] for index in order[:size]]
        with Progress(len(chosen), "plan sample", progress) as bar:
            run = predict_tasks(self.services, self.config, chosen, self.project, progress=bar)
        outcomes = run.outcomes
        annotated = [(i, task) for i, task in enumerate(chosen) if gold_result(task) is not None]
        report = None
        if annotated:
            regions = {task_key(task, i): None if outcomes[i] is None else outcomes[i].regions  # type: ignore[union-attr]
                       for i, task in annotated}
            report = evaluate(self.config, chosen, regions)
        steps = cascade_steps(self.config, annotated, [outcomes[i] for i, _ in annotated]) if annotated else []
        measured = self._measure(outcomes, annotated, report.accuracy if report else None, steps)
        summary = run.summary
        return measured, {"tasks": len(chosen), "annotated": len(annotated), "interrupted": run.interrupted,
                          "usage": summary.usage.to_dict(), "accuracy": report.accuracy if report else None,
                          "failed": summary.failed + summary.timeout,
                          "errors": [{"message": message, "tasks": ids, "cause": run.causes[message].key,
                                      "fix": run.causes[message].fix} for message, ids in run.errors.items()]}

    def _measure(self, outcomes: list[TaskOutcome | None], annotated: list[tuple[int, dict[str, Any]]],
                 accuracy: float | None, steps: list[dict[str, Any]]) -> dict[str, Measured]:
        # Escalations and repairs on the annotated tasks when there are any, as the accuracy is.
        pool = [outcomes[i] for i, _ in annotated] if annotated else outcomes
        done = [o for o in pool if o is not None]
        measured: dict[str, Measured] = {}
        for index, model in enumerate(self.models):
            if len(self.models) == 1:
                usages = [o.usage for o in done if o.usage.calls]
                reached, escalated = len(done), 0
            else:
                usages = [o.cascade[index].usage for o in done if len(o.cascade) > index
                          and o.cascade[index].usage.calls]
                reached = sum(len(o.cascade) > index for o in done)
                escalated = sum(len(o.cascade) > index and o.cascade[index].escalated is not None for o in done)
            usage = Usage.total(usages)
            step = next((s for s in steps if s["model"] == model), None)
            measured[model] = Measured(
                escalation_rate=escalated / reached if reached and index + 1 < len(self.models) else None,
                repairs_per_call=usage.repairs / (usage.calls - usage.repairs) if usage.calls > usage.repairs else 0.0,
                accuracy=step["accuracy_alone"] if step else (accuracy if len(self.models) == 1 else None),
                annotated=step["reached"] if step else (len(annotated) if len(self.models) == 1 else 0),
                latency=self.timings.latency(model) if self.timings else None,
            )
        return measured


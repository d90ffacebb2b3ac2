"""`plan --sample-parts N`: ask N parts of the long texts for real, to measure what only answers show.

A plan counts prompts exactly, but an answer's size is known only once the model has answered: an NER
answer grows with the entities a part holds, and a sparse contract holds far fewer than a dense news
page. The sample asks N of the parts the run would send, spread evenly over them (each task's first
part excepted: a run asks that one alone, first, to measure the provider's count, and a cached answer
would teach it nothing), through the normal path: the response cache, one repair round. The run does
not pay for a sampled part again when it sends the same request.

Each answered part measures its answer tokens per character of text (offline/plan.py extrapolates the
other parts from them, core/answer_evidence.py) and what the provider billed for its prompt against
our count of it. A provider that counts more than we do (the whole 95% interval of that ratio over 1:
a part's framing moves it by a fraction of a percent either way) is learned for the model, as a run
learns it from its first part, and the plan then cuts the parts as the run will. A part refused as too
long teaches the window and the provider's count, as in a run; the parts are then cut again and the
sample drawn from the new cut, at most MAX_ROUNDS times.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..core.answer_evidence import Measured, mean_interval
from ..core.fitting import provider_prompt
from ..core.regions import RegionInputs
from ..core.usage import Usage
from ..engine.job import Answered
from ..engine.predictor import Predictor
from ..errors import ContextWindowError, TaskError
from ..models.context import ContextWindows
from .planned import PlannedRequest, PlannedTask

MAX_ROUNDS = 4  # draws of the sample: the first, and one after each cut taught by a refusal
T = TypeVar("T")


def spread(items: Sequence[T], count: int) -> list[T]:
    """`count` items spread evenly over `items` (the middle of each of `count` equal stretches)."""
    if count >= len(items):
        return list(items)
    return [items[(2 * index + 1) * len(items) // (2 * count)] for index in range(max(count, 0))]


@dataclass
class PartSample:
    """What the sampled parts cost and measured."""

    wanted: int
    asked: int = 0  # part requests sent (refused ones included)
    refused: int = 0  # refused as too long
    failed: int = 0  # failed otherwise (invalid after the repair round, provider down after retries)
    usage: Usage = field(default_factory=Usage)
    measured: dict[str, Measured] = field(default_factory=dict)  # cache key -> the answered part
    bills: list[float] = field(default_factory=list)  # the provider's prompt tokens per one of ours, per part
    learned: list[str] = field(default_factory=list)  # what refusals taught, in words
    errors: list[str] = field(default_factory=list)

    @property
    def bill_ratio(self) -> float | None:
        return sum(self.bills) / len(self.bills) if self.bills else None

    def to_dict(self) -> dict[str, Any]:
        return {"wanted": self.wanted, "asked": self.asked, "answered": len(self.measured), "refused": self.refused,
                "failed": self.failed, "usage": self.usage.to_dict(), "bill_ratio": self.bill_ratio,
                "learned": self.learned, "errors": self.errors[:5]}


class PartSampler:
    def __init__(self, plain: Predictor, windows: ContextWindows, model: str,
                 render: Callable[[], list[PlannedTask | None]], concurrency: int) -> None:
        self.plain, self.windows, self.model, self.render = plain, windows, model, render
        self.concurrency = concurrency

    def run(self, size: int) -> PartSample:
        sample = PartSample(size)
        for _ in range(MAX_ROUNDS):
            rows = self.render()
            parts = [r for row in rows if row is not None for r in row.requests if r.kind == "part" and r.job]
            fresh = [r for r in parts if r.cached is None and r.key not in sample.measured]
            # A task's first part is left to the run, unless it is all there is.
            chosen = spread([r for r in fresh if not r.first] or fresh, size - len(sample.measured))
            if not chosen:
                break
            with ThreadPoolExecutor(min(len(chosen), self.concurrency), thread_name_prefix="plan-part") as pool:
                results = list(pool.map(self._ask, chosen))
            refused = [self._take(sample, request, result) for request, result in zip(chosen, results, strict=True)]
            if not any(refused) or len(sample.measured) >= size:
                break
        if sample.bills:
            mean, low, _high = mean_interval(sample.bills)
            if (mean if low is None else low) > 1.0:  # as a run learns it from its first part's bill
                self.windows.learn_ratio(self.model, round(mean * 10_000), 10_000)
        return sample

    def _ask(self, request: PlannedRequest) -> Answered | TaskError:
        assert request.job is not None and request.request is not None and request.texts is not None
        try:
            return self.plain.answer(request.job, request.request, RegionInputs(request.texts))
        except TaskError as exc:
            return exc

    def _take(self, sample: PartSample, request: PlannedRequest, result: Answered | TaskError) -> bool:
        """Add one part's result to the sample; whether it was refused as too long with a window named."""
        sample.asked += 1
        sample.usage += result.usage
        if isinstance(result, ContextWindowError):
            sample.refused += 1
            return self._learn(sample, request, result)
        if isinstance(result, TaskError):
            sample.failed += 1
            sample.errors.append(result.message[:300])
            return False
        completion, usage = result.completion, result.usage
        sample.measured[request.key] = Measured("part", len(request.text), completion.completion_tokens)
        if result.status == "ok" and usage.calls == 1 and not usage.repairs and usage.prompt_tokens:
            sample.bills.append(usage.prompt_tokens / max(request.prompt_tokens, 1))
        return False

    def _learn(self, sample: PartSample, request: PlannedRequest, error: ContextWindowError) -> bool:
        if not error.window:
            sample.errors.append(error.message[:300])
            return False
        self.windows.learn(self.model, error.window)
        assert request.request is not None
        theirs = provider_prompt(error.prompt_tokens, error.requested_tokens, request.request.max_tokens)
        counted = ""
        if theirs:
            ratio = self.windows.learn_ratio(self.model, theirs, request.prompt_tokens)
            counted = (f", it counted {theirs:,} tokens where we count {request.prompt_tokens:,}: {ratio:.2f} of its "
                       "tokens per one of ours")
        sample.learned.append(f"a part of {len(request.text):,} characters was refused as too long (window "
                              f"{error.window:,} tokens{counted}); the parts were cut again as the run will cut them")
        return True

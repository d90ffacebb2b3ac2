"""The requests `plan` rendered for a task, as the run will send them (offline/plan.py counts them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..engine.job import PredictionJob
from ..models.client import Completion, LLMRequest


@dataclass
class PlannedRequest:
    key: str
    prompt_tokens: int  # our count (LiteLLM's counter)
    cached: Completion | None
    text: str  # what it shows (the answer's typical size is estimated from it)
    kind: str = "task"  # task (asked whole) | part (of a long text) | combine (head-and-tail, summary of parts)
    request: LLMRequest | None = None  # a part's request, job and texts: what `plan --sample-parts` asks
    job: PredictionJob | None = None
    texts: dict[str, Any] | None = None
    first: bool = False  # the first request of its task (a run asks a long text's first part alone)


@dataclass
class PlannedTask:
    """One task's requests: one, or a long text's parts as the run will send them (engine/longplan.py)."""

    requests: list[PlannedRequest]

    @property
    def prompt_tokens(self) -> int:
        return sum(request.prompt_tokens for request in self.requests)

    @property
    def cached(self) -> bool:
        return all(request.cached is not None for request in self.requests)

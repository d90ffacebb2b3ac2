"""Answer tokens for `plan`: measured where the plan has evidence, guessed from the control types where not.

The evidence, for each kind of call (a task asked whole, a long text's part, a combining call):
- answers to this plan's own requests: those in the response cache (an earlier or interrupted run,
  `plan --sample N`) and the parts `plan --sample-parts N` asked (offline/part_sample.py). A part's
  answer is extrapolated per character of text, the other kinds' per call (core/answer_evidence.py);
- without any: a typical answer of each control for the text the call shows (core/estimate.py), a
  guess that assumes, for NER, about one entity per 150 characters: far off for a sparse or a dense text.
`plan` says which it used, and the 95% interval of a measured rate.
"""

from __future__ import annotations

import json

from ..core.answer_evidence import Measured, Rate, rates
from ..core.config import LabelConfig
from ..core.estimate import typical_answer
from ..models.pricing import Pricing
from .part_sample import PartSample
from .planned import PlannedRequest, PlannedTask

GUESS = "control types"


class AnswerTokens:
    """Answer tokens of one request, from the rate measured for its kind, else the typical answer."""

    def __init__(self, config: LabelConfig, pricing: Pricing, model: str, rows: list[PlannedTask],
                 sample: PartSample | None = None) -> None:
        self.config, self.pricing, self.model = config, pricing, model
        measured: dict[str, Measured] = {}
        for row in rows:
            for request in row.requests:
                if request.cached is not None and request.cached.completion_tokens:
                    measured[request.key] = Measured(request.kind, len(request.text), request.cached.completion_tokens)
        sampled = dict(sample.measured) if sample else {}
        self.sampled_kinds = {call.kind for call in sampled.values()}
        measured.update(sampled)
        self.rates: dict[str, Rate] = rates(list(measured.values()))
        self.kinds = [kind for kind in dict.fromkeys(r.kind for row in rows for r in row.requests)]
        self.cached_only = bool(rows) and all(row.cached for row in rows)

    def tokens(self, request: PlannedRequest) -> tuple[float, float, float]:
        """Its answer tokens, and the 95% interval's ends (both the value itself where it is a guess)."""
        rate = self.rates.get(request.kind)
        if rate is None:
            typical = json.dumps(typical_answer(self.config, request.text), ensure_ascii=False)
            value = float(self.pricing.text_tokens(typical, self.model))
            return value, value, value
        scale = len(request.text) if rate.per_character else 1
        low = rate.mean if rate.low is None else rate.low
        high = rate.mean if rate.high is None else rate.high
        return rate.tokens(len(request.text)), low * scale, high * scale

    def _source(self, kind: str) -> str:
        if kind not in self.rates:
            return GUESS
        return "sampled parts" if kind in self.sampled_kinds else "cached answers"

    @property
    def source(self) -> str:
        """Where the answer tokens come from: cached answers, sampled parts, control types (several: joined)."""
        if self.cached_only:
            return "cached answers"
        return " and ".join(dict.fromkeys(self._source(kind) for kind in self.kinds)) or GUESS

    def basis(self) -> str:
        """The same, in words, with the rate and its interval: what a reader of the plan must know to trust it."""
        said = []
        for kind in self.kinds:
            rate = self.rates.get(kind)
            name = {"task": "tasks", "part": "long texts' parts", "combine": "combining calls"}.get(kind, kind)
            if rate is not None:
                said.append(f"{name}: {rate.describe()} ({self._source(kind)})")
            elif kind == "part":
                said.append(f"{name}: guessed from the control types (no part answered yet; --sample-parts N "
                            "asks N of them to measure it)")
            else:
                said.append(f"{name}: guessed from the control types")
        return "; ".join(said)

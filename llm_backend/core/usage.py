"""What model calls cost: one typed value, summed in one place.

Every call, retry and repair adds to a task's `Usage`; a batch, a cascade, an evaluation and the
metrics all add Usages with `+` or `Usage.total()`. A price LiteLLM does not know stays unknown:
`cost` is None, and any sum that includes an unknown price is unknown too, never a silent 0.
Work that made no call (a cached answer) costs a known 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Usage:
    calls: int = 0  # model calls made: first tries, retries and repairs
    retries: int = 0  # calls repeated after a transient failure
    repairs: int = 0  # re-asks after an invalid answer
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = 0.0  # USD; None when a call's price is unknown

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            calls=self.calls + other.calls,
            retries=self.retries + other.retries,
            repairs=self.repairs + other.repairs,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cost=None if self.cost is None or other.cost is None else self.cost + other.cost,
        )

    @classmethod
    def total(cls, usages: Iterable[Usage]) -> Usage:
        result = cls()
        for usage in usages:
            result = result + usage
        return result

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def cost_text(self, digits: int = 6) -> str:
        if self.cost == 0:
            return "$0"  # nothing was paid (cached answers, the demo model): not a price rounded down
        return "unknown" if self.cost is None else f"${self.cost:.{digits}f}"

    def to_dict(self) -> dict[str, Any]:
        # Its flat fields as they are: asdict() deep-copies each value first, at twice the cost (every task's record).
        return {name: getattr(self, name) for name in _FIELDS}


_FIELDS = tuple(field.name for field in fields(Usage))

"""Answer tokens of the calls a run has left to pay for, from answers measured on calls of the same kind.

Pure: measured answers in, a rate per call kind out. A long text's part is extrapolated per character of
the text it shows (an NER answer grows with the entities, and the entities with the text); a whole
task's answer, or a combining call's (head-and-tail, summary of the parts), per call. The 95% interval
of a rate is Student's t over the calls measured (scipy.stats): the calls of a sample stand for the
others only as far as they are alike, and a handful of parts says so with a wide interval.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

PER_CHARACTER = ("part",)  # call kinds whose answer is extrapolated per character of text shown


@dataclass(frozen=True)
class Measured:
    """One answered call: its kind (task | part | combine), the characters of text it showed, its answer tokens."""

    kind: str
    chars: int
    tokens: int


@dataclass(frozen=True)
class Rate:
    """Answer tokens per character (parts) or per call (the other kinds), with a 95% interval when two or more
    calls were measured."""

    kind: str
    mean: float
    low: float | None
    high: float | None
    calls: int  # calls measured

    @property
    def per_character(self) -> bool:
        return self.kind in PER_CHARACTER

    def tokens(self, chars: int) -> float:
        return self.mean * chars if self.per_character else self.mean

    def describe(self) -> str:
        unit = "per character of text" if self.per_character else "per call"
        spread = "" if self.low is None or self.high is None else \
            f" (95%: {_figure(self.low)}–{_figure(self.high)})"
        calls = f"{self.calls} {self.kind}{'s' if self.calls != 1 else ''}"
        return f"{_figure(self.mean)} answer tokens {unit}{spread}, measured on {calls}"


def _figure(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def mean_interval(values: Sequence[float]) -> tuple[float, float | None, float | None]:
    """The mean of `values` and its 95% Student's t interval (None with fewer than two values)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None, None
    spread = statistics.stdev(values)
    if spread == 0 or math.isnan(spread):
        return mean, mean, mean
    from scipy import stats  # ~0.5 s to import: only when an interval is wanted

    low, high = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=stats.sem(values))
    return mean, max(0.0, float(low)), float(high)


def rates(measured: Sequence[Measured]) -> dict[str, Rate]:
    """A rate per call kind that has measured calls (parts with no text of their own are left out)."""
    by_kind: dict[str, list[float]] = {}
    for call in measured:
        if call.kind in PER_CHARACTER:
            if call.chars > 0:
                by_kind.setdefault(call.kind, []).append(call.tokens / call.chars)
        else:
            by_kind.setdefault(call.kind, []).append(float(call.tokens))
    result = {}
    for kind, values in by_kind.items():
        mean, low, high = mean_interval(values)
        result[kind] = Rate(kind, mean, low, high, len(values))
    return result

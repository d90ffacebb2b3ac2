"""Which predictions can be accepted unseen: the lowest score threshold whose precision is certified.

For a target precision P and confidence C, `certify` walks a fixed grid of thresholds from the top
(fixed-sequence testing). At each threshold t, the annotated tasks scoring at least t give n tasks,
k of them right, and the one-sided Clopper-Pearson lower bound on the precision above t
(`scipy.stats.beta.ppf(1 - C, k, n - k + 1)`). While the bound is at least P the walk goes on; at the
first threshold where it is not, it stops, and the last threshold that passed is the answer.
Testing the hypotheses "precision above t < P" in an order fixed in advance and stopping at the
first that cannot be rejected keeps the chance of certifying any threshold whose true precision is
below P at most 1 - C, with no Bonferroni penalty. Thresholds with so few annotated tasks above them
that even all of them right could not reach P (n < log(1 - C) / log(P)) are passed over untested:
that rule reads only the counts, never whether a task was right.

The assumption: the annotated tasks are a random sample of the project's tasks (the precision above
t among them estimates the precision above t among the others). Pure: scipy is imported on use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

GRID: tuple[float, ...] = tuple(round(1 - step / 200, 4) for step in range(201))  # 1.000, 0.995, ..., 0.000


def lower_bound(right: int, n: int, confidence: float) -> float:
    """One-sided Clopper-Pearson lower bound on a binomial proportion with `right` of `n`, at `confidence`."""
    if n <= 0 or right <= 0:
        return 0.0
    from scipy.stats import beta

    return float(beta.ppf(1 - confidence, right, n - right + 1))


def smallest_certifiable(precision: float, confidence: float) -> int:
    """The fewest tasks that, all right, give a lower bound of at least `precision`: (1 - C)^(1/n) >= P."""
    return math.ceil(math.log(1 - confidence) / math.log(precision) - 1e-12)


@dataclass(frozen=True)
class Evidence:
    """An annotated task: its score (as `accept` ranks tasks) and whether its whole prediction was right."""

    task_id: str
    score: float
    correct: bool


@dataclass(frozen=True)
class Step:
    threshold: float
    n: int
    right: int
    lower_bound: float


@dataclass(frozen=True)
class Certificate:
    precision: float
    confidence: float
    threshold: float | None  # None: nothing could be certified
    lower_bound: float | None  # the certified bound at `threshold`
    evidence: int  # annotated tasks the bound was computed on (all of them, at every threshold)
    steps: tuple[Step, ...]  # every threshold tested, in order; the last one failed unless the grid ran out
    more_needed: int | None = None  # when nothing was certified: about how many more annotated tasks would do


def _counts(evidence: Sequence[Evidence], threshold: float) -> tuple[int, int]:
    above = [e for e in evidence if e.score >= threshold]
    return len(above), sum(e.correct for e in above)


def certify(evidence: Sequence[Evidence], precision: float, confidence: float = 0.9,
            grid: Sequence[float] = GRID) -> Certificate:
    """Fixed-sequence testing from the top of `grid` (descending); see the module docstring."""
    if not 0 < precision < 1 or not 0 < confidence < 1:
        raise ValueError("precision and confidence must be between 0 and 1")
    least = smallest_certifiable(precision, confidence)
    steps: list[Step] = []
    passed: Step | None = None
    for threshold in sorted(grid, reverse=True):
        n, right = _counts(evidence, threshold)
        if n < least:
            continue
        step = Step(threshold, n, right, round(lower_bound(right, n, confidence), 6))
        steps.append(step)
        if step.lower_bound < precision:
            break
        passed = step
    if passed is not None:
        return Certificate(precision, confidence, passed.threshold, passed.lower_bound, len(evidence), tuple(steps))
    return Certificate(precision, confidence, None, None, len(evidence), tuple(steps),
                       more_needed(evidence, precision, confidence, grid))


def _needed_above(observed: float, precision: float, confidence: float, start: int, limit: int = 1_000_000
                  ) -> int | None:
    """The fewest tasks above a threshold that, right at the `observed` rate, would certify `precision`."""
    def passes(n: int) -> bool:
        return lower_bound(math.floor(observed * n), n, confidence) >= precision

    high = max(start, 1)
    while not passes(high):
        high *= 2
        if high > limit:
            return None
    low = max(start, 1) // 2
    while high - low > 1:  # the bound grows with n at a fixed rate: bisect
        middle = (low + high) // 2
        if passes(middle):
            high = middle
        else:
            low = middle
    return high


def more_needed(evidence: Sequence[Evidence], precision: float, confidence: float = 0.9,
                grid: Sequence[float] = GRID, min_support: int = 5) -> int | None:
    """About how many more annotated tasks (a random sample, like these) would certify `precision`.

    For each threshold whose observed precision beats the target, the tasks above it keep their
    observed share and rate: the smallest total whose bound reaches `precision` there. The best
    threshold's answer, less the tasks there already are; None when no threshold's observed precision
    beats the target (more of the same evidence cannot certify it)."""
    total = len(evidence)
    best: int | None = None
    for threshold in grid:
        n, right = _counts(evidence, threshold)
        if n < min_support or right / n <= precision:
            continue
        needed = _needed_above(right / n, precision, confidence, n)
        if needed is None:
            continue
        overall = math.ceil(needed * total / n)
        best = overall if best is None else min(best, overall)
    return None if best is None else max(best - total, 1)

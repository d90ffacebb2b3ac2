"""Paired comparison of two prompt versions on the same annotated tasks. Pure: numbers in, numbers out.

Every control's headline metric is a ratio of sums over tasks (accuracy: correct / tasks; span F1:
2·matched / (predicted + annotated); similarity: Σ similarity / tasks), so one task contributes a
numerator and a denominator on each side (`Side`). Resampling tasks with replacement and recomputing
both ratios on the same resample is the paired bootstrap: the interval of B − A accounts for the two
versions being run on the same tasks, which is what makes a small gain detectable at all.

    paired_bootstrap([(a, b), ...])  -> Interval  (B − A of the mean over controls, percentile interval)
    mcnemar(a_correct, b_correct)    -> p          (exact: binomial test on the discordant pairs)
    stratified_split(keys, labels)   -> (working, held_out)

numpy, scipy and scikit-learn are the `lab` extra (`pip install 'llm-backend[lab]'`); only the
prompt-lab commands import this module, never `import llm_backend` or the server.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000  # the floor; the percentile interval's ends move by < 0.005 between seeds at this size
CONFIDENCE = 0.95
SEED = 0
MIN_TASKS = 20  # below this a paired interval is mostly resampling noise: the commands refuse (exit 2)
_CHUNK = 250  # resamples drawn at once: bounds memory to _CHUNK x tasks indices


@dataclass(frozen=True)
class Side:
    """One version's per-task contributions to one control's headline: metric = Σ num / Σ den."""

    num: np.ndarray
    den: np.ndarray

    @classmethod
    def of(cls, num: Sequence[float], den: Sequence[float]) -> Side:
        side = cls(np.asarray(num, dtype=float), np.asarray(den, dtype=float))
        if side.num.shape != side.den.shape or side.num.ndim != 1:
            raise ValueError("num and den must be 1-D and of the same length")
        return side

    @property
    def metric(self) -> float | None:
        total = float(self.den.sum())
        return float(self.num.sum()) / total if total else None

    def __len__(self) -> int:
        return len(self.num)


@dataclass(frozen=True)
class Interval:
    diff: float  # B − A on all tasks
    low: float
    high: float
    resamples: int  # resamples in which every ratio was defined (the others are left out)
    confidence: float

    @property
    def above_zero(self) -> bool:
        return self.low > 0

    def contains_zero(self) -> bool:
        return self.low <= 0 <= self.high


def _pairs_ok(pairs: Sequence[tuple[Side, Side]]) -> int:
    if not pairs:
        raise ValueError("nothing to compare")
    sizes = {len(side) for pair in pairs for side in pair}
    if len(sizes) != 1:
        raise ValueError(f"paired sides must cover the same tasks, got lengths {sorted(sizes)}")
    return sizes.pop()


def _statistic(pairs: Sequence[tuple[Side, Side]], index: np.ndarray | None) -> np.ndarray:
    """Mean over controls of B's ratio − A's ratio; one value per row of `index` (task positions)."""
    diffs = []
    for a, b in pairs:
        ratios = []
        for side in (a, b):
            num = side.num[index].sum(axis=-1) if index is not None else side.num.sum()
            den = side.den[index].sum(axis=-1) if index is not None else side.den.sum()
            with np.errstate(invalid="ignore", divide="ignore"):
                ratios.append(np.where(den > 0, num / np.where(den > 0, den, 1), np.nan))
        diffs.append(ratios[1] - ratios[0])
    return np.mean(np.stack(diffs), axis=0)


def paired_bootstrap(pairs: Sequence[tuple[Side, Side]], *, resamples: int = RESAMPLES,
                     confidence: float = CONFIDENCE, seed: int = SEED) -> Interval:
    """The percentile bootstrap interval of (mean over controls of) B − A, tasks resampled jointly.

    Seeded, so the same numbers give the same interval. A resample in which some ratio has a zero
    denominator (e.g. no annotated span was drawn) is left out, and `resamples` says how many counted.
    """
    tasks = _pairs_ok(pairs)
    observed = float(_statistic(pairs, None))
    if np.isnan(observed):
        raise ValueError("a control has nothing to measure on these tasks")
    rng = np.random.default_rng(seed)
    values = []
    for start in range(0, resamples, _CHUNK):
        index = rng.integers(0, tasks, size=(min(_CHUNK, resamples - start), tasks))
        values.append(_statistic(pairs, index))
    draws = np.concatenate(values)
    draws = draws[~np.isnan(draws)]
    alpha = 1 - confidence
    low, high = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    return Interval(observed, float(low), float(high), int(draws.size), confidence)


def mcnemar(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> float:
    """Exact McNemar p-value (two-sided): of the tasks exactly one version got right, is B's share 1/2?"""
    from scipy.stats import binomtest  # scipy.stats takes ~0.5 s to import: only when a p-value is wanted

    a, b = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    if a.shape != b.shape:
        raise ValueError("paired answers must cover the same tasks")
    only_b, only_a = int(np.sum(b & ~a)), int(np.sum(a & ~b))
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_b, only_a + only_b, 0.5).pvalue)


def stratified_split(keys: Sequence[str], labels: Sequence[str], held_out: float, *, seed: int = SEED
                     ) -> tuple[list[str], list[str]]:
    """(working, held-out) task keys, the held-out share of each label as close to `held_out` as sklearn gets.

    A label seen only once cannot be split both ways: its task joins the most common label's stratum.
    With fewer tasks than strata on a side, sklearn cannot stratify and the split is simply random (seeded).
    """
    from sklearn.model_selection import train_test_split

    if not 0 < held_out < 1:
        raise ValueError("the held-out share must be between 0 and 1")
    counts = Counter(labels)
    common = counts.most_common(1)[0][0] if counts else ""
    stratify = [label if counts[label] > 1 else common for label in labels]
    try:
        working, held = train_test_split(list(keys), test_size=held_out, random_state=seed, stratify=stratify)
    except ValueError:  # too few tasks for every stratum to appear on both sides
        working, held = train_test_split(list(keys), test_size=held_out, random_state=seed)
    return list(working), list(held)

"""What a score means: a monotone map from a raw confidence to the probability of being right.

Raw confidences (token probabilities, agreement among samples) are overconfident or otherwise off;
`fit` learns, per control, the map from raw score to "the annotator agreed" on annotated tasks,
with isotonic regression (scikit-learn's `IsotonicRegression`): it assumes only that a higher raw
score is not less likely to be right, which is all a raw confidence promises (Platt scaling would
also assume the sigmoid's shape). The fitted map is kept as its breakpoints and applied by linear
interpolation (what `IsotonicRegression.predict` does), so serving needs neither numpy nor sklearn.

The fit uses part of the annotated tasks; the expected calibration error (ECE) before and after,
and the reliability table, are measured on the others (held out by a hash of the task id, so a
task stays on its side when the fit is redone). Pure: sklearn is imported inside `fit` only.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

BINS = 10
HOLDOUT_FRACTION = 0.5  # of the annotated tasks, kept out of the fit to measure it (and to certify with)
MIN_TASKS = 100  # annotated tasks with a score a control needs before it is calibrated


class NotEnoughData(ValueError):
    """Too few annotated tasks to fit or to measure a calibration; the message says how many there are."""


@dataclass(frozen=True)
class Monotone:
    """A non-decreasing piecewise-linear map given by its breakpoints, flat outside them."""

    x: tuple[float, ...]
    y: tuple[float, ...]

    def __call__(self, score: float) -> float:
        xs, ys = self.x, self.y
        if score <= xs[0]:
            return ys[0]
        if score >= xs[-1]:
            return ys[-1]
        right = bisect.bisect_right(xs, score)
        x0, x1, y0, y1 = xs[right - 1], xs[right], ys[right - 1], ys[right]
        return y0 if x1 == x0 else y0 + (y1 - y0) * (score - x0) / (x1 - x0)

    def to_dict(self) -> dict[str, list[float]]:
        return {"x": list(self.x), "y": list(self.y)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Monotone:
        return cls(tuple(float(v) for v in data["x"]), tuple(float(v) for v in data["y"]))


def fit(scores: Sequence[float], correct: Sequence[bool]) -> Monotone:
    """Isotonic regression of "right" on the raw score, clipped to the scores seen."""
    from sklearn.isotonic import IsotonicRegression

    model = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    model.fit([float(s) for s in scores], [1.0 if c else 0.0 for c in correct])
    return Monotone(tuple(float(v) for v in model.X_thresholds_), tuple(float(v) for v in model.y_thresholds_))


@dataclass(frozen=True)
class Bin:
    """One bin of a reliability table: tasks whose (calibrated) score fell in [low, high)."""

    low: float
    high: float
    count: int
    mean_raw: float | None
    mean_calibrated: float | None
    accuracy: float | None


def bin_index(probability: float, bins: int = BINS) -> int:
    """Equal-width bins over [0, 1], each (low, high] and the first [0, high]: sklearn's calibration_curve."""
    return bisect.bisect_left([step / bins for step in range(1, bins)], probability)


def ece(probabilities: Sequence[float], correct: Sequence[bool], bins: int = BINS) -> float:
    """Expected calibration error: the count-weighted mean |accuracy - mean probability| over equal-width bins."""
    if not probabilities:
        raise NotEnoughData("no scored tasks to measure the calibration error on")
    sums = [[0, 0.0, 0] for _ in range(bins)]  # count, sum of probabilities, right
    for probability, right in zip(probabilities, correct, strict=True):
        cell = sums[bin_index(probability, bins)]
        cell[0] += 1
        cell[1] += probability
        cell[2] += bool(right)
    return sum(abs(right - total) for _count, total, right in sums) / len(probabilities)


def reliability(raw: Sequence[float], calibrated: Sequence[float], correct: Sequence[bool],
                bins: int = BINS) -> list[Bin]:
    """The reliability table, binned by the calibrated score (what a reader of the served score sees)."""
    members: list[list[int]] = [[] for _ in range(bins)]
    for index, probability in enumerate(calibrated):
        members[bin_index(probability, bins)].append(index)
    table = []
    for number, indices in enumerate(members):
        count = len(indices)
        table.append(Bin(
            round(number / bins, 4), round((number + 1) / bins, 4), count,
            round(sum(raw[i] for i in indices) / count, 4) if count else None,
            round(sum(calibrated[i] for i in indices) / count, 4) if count else None,
            round(sum(bool(correct[i]) for i in indices) / count, 4) if count else None))
    return table


def held_out(task_id: object, salt: str = "", fraction: float = HOLDOUT_FRACTION) -> bool:
    """Whether a task is kept out of the fit: a stable hash of its id, so the split never depends on scores."""
    digest = hashlib.sha256(f"{salt}:{task_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


@dataclass(frozen=True)
class ControlCalibration:
    """One control's fitted map and how well it does on the held-out tasks."""

    n: int  # annotated tasks with a score for this control
    n_fit: int
    n_holdout: int
    ece_before: float
    ece_after: float
    bins: list[Bin]
    mapping: Monotone
    accuracy: float  # of the held-out tasks

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mapping"] = self.mapping.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ControlCalibration:
        return cls(**{**data, "bins": [Bin(**b) for b in data["bins"]],
                      "mapping": Monotone.from_dict(data["mapping"])})


@dataclass(frozen=True)
class Observation:
    """One annotated task's raw score for a control, and whether the prediction was right."""

    task_id: str
    score: float
    correct: bool


def calibrate_control(name: str, observations: Sequence[Observation], *, salt: str = "",
                      min_tasks: int = MIN_TASKS, fraction: float = HOLDOUT_FRACTION) -> ControlCalibration:
    """Fit on the tasks outside the hold-out, measure on those inside it; raise NotEnoughData below `min_tasks`."""
    if len(observations) < min_tasks:
        raise NotEnoughData(f"{name}: {len(observations)} annotated tasks with a prediction score of this "
                            f"model_version; calibrating needs at least {min_tasks}")
    fit_part = [o for o in observations if not held_out(o.task_id, salt, fraction)]
    test_part = [o for o in observations if held_out(o.task_id, salt, fraction)]
    if len(fit_part) < min_tasks * (1 - fraction) / 2 or len(test_part) < min_tasks * fraction / 2:
        raise NotEnoughData(f"{name}: the split left {len(fit_part)} tasks to fit and {len(test_part)} to test")
    mapping = fit([o.score for o in fit_part], [o.correct for o in fit_part])
    raw = [o.score for o in test_part]
    right = [o.correct for o in test_part]
    calibrated = [mapping(s) for s in raw]
    return ControlCalibration(
        n=len(observations), n_fit=len(fit_part), n_holdout=len(test_part),
        ece_before=round(ece(raw, right), 4), ece_after=round(ece(calibrated, right), 4),
        bins=reliability(raw, calibrated, right), mapping=mapping,
        accuracy=round(sum(right) / len(right), 4))


@dataclass(frozen=True)
class Calibration:
    """A project's calibration: one map per control, for one model_version and one confidence signal."""

    model_version: str
    signal: str  # logprobs | samples: the raw scores the maps read
    controls: dict[str, ControlCalibration]
    fit_tasks: tuple[str, ...]  # the tasks the maps were fitted on: never evidence for `accept`
    created: float = 0.0
    skipped: dict[str, str] = field(default_factory=dict)  # control -> why it has no map

    def score(self, control: str, raw: float) -> float | None:
        calibration = self.controls.get(control)
        return round(calibration.mapping(raw), 4) if calibration is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {"model_version": self.model_version, "signal": self.signal, "created": self.created,
                "controls": {name: c.to_dict() for name, c in self.controls.items()},
                "fit_tasks": list(self.fit_tasks), "skipped": dict(self.skipped)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        return cls(str(data["model_version"]), str(data.get("signal", "logprobs")),
                   {name: ControlCalibration.from_dict(c) for name, c in data.get("controls", {}).items()},
                   tuple(str(t) for t in data.get("fit_tasks", ())), float(data.get("created", 0.0)),
                   dict(data.get("skipped") or {}))

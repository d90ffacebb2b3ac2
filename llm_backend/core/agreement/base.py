"""What every agreement report has: counts to precision/recall/F1, tables, and the report interface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..config_types import Control

NONE_LABEL = "(none)"
Value = dict[str, Any]  # a region's "value" object


def ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def show(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


@dataclass
class Scores:
    """Precision, recall and F1 from counts; None where the denominator is zero."""

    tp: int = 0
    predicted: int = 0
    gold: int = 0

    @property
    def precision(self) -> float | None:
        return ratio(self.tp, self.predicted)

    @property
    def recall(self) -> float | None:
        return ratio(self.tp, self.gold)

    @property
    def f1(self) -> float | None:
        # 2TP / (predicted + gold): equal to 2PR/(P+R), and defined when only one side is.
        return ratio(2 * self.tp, self.predicted + self.gold)

    @property
    def f1_parts(self) -> tuple[float, float]:
        """F1 as numerator and denominator, which add up over tasks."""
        return 2.0 * self.tp, float(self.predicted + self.gold)

    def add(self, matched: int, gold: int, predicted: int) -> None:
        self.tp += matched
        self.gold += gold
        self.predicted += predicted

    def cells(self) -> list[str]:
        return [show(self.precision), show(self.recall), show(self.f1)]

    def to_dict(self) -> dict[str, Any]:
        return {"tp": self.tp, "predicted": self.predicted, "gold": self.gold,
                "precision": self.precision, "recall": self.recall, "f1": self.f1}


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class ControlReport:
    """What every report has; subclasses add their counts."""

    control: str
    kind: str
    tasks: int = 0

    headline_name: ClassVar[str] = "accuracy"

    @property
    def headline(self) -> float | None:
        raise NotImplementedError

    @property
    def parts(self) -> tuple[float, float]:
        """The headline so far as (numerator, denominator) sums, so a paired bootstrap can resample tasks
        (core/paired.py): the difference of `parts` before and after `add` is one task's share."""
        raise NotImplementedError

    def add(self, gold: list[Value], predicted: list[Value] | None, text: str) -> tuple[float | None, tuple[str, str]]:
        raise NotImplementedError

    def finish(self, control: Control) -> None:
        """Called once after the last task (orders classes, builds matrices)."""

    def metrics(self) -> dict[str, Any]:
        raise NotImplementedError

    def summary(self) -> str:
        raise NotImplementedError

    def facts(self) -> list[tuple[str, str]]:
        return [(self.headline_name, show(self.headline))]

    def note(self) -> str:
        """How the numbers were counted, for a reader of the report."""
        return ""

    def tables(self) -> list[Table]:
        return []

    def to_dict(self) -> dict[str, Any]:
        return {"control": self.control, "kind": self.kind, "headline": {self.headline_name: self.headline},
                "tasks": self.tasks, **self.metrics()}



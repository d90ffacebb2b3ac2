"""Choices and Taxonomy: the chosen set against the annotated one."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..config_types import Control
from .base import NONE_LABEL, ControlReport, Scores, Table, Value, ratio, show


def _show_set(values: frozenset[str]) -> str:
    return ", ".join(sorted(values)) or NONE_LABEL


@dataclass
class SetReport(ControlReport):
    """Choices and Taxonomy: the chosen set must equal the annotated one."""

    labels_of: Callable[[Value], Iterable[str]] = lambda value: ()
    multiple: bool = True
    correct: int = 0
    classes: dict[str, Scores] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)  # confusion-matrix axis, gold rows x predicted columns
    matrix: list[list[int]] | None = None
    pairs: list[tuple[str, str]] = field(default_factory=list, repr=False)

    @property
    def accuracy(self) -> float | None:
        return ratio(self.correct, self.tasks)

    @property
    def macro_f1(self) -> float | None:
        values = [s.f1 for s in self.classes.values() if s.f1 is not None]
        return sum(values) / len(values) if values else None

    @property
    def headline(self) -> float | None:
        return self.accuracy

    @property
    def parts(self) -> tuple[float, float]:
        return float(self.correct), float(self.tasks)

    def _set(self, values: list[Value] | None) -> frozenset[str]:
        return frozenset(label for value in values or [] for label in self.labels_of(value))

    def add(self, gold: list[Value], predicted: list[Value] | None, text: str) -> tuple[float | None, tuple[str, str]]:
        want, got = self._set(gold), self._set(predicted)
        self.tasks += 1
        self.correct += want == got
        for label in want | got:
            self.classes.setdefault(label, Scores()).add(int(label in want and label in got), int(label in want),
                                                         int(label in got))
        if not self.multiple:
            self.pairs.append((_show_set(want), _show_set(got)))
        union = want | got
        return (len(want & got) / len(union) if union else 1.0), (_show_set(want), _show_set(got))

    def finish(self, control: Control) -> None:
        if self.multiple:
            return
        axis = [option.result_value for option in control.options]
        axis += sorted({value for pair in self.pairs for value in pair if value not in axis and value != NONE_LABEL})
        if any(NONE_LABEL in pair for pair in self.pairs):
            axis.append(NONE_LABEL)
        position = {label: i for i, label in enumerate(axis)}
        matrix = [[0] * len(axis) for _ in axis]
        for want, got in self.pairs:
            matrix[position[want]][position[got]] += 1
        self.labels, self.matrix = axis, matrix
        # Classes in config order (then any unknown ones), for stable tables.
        self.classes = {label: self.classes[label] for label in axis if label in self.classes}

    def metrics(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "macro_f1": self.macro_f1,
                "classes": {k: v.to_dict() for k, v in self.classes.items()}, "labels": self.labels,
                "matrix": self.matrix}

    def summary(self) -> str:
        return (f"{self.control} ({self.kind}): accuracy {show(self.accuracy)} ({self.correct}/{self.tasks}), "
                f"macro F1 {show(self.macro_f1)}")

    def facts(self) -> list[tuple[str, str]]:
        return [("accuracy", show(self.accuracy)), ("correct", f"{self.correct}/{self.tasks}"),
                ("macro F1", show(self.macro_f1))]

    def tables(self) -> list[Table]:
        return [Table(["class", "precision", "recall", "F1", "annotated", "predicted"],
                      [[label, *s.cells(), str(s.gold), str(s.predicted)] for label, s in self.classes.items()])]



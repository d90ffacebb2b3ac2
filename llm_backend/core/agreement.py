"""How far a prediction agrees with an annotation, one report kind per way of measuring it.

Each control family (see `controls/`) picks the report that fits its values:

    SetReport      Choices, Taxonomy: accuracy of the chosen set, per-class P/R/F1, and for a
                   single choice a confusion matrix
    SpanReport     Labels (NER): span P/R/F1, exact (same start, end, label) and overlap (same
                   label, shared characters, each span matched once), per label
    TextReport     TextArea: mean string similarity, share of identical texts
    NumberReport   Rating, Number: accuracy and mean absolute error
    ExactReport    DateTime: accuracy of the exact value
    ShapeReport    RectangleLabels (IoU >= 0.5), KeyPointLabels (within 5% of the image): P/R/F1

A report sees one task at a time: `add(gold, predicted, text)` takes this control's region values
on each side (`predicted` is None when the prediction failed: it counts as empty) and returns the
task's agreement (0..1, None when there is nothing to compare) with the two sides as shown to a
reader. `summary()`, `facts()` and `tables()` describe it for the text and HTML renderers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rapidfuzz import fuzz

from .config import Control

NONE_LABEL = "(none)"
Value = dict[str, Any]
LabelledRange = tuple[int, int, str]  # (start, end, label) of an entity


def _ratio(numerator: int, denominator: int) -> float | None:
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
        return _ratio(self.tp, self.predicted)

    @property
    def recall(self) -> float | None:
        return _ratio(self.tp, self.gold)

    @property
    def f1(self) -> float | None:
        # 2TP / (predicted + gold): equal to 2PR/(P+R), and defined when only one side is.
        return _ratio(2 * self.tp, self.predicted + self.gold)

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
        return _ratio(self.correct, self.tasks)

    @property
    def macro_f1(self) -> float | None:
        values = [s.f1 for s in self.classes.values() if s.f1 is not None]
        return sum(values) / len(values) if values else None

    @property
    def headline(self) -> float | None:
        return self.accuracy

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


def match_overlap(gold: list[LabelledRange], predicted: list[LabelledRange]) -> int:
    """One-to-one matches of same-label overlapping ranges, largest overlaps first."""
    pairs = sorted(
        ((min(g[1], p[1]) - max(g[0], p[0]), gi, pi)
         for gi, g in enumerate(gold) for pi, p in enumerate(predicted)
         if g[2] == p[2] and min(g[1], p[1]) > max(g[0], p[0])),
        reverse=True,
    )
    used_gold: set[int] = set()
    used_predicted: set[int] = set()
    for _size, gi, pi in pairs:
        if gi not in used_gold and pi not in used_predicted:
            used_gold.add(gi)
            used_predicted.add(pi)
    return len(used_gold)


def match_exact(gold: list[LabelledRange], predicted: list[LabelledRange]) -> int:
    remaining = list(gold)
    matched = 0
    for item in predicted:
        if item in remaining:
            remaining.remove(item)
            matched += 1
    return matched


def labelled_ranges(values: list[Value] | None) -> list[LabelledRange]:
    ranges = []
    for value in values or []:
        start, end = value.get("start"), value.get("end")
        # HyperText regions carry XPath offsets instead; they cannot be compared by character.
        if isinstance(start, int) and isinstance(end, int) and end > start:
            ranges.extend((start, end, str(label)) for label in value.get("labels") or [])
    return ranges


def _show_ranges(ranges: list[LabelledRange], text: str) -> str:
    return "; ".join(f"{text[s:e]!r} {label}" if text else f"{s}-{e} {label}" for s, e, label in sorted(ranges)) \
        or NONE_LABEL


@dataclass
class SpanReport(ControlReport):
    """Labels (NER) on text."""

    exact: Scores = field(default_factory=Scores)
    overlap: Scores = field(default_factory=Scores)
    per_label: dict[str, tuple[Scores, Scores]] = field(default_factory=dict)  # label -> (exact, overlap)

    headline_name: ClassVar[str] = "exact F1"

    def note(self) -> str:
        return "exact: same start, end and label; overlap: same label and at least one character in common, " \
               "each span matched once."

    @property
    def headline(self) -> float | None:
        return self.exact.f1

    def add(self, gold: list[Value], predicted: list[Value] | None, text: str) -> tuple[float | None, tuple[str, str]]:
        want, got = labelled_ranges(gold), labelled_ranges(predicted)
        self.tasks += 1
        self.exact.add(match_exact(want, got), len(want), len(got))
        overlaps = match_overlap(want, got)
        self.overlap.add(overlaps, len(want), len(got))
        for label in sorted({item[2] for item in want + got}):
            exact, overlap = self.per_label.setdefault(label, (Scores(), Scores()))
            want_l, got_l = [s for s in want if s[2] == label], [s for s in got if s[2] == label]
            exact.add(match_exact(want_l, got_l), len(want_l), len(got_l))
            overlap.add(match_overlap(want_l, got_l), len(want_l), len(got_l))
        agreement = 2 * overlaps / (len(want) + len(got)) if want or got else 1.0
        return agreement, (_show_ranges(want, text), _show_ranges(got, text))

    def finish(self, control: Control) -> None:
        order = {option.result_value: i for i, option in enumerate(control.options)}
        self.per_label = dict(sorted(self.per_label.items(), key=lambda item: (order.get(item[0], len(order)),
                                                                                item[0])))

    def metrics(self) -> dict[str, Any]:
        per_label = {k: {"exact": e.to_dict(), "overlap": o.to_dict()} for k, (e, o) in self.per_label.items()}
        return {"exact": self.exact.to_dict(), "overlap": self.overlap.to_dict(), "per_label": per_label}

    def summary(self) -> str:
        return (f"{self.control} ({self.kind}): {self.tasks} tasks, {self.exact.gold} annotated spans, "
                f"{self.exact.predicted} predicted")

    def facts(self) -> list[tuple[str, str]]:
        return [("exact F1", show(self.exact.f1)), ("overlap F1", show(self.overlap.f1)),
                ("annotated spans", str(self.exact.gold)), ("predicted spans", str(self.exact.predicted))]

    def tables(self) -> list[Table]:
        return [
            Table(["match", "precision", "recall", "F1", "matched"],
                  [["exact", *self.exact.cells(), str(self.exact.tp)],
                   ["overlap", *self.overlap.cells(), str(self.overlap.tp)]]),
            Table(["label", "exact P", "exact R", "exact F1", "overlap P", "overlap R", "overlap F1", "annotated",
                   "predicted"],
                  [[label, *e.cells(), *o.cells(), str(e.gold), str(e.predicted)]
                   for label, (e, o) in self.per_label.items()]),
        ]


def joined_text(values: list[Value] | None) -> str:
    texts = [str(t) for value in values or [] for t in value.get("text") or []]
    return " ".join(" ".join(texts).split())


@dataclass
class TextReport(ControlReport):
    """TextArea: tasks counts those where at least one side has text."""

    similarity_sum: float = 0.0
    exact: int = 0

    headline_name: ClassVar[str] = "similarity"

    def note(self) -> str:
        return "similarity: normalised Indel similarity of the whitespace-normalised texts (1 = identical), " \
               "over tasks where either side has text."

    @property
    def similarity(self) -> float | None:
        return self.similarity_sum / self.tasks if self.tasks else None

    @property
    def exact_rate(self) -> float | None:
        return _ratio(self.exact, self.tasks)

    @property
    def headline(self) -> float | None:
        return self.similarity

    def add(self, gold: list[Value], predicted: list[Value] | None, text: str) -> tuple[float | None, tuple[str, str]]:
        want, got = joined_text(gold), joined_text(predicted)
        if not want and not got:
            return None, ("", "")
        similarity = fuzz.ratio(want, got) / 100
        self.tasks += 1
        self.similarity_sum += similarity
        self.exact += want == got
        return similarity, (want or NONE_LABEL, got or NONE_LABEL)

    def metrics(self) -> dict[str, Any]:
        return {"similarity": self.similarity, "exact": self.exact_rate}

    def summary(self) -> str:
        return (f"{self.control} ({self.kind}): similarity {show(self.similarity)} over {self.tasks} tasks, "
                f"identical {self.exact}/{self.tasks}")

    def facts(self) -> list[tuple[str, str]]:
        return [("mean similarity", show(self.similarity)), ("identical", f"{self.exact}/{self.tasks}")]


@dataclass
class NumberReport(ControlReport):
    """Rating and Number: tasks counts those with an annotated number."""

    key: str = "number"
    correct: int = 0
    compared: int = 0  # tasks where both sides have a number
    error_sum: float = 0.0

    @property
    def accuracy(self) -> float | None:
        return _ratio(self.correct, self.tasks)

    @property
    def mean_absolute_error(self) -> float | None:
        return self.error_sum / self.compared if self.compared else None

    @property
    def headline(self) -> float | None:
        return self.accuracy

    def _number(self, values: list[Value] | None) -> float | None:
        for value in values or []:
            raw = value.get(self.key)
            if isinstance(raw, (int, float)) and not isinstance(raw, bool) and math.isfinite(raw):
                return float(raw)
        return None

    def add(self, gold: list[Value], predicted: list[Value] | None, text: str) -> tuple[float | None, tuple[str, str]]:
        want, got = self._number(gold), self._number(predicted)
        if want is None:
            return None, ("", "")  # nothing annotated: nothing to compare with
        self.tasks += 1
        self.correct += want == got
        if got is not None:
            self.compared += 1
            self.error_sum += abs(want - got)
        return float(want == got), (f"{want:g}", NONE_LABEL if got is None else f"{got:g}")

    def metrics(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "mean_absolute_error": self.mean_absolute_error}

    def summary(self) -> str:
        return (f"{self.control} ({self.kind}): accuracy {show(self.accuracy)} ({self.correct}/{self.tasks}), "
                f"mean absolute error {show(self.mean_absolute_error)}")

    def facts(self) -> list[tuple[str, str]]:
        return [("accuracy", show(self.accuracy)), ("mean absolute error", show(self.mean_absolute_error))]


@dataclass
class ExactReport(ControlReport):
    """DateTime: the predicted value must equal the annotated one; tasks counts those with an annotated value."""

    key: str = "datetime"
    correct: int = 0

    @property
    def accuracy(self) -> float | None:
        return _ratio(self.correct, self.tasks)

    @property
    def headline(self) -> float | None:
        return self.accuracy

    def _value(self, values: list[Value] | None) -> str | None:
        for value in values or []:
            raw = value.get(self.key)
            if isinstance(raw, str) and raw.strip():
                return raw.strip()
        return None

    def add(self, gold: list[Value], predicted: list[Value] | None, text: str) -> tuple[float | None, tuple[str, str]]:
        want, got = self._value(gold), self._value(predicted)
        if want is None:
            return None, ("", "")
        self.tasks += 1
        self.correct += want == got
        return float(want == got), (want, got or NONE_LABEL)

    def metrics(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy}

    def summary(self) -> str:
        return f"{self.control} ({self.kind}): accuracy {show(self.accuracy)} ({self.correct}/{self.tasks})"

    def facts(self) -> list[tuple[str, str]]:
        return [("accuracy", show(self.accuracy)), ("correct", f"{self.correct}/{self.tasks}")]


@dataclass(frozen=True)
class Shape:
    """A box or point in percent of the image, as Label Studio stores it."""

    label: str
    x: float
    y: float
    width: float = 0.0
    height: float = 0.0


def _iou(a: Shape, b: Shape) -> float:
    across = min(a.x + a.width, b.x + b.width) - max(a.x, b.x)
    down = min(a.y + a.height, b.y + b.height) - max(a.y, b.y)
    if across <= 0 or down <= 0:
        return 0.0
    inter = across * down
    return inter / (a.width * a.height + b.width * b.height - inter)


@dataclass
class ShapeReport(ControlReport):
    """RectangleLabels and KeyPointLabels: shapes matched one to one, same label, largest overlap first."""

    key: str = "rectanglelabels"
    points: bool = False
    matched: Scores = field(default_factory=Scores)

    headline_name: ClassVar[str] = "F1"
    IOU: ClassVar[float] = 0.5  # boxes: the usual detection threshold
    DISTANCE: ClassVar[float] = 5.0  # points: within 5% of the image's width and height

    def note(self) -> str:
        if self.points:
            return f"a point matches an annotated one with the same label within {self.DISTANCE:g}% of the image."
        return f"a box matches an annotated one with the same label when IoU >= {self.IOU:g}."

    @property
    def headline(self) -> float | None:
        return self.matched.f1

    def _shapes(self, values: list[Value] | None) -> list[Shape]:
        shapes = []
        for value in values or []:
            try:
                numbers = [float(value.get(name, 0.0)) for name in ("x", "y", "width", "height")]
            except (TypeError, ValueError):
                continue
            for label in value.get(self.key) or []:
                shapes.append(Shape(str(label), *numbers))
        return shapes

    def _closeness(self, a: Shape, b: Shape) -> float:
        if self.points:
            distance = math.hypot(a.x - b.x, a.y - b.y)
            return 1.0 - distance / self.DISTANCE if distance <= self.DISTANCE else 0.0
        iou = _iou(a, b)
        return iou if iou >= self.IOU else 0.0

    def add(self, gold: list[Value], predicted: list[Value] | None, text: str) -> tuple[float | None, tuple[str, str]]:
        want, got = self._shapes(gold), self._shapes(predicted)
        self.tasks += 1
        pairs = sorted(((self._closeness(g, p), gi, pi) for gi, g in enumerate(want) for pi, p in enumerate(got)
                        if g.label == p.label), reverse=True)
        used_gold: set[int] = set()
        used_predicted: set[int] = set()
        for closeness, gi, pi in pairs:
            if closeness > 0 and gi not in used_gold and pi not in used_predicted:
                used_gold.add(gi)
                used_predicted.add(pi)
        self.matched.add(len(used_gold), len(want), len(got))
        agreement = 2 * len(used_gold) / (len(want) + len(got)) if want or got else 1.0

        def listed(shapes: list[Shape]) -> str:
            return "; ".join(f"{s.label} at {s.x:.0f},{s.y:.0f}" for s in shapes) or NONE_LABEL

        return agreement, (listed(want), listed(got))

    def metrics(self) -> dict[str, Any]:
        return {"matched": self.matched.to_dict()}

    def summary(self) -> str:
        return (f"{self.control} ({self.kind}): F1 {show(self.matched.f1)}, precision {show(self.matched.precision)},"
                f" recall {show(self.matched.recall)} ({self.matched.gold} annotated, {self.matched.predicted} "
                "predicted)")

    def facts(self) -> list[tuple[str, str]]:
        return [("F1", show(self.matched.f1)), ("precision", show(self.matched.precision)),
                ("recall", show(self.matched.recall))]

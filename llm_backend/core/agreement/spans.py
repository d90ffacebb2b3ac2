"""Labels (NER): entity spans, exact and overlapping."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..config_types import Control
from .base import NONE_LABEL, ControlReport, Scores, Table, Value, show

LabelledRange = tuple[int, int, str]  # (start, end, label) of an entity


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


def labelled_ranges(values: list[Value] | None, key: str = "labels") -> list[LabelledRange]:
    """(start, end, label) of each span; `key` is where its labels sit ("labels", "hypertextlabels").
    HyperText regions place spans by XPath; their character offsets are in "globalOffsets"."""
    ranges = []
    for value in values or []:
        offsets = value.get("globalOffsets") if isinstance(value.get("globalOffsets"), dict) else value
        start, end = offsets.get("start"), offsets.get("end")
        if isinstance(start, int) and isinstance(end, int) and end > start:
            ranges.extend((start, end, str(label)) for label in value.get(key) or [])
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
    key: str = "labels"  # the value key that holds a span's labels

    headline_name: ClassVar[str] = "exact F1"

    def note(self) -> str:
        return "exact: same start, end and label; overlap: same label and at least one character in common, " \
               "each span matched once."

    @property
    def headline(self) -> float | None:
        return self.exact.f1

    @property
    def parts(self) -> tuple[float, float]:
        return self.exact.f1_parts

    def add(self, gold: list[Value], predicted: list[Value] | None, text: str) -> tuple[float | None, tuple[str, str]]:
        want, got = labelled_ranges(gold, self.key), labelled_ranges(predicted, self.key)
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



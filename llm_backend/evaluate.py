"""Compare predictions with human annotations, control by control. Pure: no model, no I/O.

    evaluate(config, tasks_with_annotations, predictions_by_task) -> EvalReport

Choices and Taxonomy: accuracy (the predicted set equals the annotated one), per-class
precision/recall/F1 and, for single-choice controls, a confusion matrix. Labels (NER): span
precision/recall/F1, exact (same start, end and label) and overlap (same label, overlapping
characters, each span matched at most once). TextArea: mean string similarity. Rating and
Number: exact accuracy and mean absolute error. A task whose prediction failed counts as a
prediction with no regions: an evaluation must not look better because the model errored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from rapidfuzz import fuzz

from .label_config import Control, ControlKind, LabelConfig
from .schema import TAXONOMY_SEPARATOR

NONE_LABEL = "(none)"
Region = dict[str, Any]
Span = tuple[int, int, str]


def task_key(task: Mapping[str, Any], index: int) -> str:
    """How tasks and predictions are matched: the task id, or the position when there is none."""
    return str(task["id"]) if task.get("id") is not None else f"#{index + 1}"


def gold_result(task: Mapping[str, Any]) -> list[Region] | None:
    """The newest annotation that was not skipped: a reviewer's later fix wins over the first try."""
    annotations = [
        a for a in task.get("annotations") or []
        if isinstance(a, dict) and not a.get("was_cancelled") and isinstance(a.get("result"), list)
    ]
    if not annotations:
        return None
    newest = max(enumerate(annotations), key=lambda pair: (str(pair[1].get("updated_at") or ""), pair[0]))[1]
    return [region for region in newest["result"] if isinstance(region, dict)]


def _regions(result: Sequence[Region] | None, control: Control) -> list[dict[str, Any]]:
    return [r.get("value") or {} for r in result or [] if r.get("from_name") == control.name]


def _label_set(result: Sequence[Region] | None, control: Control) -> frozenset[str]:
    values: set[str] = set()
    for value in _regions(result, control):
        if control.kind is ControlKind.TAXONOMY:
            values.update(TAXONOMY_SEPARATOR.join(map(str, path)) for path in value.get("taxonomy") or [])
        else:
            values.update(map(str, value.get("choices") or []))
    return frozenset(values)


def _spans(result: Sequence[Region] | None, control: Control) -> list[Span]:
    spans = []
    for value in _regions(result, control):
        start, end = value.get("start"), value.get("end")
        # HyperText regions carry XPath offsets instead; they cannot be compared by character.
        if isinstance(start, int) and isinstance(end, int) and end > start:
            spans.extend((start, end, str(label)) for label in value.get("labels") or [])
    return spans


def _text(result: Sequence[Region] | None, control: Control) -> str:
    texts = [str(t) for value in _regions(result, control) for t in value.get("text") or []]
    return " ".join(" ".join(texts).split())


def _number(result: Sequence[Region] | None, control: Control) -> float | None:
    key = "rating" if control.kind is ControlKind.RATING else "number"
    for value in _regions(result, control):
        raw = value.get(key)
        if isinstance(raw, (int, float)) and not isinstance(raw, bool) and math.isfinite(raw):
            return float(raw)
    return None


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


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

    def to_dict(self) -> dict[str, Any]:
        return {"tp": self.tp, "predicted": self.predicted, "gold": self.gold,
                "precision": self.precision, "recall": self.recall, "f1": self.f1}


@dataclass
class ChoicesReport:
    control: str
    kind: str
    multiple: bool
    tasks: int = 0
    correct: int = 0
    classes: dict[str, Scores] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)  # confusion-matrix axis, gold rows x predicted columns
    matrix: list[list[int]] | None = None

    @property
    def accuracy(self) -> float | None:
        return _ratio(self.correct, self.tasks)

    @property
    def macro_f1(self) -> float | None:
        values = [s.f1 for s in self.classes.values() if s.f1 is not None]
        return sum(values) / len(values) if values else None

    headline_name = "accuracy"

    @property
    def headline(self) -> float | None:
        return self.accuracy


@dataclass
class LabelsReport:
    control: str
    kind: str = "labels"
    tasks: int = 0
    exact: Scores = field(default_factory=Scores)
    overlap: Scores = field(default_factory=Scores)
    per_label: dict[str, tuple[Scores, Scores]] = field(default_factory=dict)  # label -> (exact, overlap)

    headline_name = "exact F1"

    @property
    def headline(self) -> float | None:
        return self.exact.f1


@dataclass
class TextReport:
    control: str
    kind: str = "textarea"
    tasks: int = 0  # tasks where at least one side has text
    similarity_sum: float = 0.0
    exact: int = 0

    @property
    def similarity(self) -> float | None:
        return self.similarity_sum / self.tasks if self.tasks else None

    @property
    def exact_rate(self) -> float | None:
        return _ratio(self.exact, self.tasks)

    headline_name = "similarity"

    @property
    def headline(self) -> float | None:
        return self.similarity


@dataclass
class NumberReport:
    control: str
    kind: str
    tasks: int = 0
    correct: int = 0
    compared: int = 0  # tasks where both sides have a number
    error_sum: float = 0.0

    @property
    def accuracy(self) -> float | None:
        return _ratio(self.correct, self.tasks)

    @property
    def mean_absolute_error(self) -> float | None:
        return self.error_sum / self.compared if self.compared else None

    headline_name = "accuracy"

    @property
    def headline(self) -> float | None:
        return self.accuracy


ControlReport = ChoicesReport | LabelsReport | TextReport | NumberReport


@dataclass
class Disagreement:
    task: str
    agreement: float  # 0 = nothing right, 1 = identical
    text: str
    controls: dict[str, tuple[str, str]]  # control -> (annotated, predicted), only where they differ


@dataclass
class Usage:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None


@dataclass
class EvalReport:
    tasks: int  # tasks with an annotation, i.e. evaluated
    skipped: int  # tasks without a usable annotation
    failed: int  # evaluated tasks whose prediction failed or is missing
    controls: list[ControlReport]
    worst: list[Disagreement]
    usage: Usage | None = None
    model_version: str | None = None
    cascade: list[dict[str, Any]] = field(default_factory=list)  # per cascade step (see cascade_report.py)

    def below(self, threshold: float) -> list[tuple[str, str, float]]:
        """(control, metric, value) for every control whose headline metric is under `threshold`.

        A control with nothing to measure (no text, no spans, no number on either side) has no
        headline and is not held against the threshold.
        """
        found = []
        for control in self.controls:
            value = control.headline
            if value is not None and value < threshold:
                found.append((control.control, control.headline_name, value))
        return found

    def to_dict(self) -> dict[str, Any]:
        controls = []
        for report in self.controls:
            item: dict[str, Any] = {"control": report.control, "kind": report.kind,
                                    "headline": {report.headline_name: report.headline}}
            if isinstance(report, ChoicesReport):
                item.update(tasks=report.tasks, accuracy=report.accuracy, macro_f1=report.macro_f1,
                            classes={k: v.to_dict() for k, v in report.classes.items()},
                            labels=report.labels, matrix=report.matrix)
            elif isinstance(report, LabelsReport):
                item.update(tasks=report.tasks, exact=report.exact.to_dict(), overlap=report.overlap.to_dict(),
                            per_label={k: {"exact": e.to_dict(), "overlap": o.to_dict()}
                                       for k, (e, o) in report.per_label.items()})
            elif isinstance(report, TextReport):
                item.update(tasks=report.tasks, similarity=report.similarity, exact=report.exact_rate)
            else:
                item.update(tasks=report.tasks, accuracy=report.accuracy,
                            mean_absolute_error=report.mean_absolute_error)
            controls.append(item)
        return {
            "tasks": self.tasks, "skipped": self.skipped, "failed": self.failed, "model_version": self.model_version,
            "usage": asdict(self.usage) if self.usage else None, "controls": controls,
            "worst": [asdict(d) for d in self.worst], "cascade": self.cascade,
        }


def match_overlap(gold: list[Span], predicted: list[Span]) -> int:
    """One-to-one matches of same-label overlapping spans, largest overlaps first."""
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


def _exact_matches(gold: list[Span], predicted: list[Span]) -> int:
    remaining = list(gold)
    matched = 0
    for span in predicted:
        if span in remaining:
            remaining.remove(span)
            matched += 1
    return matched


def _add_spans(scores: Scores, gold: list[Span], predicted: list[Span], matched: int) -> None:
    scores.tp += matched
    scores.gold += len(gold)
    scores.predicted += len(predicted)


def _show_set(values: frozenset[str]) -> str:
    return ", ".join(sorted(values)) or NONE_LABEL


def _show_spans(spans: list[Span], text: str) -> str:
    return "; ".join(f"{text[s:e]!r} {label}" if text else f"{s}-{e} {label}" for s, e, label in sorted(spans)) \
        or NONE_LABEL


class _Evaluator:
    """Accumulates one report per control over the tasks, plus each task's agreement."""

    def __init__(self, config: LabelConfig) -> None:
        self.config = config
        self.reports: dict[str, ControlReport] = {}
        self.pairs: dict[str, list[tuple[str, str]]] = {}  # single-choice control -> (gold, predicted)
        for control in config.controls:
            if control.kind in (ControlKind.CHOICES, ControlKind.TAXONOMY):
                multiple = control.multiple or control.kind is ControlKind.TAXONOMY
                self.reports[control.name] = ChoicesReport(control.name, control.kind.value, multiple)
                self.pairs[control.name] = []
            elif control.kind is ControlKind.LABELS:
                self.reports[control.name] = LabelsReport(control.name)
            elif control.kind is ControlKind.TEXTAREA:
                self.reports[control.name] = TextReport(control.name)
            else:
                self.reports[control.name] = NumberReport(control.name, control.kind.value)

    def add(self, task: Mapping[str, Any], gold: list[Region], predicted: list[Region] | None
            ) -> tuple[float, dict[str, tuple[str, str]]]:
        """Count one task; its agreement (mean over controls) and what differed."""
        agreements: list[float] = []
        differences: dict[str, tuple[str, str]] = {}
        for control in self.config.controls:
            report = self.reports[control.name]
            if isinstance(report, ChoicesReport):
                agreement, shown = self._choices(report, control, gold, predicted)
            elif isinstance(report, LabelsReport):
                agreement, shown = self._labels(report, control, task, gold, predicted)
            elif isinstance(report, TextReport):
                agreement, shown = self._textarea(report, control, gold, predicted)
            else:
                agreement, shown = self._numbers(report, control, gold, predicted)
            if agreement is None:
                continue
            agreements.append(agreement)
            if agreement < 1.0:
                differences[control.name] = shown
        return (sum(agreements) / len(agreements) if agreements else 1.0), differences

    def _choices(self, report: ChoicesReport, control: Control, gold: list[Region], predicted: list[Region] | None
                 ) -> tuple[float, tuple[str, str]]:
        want, got = _label_set(gold, control), _label_set(predicted, control)
        report.tasks += 1
        report.correct += want == got
        for label in want | got:
            scores = report.classes.setdefault(label, Scores())
            scores.tp += label in want and label in got
            scores.gold += label in want
            scores.predicted += label in got
        if not report.multiple:
            self.pairs[control.name].append((_show_set(want), _show_set(got)))
        union = want | got
        return (len(want & got) / len(union) if union else 1.0), (_show_set(want), _show_set(got))

    def _labels(self, report: LabelsReport, control: Control, task: Mapping[str, Any], gold: list[Region],
                predicted: list[Region] | None) -> tuple[float, tuple[str, str]]:
        want, got = _spans(gold, control), _spans(predicted, control)
        report.tasks += 1
        _add_spans(report.exact, want, got, _exact_matches(want, got))
        overlaps = match_overlap(want, got)
        _add_spans(report.overlap, want, got, overlaps)
        for label in sorted({span[2] for span in want + got}):
            exact, overlap = report.per_label.setdefault(label, (Scores(), Scores()))
            want_l, got_l = [s for s in want if s[2] == label], [s for s in got if s[2] == label]
            _add_spans(exact, want_l, got_l, _exact_matches(want_l, got_l))
            _add_spans(overlap, want_l, got_l, match_overlap(want_l, got_l))
        text = _object_text(self.config, control, task)
        agreement = 2 * overlaps / (len(want) + len(got)) if want or got else 1.0
        return agreement, (_show_spans(want, text), _show_spans(got, text))

    def _textarea(self, report: TextReport, control: Control, gold: list[Region], predicted: list[Region] | None
                  ) -> tuple[float | None, tuple[str, str]]:
        want, got = _text(gold, control), _text(predicted, control)
        if not want and not got:
            return None, ("", "")
        similarity = fuzz.ratio(want, got) / 100
        report.tasks += 1
        report.similarity_sum += similarity
        report.exact += want == got
        return similarity, (want or NONE_LABEL, got or NONE_LABEL)

    def _numbers(self, report: NumberReport, control: Control, gold: list[Region], predicted: list[Region] | None
                 ) -> tuple[float | None, tuple[str, str]]:
        want, got = _number(gold, control), _number(predicted, control)
        if want is None:
            return None, ("", "")  # nothing annotated: nothing to compare with
        report.tasks += 1
        report.correct += want == got
        if got is not None:
            report.compared += 1
            report.error_sum += abs(want - got)
        return float(want == got), (f"{want:g}", NONE_LABEL if got is None else f"{got:g}")

    def finish(self) -> list[ControlReport]:
        for report in self.reports.values():
            if isinstance(report, LabelsReport):
                control = self.config.control(report.control)
                order = {option.result_value: i for i, option in enumerate(control.options if control else ())}
                report.per_label = dict(sorted(report.per_label.items(), key=lambda item: (
                    order.get(item[0], len(order)), item[0])))
        for name, pairs in self.pairs.items():
            report = self.reports[name]
            if not isinstance(report, ChoicesReport) or report.multiple:
                continue
            control = self.config.control(name)
            axis = [option.result_value for option in control.options] if control else []
            axis += sorted({value for pair in pairs for value in pair if value not in axis and value != NONE_LABEL})
            if any(NONE_LABEL in pair for pair in pairs):
                axis.append(NONE_LABEL)
            position = {label: i for i, label in enumerate(axis)}
            matrix = [[0] * len(axis) for _ in axis]
            for want, got in pairs:
                matrix[position[want]][position[got]] += 1
            report.labels, report.matrix = axis, matrix
            # Classes in config order (then any unknown ones), for stable tables.
            report.classes = {label: report.classes[label] for label in axis if label in report.classes}
        return list(self.reports.values())


def _object_text(config: LabelConfig, control: Control, task: Mapping[str, Any]) -> str:
    key = config.object_for(control).data_key
    data = task.get("data") or {}
    value = data.get(key) if key else None
    return value if isinstance(value, str) else ""


def _snippet(config: LabelConfig, task: Mapping[str, Any], limit: int = 160) -> str:
    texts = [_object_text(config, control, task) for control in config.controls]
    text = " ".join(next((t for t in texts if t), "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def evaluate(
    config: LabelConfig,
    tasks_with_annotations: Sequence[Mapping[str, Any]],
    predictions_by_task: Mapping[str, list[Region] | None],
    *,
    usage: Usage | None = None,
    model_version: str | None = None,
    worst: int = 10,
) -> EvalReport:
    """Score `predictions_by_task` (task_key -> result regions, None when the prediction failed)
    against each task's newest non-cancelled annotation. Tasks without one are skipped."""
    evaluator = _Evaluator(config)
    evaluated = skipped = failed = 0
    disagreements: list[tuple[float, int, Disagreement]] = []
    for index, task in enumerate(tasks_with_annotations):
        gold = gold_result(task)
        if gold is None:
            skipped += 1
            continue
        key = task_key(task, index)
        predicted = predictions_by_task.get(key)
        evaluated += 1
        failed += predicted is None
        agreement, differences = evaluator.add(task, gold, predicted)
        if agreement < 1.0:
            disagreement = Disagreement(key, round(agreement, 4), _snippet(config, task), differences)
            disagreements.append((agreement, index, disagreement))
    disagreements.sort(key=lambda item: (item[0], item[1]))
    return EvalReport(
        tasks=evaluated,
        skipped=skipped,
        failed=failed,
        controls=evaluator.finish(),
        worst=[item[2] for item in disagreements[:worst]],
        usage=usage,
        model_version=model_version,
    )

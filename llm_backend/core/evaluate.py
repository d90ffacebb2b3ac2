"""Compare predictions with human annotations, control by control. Pure: no model, no I/O.

    evaluate(config, tasks_with_annotations, predictions_by_task) -> EvalReport

The one evaluator: `llm-backend eval`, the cascade report and the "Train" button all score with
it, so the same metric has the same name everywhere. Each control is measured by the report its
spec chooses (see core/agreement/ for what each one counts). A task whose prediction failed counts
as a prediction with no regions: an evaluation must not look better because the model errored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .agreement import ControlReport
from .calibration import ece, reliability
from .config import Control, LabelConfig
from .controls import spec_for
from .usage import Usage

Region = dict[str, Any]


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


def control_values(result: Sequence[Region] | None, control: Control) -> list[dict[str, Any]]:
    """The `value` objects of this control's regions."""
    return [r.get("value") or {} for r in result or [] if r.get("from_name") == control.name]


@dataclass
class Disagreement:
    task: str
    agreement: float  # 0 = nothing right, 1 = identical
    text: str
    controls: dict[str, tuple[str, str]]  # control -> (annotated, predicted), only where they differ


@dataclass(frozen=True)
class TaskScore:
    """One task's share of a control's headline (see ControlReport.parts) and both sides as shown."""

    num: float
    den: float
    annotated: str
    predicted: str


@dataclass
class EvalReport:
    tasks: int  # tasks with an annotation, i.e. evaluated
    skipped: int  # tasks without a usable annotation
    failed: int  # evaluated tasks whose prediction failed or is missing
    controls: list[ControlReport]
    worst: list[Disagreement]
    usage: Usage | None = None
    model_version: str | None = None
    cascade: list[dict[str, Any]] = field(default_factory=list)  # per cascade step (see offline/cascade_report.py)
    per_task: dict[str, dict[str, TaskScore]] = field(default_factory=dict, repr=False)  # control -> task key -> score
    # control -> {"n", "ece", "bins"}: how far the predictions' scores (as served: calibrated or raw) mean what
    # they say on these tasks (a control's score: its lowest region score; right: complete agreement)
    confidence: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def accuracy(self) -> float | None:
        """The mean of the controls' headline metrics: one number to compare runs by."""
        values = [control.headline for control in self.controls if control.headline is not None]
        return round(sum(values) / len(values), 4) if values else None

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
        return {
            "tasks": self.tasks, "skipped": self.skipped, "failed": self.failed, "model_version": self.model_version,
            "accuracy": self.accuracy, "usage": self.usage.to_dict() if self.usage else None,
            "controls": [report.to_dict() for report in self.controls],
            "worst": [asdict(d) for d in self.worst], "cascade": self.cascade, "confidence": self.confidence,
        }


def object_text(config: LabelConfig, control: Control, task: Mapping[str, Any]) -> str:
    key = config.object_for(control).data_key
    data = task.get("data") or {}
    value = data.get(key) if key else None
    return value if isinstance(value, str) else ""


def _snippet(config: LabelConfig, task: Mapping[str, Any], limit: int = 160) -> str:
    texts = [object_text(config, control, task) for control in config.controls]
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
    accept_threshold: float | None = None,
) -> EvalReport:
    """Score `predictions_by_task` (task_key -> result regions, None when the prediction failed)
    against each task's newest non-cancelled annotation. Tasks without one are skipped. With
    `accept_threshold` (the score `accept` certified), each control's reliability also says how many
    scored tasks reach it (coverage) and how many of those the prediction got right."""
    reports = {control.name: spec_for(control.kind).report(control) for control in config.controls}
    per_task: dict[str, dict[str, TaskScore]] = {control.name: {} for control in config.controls}
    scored: dict[str, list[tuple[float, bool]]] = {control.name: [] for control in config.controls}
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
        agreements: list[float] = []
        differences: dict[str, tuple[str, str]] = {}
        for control in config.controls:
            report = reports[control.name]
            before = report.parts
            agreement, shown = report.add(
                control_values(gold, control), None if predicted is None else control_values(predicted, control),
                object_text(config, control, task))
            after = report.parts
            per_task[control.name][key] = TaskScore(after[0] - before[0], after[1] - before[1], *shown)
            score = _control_score(predicted, control)
            if score is not None:
                scored[control.name].append((score, agreement is None or agreement >= 1.0 - 1e-9))
            if agreement is None:
                continue
            agreements.append(agreement)
            if agreement < 1.0:
                differences[control.name] = shown
        agreement = sum(agreements) / len(agreements) if agreements else 1.0
        if agreement < 1.0:
            disagreements.append((agreement, index, Disagreement(key, round(agreement, 4), _snippet(config, task),
                                                                 differences)))
    for control in config.controls:
        reports[control.name].finish(control)
    disagreements.sort(key=lambda item: (item[0], item[1]))
    return EvalReport(
        tasks=evaluated,
        skipped=skipped,
        failed=failed,
        controls=list(reports.values()),
        worst=[item[2] for item in disagreements[:worst]],
        usage=usage,
        model_version=model_version,
        per_task=per_task,
        confidence={name: _reliability(pairs, accept_threshold) for name, pairs in scored.items() if pairs},
    )


def _control_score(predicted: Sequence[Region] | None, control: Control) -> float | None:
    values = [r["score"] for r in predicted or [] if r.get("from_name") == control.name
              and isinstance(r.get("score"), (int, float)) and not isinstance(r.get("score"), bool)]
    return float(min(values)) if values else None


def _reliability(pairs: list[tuple[float, bool]], threshold: float | None = None) -> dict[str, Any]:
    scores, right = [p for p, _ in pairs], [r for _, r in pairs]
    found: dict[str, Any] = {"n": len(pairs), "ece": round(ece(scores, right), 4),
                             "bins": [asdict(b) for b in reliability(scores, scores, right)]}
    if threshold is not None:
        above = [ok for score, ok in pairs if score >= threshold]
        found["threshold"] = threshold
        found["coverage"] = round(len(above) / len(pairs), 4)
        # Observed on these annotated tasks only: the certified bound is `accept`'s, not this figure.
        found["precision_above"] = round(sum(above) / len(above), 4) if above else None
    return found

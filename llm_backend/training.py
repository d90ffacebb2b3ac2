"""What the "Train" button reports: the prompts scored on the project's annotated examples, once with
few-shot examples (each task never sees itself) and once without, so a user sees whether learning helps."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from rapidfuzz import fuzz

from .examples import result_to_answer
from .label_config import ControlKind, LabelConfig
from .predictor import PredictionJob

if TYPE_CHECKING:
    from .app import Backend


def control_score(kind: ControlKind, gold: Any, predicted: Any) -> float:
    """1.0 for full agreement, 0.0 for none; NER is the F1 of (text, label) pairs, TextArea a similarity."""
    if kind is ControlKind.LABELS:
        gold_pairs = Counter((e["text"], e["label"]) for e in gold or [])
        predicted_pairs = Counter((e["text"], e["label"]) for e in predicted or [])
        if not gold_pairs and not predicted_pairs:
            return 1.0
        overlap = sum((gold_pairs & predicted_pairs).values())
        return 2 * overlap / (sum(gold_pairs.values()) + sum(predicted_pairs.values()))
    if kind is ControlKind.TEXTAREA:
        return fuzz.ratio(" ".join(gold or []), " ".join(predicted or [])) / 100
    if isinstance(gold, list) and isinstance(predicted, list):
        return float(sorted(map(str, gold)) == sorted(map(str, predicted)))
    return float(gold == predicted)


def _score(config: LabelConfig, golds: list[dict[str, Any]], outcomes: list[Any]) -> dict[str, Any]:
    per_control: dict[str, list[float]] = {control.name: [] for control in config.controls}
    failed = 0
    for gold, outcome in zip(golds, outcomes, strict=True):
        predicted = result_to_answer(config, outcome.regions) if outcome.regions is not None else None
        if predicted is None:
            failed += 1
        for control in config.controls:
            value = predicted.get(control.name) if predicted else None
            per_control[control.name].append(control_score(control.kind, gold.get(control.name), value)
                                             if predicted else 0.0)
    scores = [value for values in per_control.values() for value in values]
    return {
        "accuracy": round(sum(scores) / len(scores), 4) if scores else None,
        "per_control": {name: round(sum(v) / len(v), 4) if v else None for name, v in per_control.items()},
        "failed": failed,
        "calls": sum(o.calls for o in outcomes),
        "cost": sum(o.cost or 0 for o in outcomes),
    }


def evaluate_snapshot(backend: Backend, config: LabelConfig, project: str) -> dict[str, Any]:
    snapshot = backend.examples.latest(project)
    if snapshot is None or not snapshot.examples:
        return {"summary": "no annotated examples yet", "examples": 0}
    examples = [e for e in snapshot.examples if e.data is not None]
    golds = [e.answer for e in examples]
    report: dict[str, Any] = {"snapshot": snapshot.id, "examples": len(examples)}
    for name, fewshot in (("with_examples", True), ("without_examples", False)):
        jobs = [PredictionJob(config, project, {"id": e.task_id, "data": e.data}, fewshot=fewshot) for e in examples]
        outcomes, _summary = backend.runner.run(jobs, deadline=3600)
        report[name] = _score(config, golds, outcomes)
    with_, without = report["with_examples"]["accuracy"], report["without_examples"]["accuracy"]
    report["summary"] = f"accuracy {with_} with few-shot examples vs {without} without (n={len(examples)})"
    return report

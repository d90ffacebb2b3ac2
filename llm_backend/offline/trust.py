"""`calibrate` and `accept` on a Label Studio project: read its tasks, fit or certify, store, apply.

Both read every task with its annotations and predictions (`GET /api/tasks?fields=all`, page by
page). A task's *human* annotation is its newest non-cancelled one that did not come from a
prediction (`parent_prediction` unset): annotations made from predictions (`accept --apply`, or an
annotator submitting a prediction unchanged through Label Studio) are the model's own output and
never count as evidence. A prediction counts when it has the project's current model_version.

A prediction is right for a control when the control's agreement with the human annotation is
complete (the one evaluator, core/evaluate.py; nothing to compare on either side counts as right),
and right as a task when every control is. A control's raw score is its lowest region score as
predicted (`raw_score` where the served score was calibrated).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..core.acceptance import Certificate, Evidence, certify
from ..core.calibration import Calibration, NotEnoughData, Observation, calibrate_control
from ..core.config import LabelConfig
from ..core.controls import spec_for
from ..core.evaluate import control_values, object_text
from ..engine.projects import ProjectStore, update
from ..errors import LLMBackendError
from ..label_studio import LabelStudioAPIError, LabelStudioClient

Region = dict[str, Any]
PAGE = 100


class TrustError(LLMBackendError):
    """A project cannot be calibrated or accepted from (too little evidence, nothing predicted...)."""

    status = 400
    code = "trust_error"


@dataclass(frozen=True)
class ProjectTask:
    id: int
    data: dict[str, Any]
    human: list[Region] | None  # the newest human annotation's result
    annotated: bool  # any annotation at all (human, from a prediction, or skipped)
    prediction: Region | None  # the newest prediction of the model_version


def project_tasks(client: LabelStudioClient, project: int | str, model_version: str) -> Iterator[ProjectTask]:
    """Every task of the project with what calibrate and accept need of it."""
    page = 1
    while True:
        response = client.request("GET", "/api/tasks", params={"project": project, "fields": "all", "page": page,
                                                              "page_size": PAGE})
        if response.status_code == 404 and page > 1:
            return  # past the last page
        if response.status_code >= 400:
            raise LabelStudioAPIError(f"Label Studio answered HTTP {response.status_code} to GET /api/tasks: "
                                      f"{response.text[:300]}", http_status=response.status_code)
        body = response.json()
        tasks = body.get("tasks", []) if isinstance(body, dict) else body
        for task in tasks:
            yield _task(task, model_version)
        if len(tasks) < PAGE:
            return
        page += 1


def _newest(items: list[Region]) -> Region | None:
    return max(items, key=lambda item: (str(item.get("updated_at") or item.get("created_at") or ""),
                                        int(item.get("id") or 0)), default=None)


def _task(task: dict[str, Any], model_version: str) -> ProjectTask:
    annotations = [a for a in task.get("annotations") or [] if isinstance(a, dict)]
    human = _newest([a for a in annotations if not a.get("was_cancelled") and a.get("parent_prediction") is None
                     and isinstance(a.get("result"), list)])
    predictions = [p for p in task.get("predictions") or [] if isinstance(p, dict)
                   and p.get("model_version") == model_version and isinstance(p.get("result"), list)]
    annotated = bool(annotations) or bool(task.get("total_annotations")) or bool(task.get("cancelled_annotations"))
    return ProjectTask(int(task["id"]), task.get("data") or {}, human["result"] if human else None, annotated,
                       _newest(predictions))


def raw_scores(config: LabelConfig, result: list[Region]) -> dict[str, float]:
    """Each control's lowest raw region score in a prediction (controls without a score are absent)."""
    scores: dict[str, float] = {}
    for region in result:
        name = region.get("from_name")
        raw = region.get("raw_score", region.get("score"))
        if isinstance(name, str) and isinstance(raw, (int, float)) and not isinstance(raw, bool):
            scores[name] = min(scores.get(name, 1.0), float(raw))
    return {control.name: scores[control.name] for control in config.controls if control.name in scores}


def control_correct(config: LabelConfig, task: ProjectTask) -> dict[str, bool]:
    """Whether the prediction agrees completely with the human annotation, control by control."""
    assert task.human is not None and task.prediction is not None
    right = {}
    for control in config.controls:
        report = spec_for(control.kind).report(control)
        agreement, _shown = report.add(control_values(task.human, control),
                                       control_values(task.prediction["result"], control),
                                       object_text(config, control, {"data": task.data}))
        right[control.name] = agreement is None or agreement >= 1.0 - 1e-9
    return right


def calibrate_project(config: LabelConfig, tasks: list[ProjectTask], model_version: str, signal: str,
                      salt: str) -> Calibration:
    """One map per control that has enough annotated, scored tasks; TrustError when none has."""
    observations: dict[str, list[Observation]] = {control.name: [] for control in config.controls}
    for task in tasks:
        if task.human is None or task.prediction is None:
            continue
        scores = raw_scores(config, task.prediction["result"])
        right = control_correct(config, task)
        for name, score in scores.items():
            observations[name].append(Observation(str(task.id), score, right[name]))
    controls, skipped = {}, {}
    for name, items in observations.items():
        try:
            controls[name] = calibrate_control(name, items, salt=salt)
        except NotEnoughData as exc:
            skipped[name] = str(exc)
    if not controls:
        annotated = sum(t.human is not None for t in tasks)
        predicted = sum(t.human is not None and t.prediction is not None for t in tasks)
        raise TrustError(f"nothing to calibrate: {annotated} tasks have a human annotation, {predicted} of them a "
                         f"prediction of model_version {model_version}; " + "; ".join(skipped.values()))
    from ..core.calibration import held_out

    fitted = sorted({o.task_id for items in observations.values() for o in items if not held_out(o.task_id, salt)})
    return Calibration(model_version, signal, controls, tuple(fitted), time.time(), skipped)


@dataclass
class Acceptance:
    certificate: Certificate
    task_ids: list[int]  # the unannotated tasks accepted
    candidates: int  # unannotated tasks with a scored prediction of the model_version
    unscored: int  # predictions of the model_version without a score for every control: never accepted
    calibrated: bool
    created: int | None = None  # annotations `--apply` created
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        certificate = self.certificate
        return {"threshold": certificate.threshold, "precision_lower_bound": certificate.lower_bound,
                "accepted": len(self.task_ids), "task_ids": self.task_ids, "precision": certificate.precision,
                "confidence": certificate.confidence, "evidence": certificate.evidence,
                "candidates": self.candidates, "unscored": self.unscored, "calibrated": self.calibrated,
                "more_annotations_needed": certificate.more_needed, "created": self.created}


def task_score(config: LabelConfig, prediction: Region, calibration: Calibration | None) -> float | None:
    """The lowest control score (calibrated where a map exists); None unless every control has one."""
    scores = raw_scores(config, prediction["result"])
    if len(scores) < len(config.controls):
        return None
    values = []
    for name, raw in scores.items():
        calibrated = calibration.score(name, raw) if calibration is not None else None
        values.append(raw if calibrated is None else calibrated)
    return min(values)


def accept_project(config: LabelConfig, tasks: list[ProjectTask], calibration: Calibration | None,
                   precision: float, confidence: float) -> Acceptance:
    """Certify on the annotated tasks the calibration was not fitted on; accept the unannotated above it."""
    fitted = set(calibration.fit_tasks) if calibration is not None else set()
    evidence, candidates, unscored = [], [], 0
    for task in tasks:
        if task.prediction is None:
            continue
        score = task_score(config, task.prediction, calibration)
        if score is None:
            unscored += 1
            continue
        if task.human is not None and str(task.id) not in fitted:
            evidence.append(Evidence(str(task.id), score, all(control_correct(config, task).values())))
        elif not task.annotated:
            candidates.append((task.id, score))
    certificate = certify(evidence, precision, confidence)
    chosen = sorted(task_id for task_id, score in candidates
                    if certificate.threshold is not None and score >= certificate.threshold)
    return Acceptance(certificate, chosen, len(candidates), unscored, calibration is not None)


def apply_acceptance(client: LabelStudioClient, project: int | str, model_version: str, task_ids: list[int],
                     chunk: int = 500) -> int:
    """Label Studio's own "Create Annotations From Predictions" on exactly these tasks; the annotations it created.
    It skips predictions that already have an annotation made from them, so a second run creates none."""
    created = 0
    for start in range(0, len(task_ids), chunk):
        body = {"selectedItems": {"all": False, "included": task_ids[start:start + chunk]},
                "model_version": model_version}
        # Label Studio creates the annotations, sends their webhook and recounts the project inside the request.
        answer = client.json("POST", f"/api/dm/actions?id=predictions_to_annotations&project={project}", json=body,
                             timeout=600)
        detail = str((answer or {}).get("detail", ""))
        words = detail.split()
        created += int(words[1]) if len(words) > 1 and words[0] == "Created" and words[1].isdigit() else 0
    return created


def store_calibration(store: ProjectStore, project: str, calibration: Calibration) -> None:
    update(store, project, calibration=calibration.to_dict())


def store_acceptance(store: ProjectStore, project: str, acceptance: Acceptance) -> None:
    """The last certificate beside the calibration, for the status page (coverage at the threshold)."""
    state = store.get(project)
    if state is None or not state.calibration:
        return
    summary = {key: value for key, value in acceptance.to_dict().items() if key != "task_ids"}
    update(store, project, calibration={**state.calibration, "accept": {**summary, "at": time.time()}})


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=1)

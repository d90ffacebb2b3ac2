"""What the "Train" button reports: the prompts scored on the project's annotated examples, once with
few-shot examples (each task never sees itself) and once without, so a user sees whether learning
helps. Scored by the same evaluator as `llm-backend eval`, against the annotations' own regions."""

from __future__ import annotations

import logging
from typing import Any

from ..core.config import LabelConfig, parse_label_config
from ..core.evaluate import EvalReport, evaluate
from .examples import Example, ExampleStore
from .predictor import PredictionJob
from .projects import ProjectStore, update
from .task_runner import TaskRunner

log = logging.getLogger(__name__)


def _annotated_task(example: Example) -> dict[str, Any]:
    return {"id": example.task_id, "data": example.data, "annotations": [{"result": example.result}]}


def evaluate_examples(runner: TaskRunner, config: LabelConfig, project: str, examples: list[Example], *,
                      fewshot: bool, deadline: float = 3600) -> EvalReport:
    """Predict each example's task and score it against the example's annotation."""
    tasks = [_annotated_task(example) for example in examples]
    jobs = [PredictionJob(config, project, {"id": e.task_id, "data": e.data}, fewshot=fewshot) for e in examples]
    outcomes, summary = runner.run(jobs, deadline=deadline)
    predictions = {str(example.task_id): outcome.regions for example, outcome in zip(examples, outcomes, strict=True)}
    return evaluate(config, tasks, predictions, usage=summary.usage)


class Trainer:
    """Runs the Train evaluation for a project and keeps its report in the project store."""

    def __init__(self, runner: TaskRunner, examples: ExampleStore, projects: ProjectStore) -> None:
        self.runner = runner
        self.examples = examples
        self.projects = projects

    def report(self, config: LabelConfig, project: str) -> dict[str, Any]:
        snapshot = self.examples.latest(project)
        if snapshot is None or not snapshot.examples:
            return {"summary": "no annotated examples yet", "examples": 0}
        # Examples stored before annotations' regions were kept cannot be scored: say how many.
        usable = [e for e in snapshot.examples if e.data is not None and e.result is not None]
        report: dict[str, Any] = {"snapshot": snapshot.id, "examples": len(usable),
                                  "not_scored": len(snapshot.examples) - len(usable)}
        for name, fewshot in (("with_examples", True), ("without_examples", False)):
            report[name] = evaluate_examples(self.runner, config, project, usable, fewshot=fewshot).to_dict()
        with_, without = report["with_examples"]["accuracy"], report["without_examples"]["accuracy"]
        report["summary"] = f"accuracy {with_} with few-shot examples vs {without} without (n={len(usable)})"
        return report

    def on_training(self, project: str, xml: str | None) -> None:
        """The "Train" button (after the snapshot is taken): evaluate and remember the report."""
        xml = xml or (state.label_config if (state := self.projects.get(project)) else None)
        if xml is None:
            log.info("project %s: no label config known; evaluation skipped", project)
            return
        report = self.report(parse_label_config(xml), project)
        update(self.projects, project, evaluation=report)
        log.info("project %s evaluation: %s", project, report.get("summary"))

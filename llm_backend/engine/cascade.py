"""A local-first cascade: the cheap model answers every task, a stronger one only the doubtful ones.

With `LLM_CASCADE=local,gpt-4o-mini` each task is first asked of `local`. Its answer is used unless

- it failed validation even after the repair round, came back in part (a control left out), was cut
  off, refused or empty (`invalid`), or the call itself failed (`error`);
- an entity it quoted could not be found in the text (`unaligned`);
- its score is under `CASCADE_MIN_SCORE` (`low_score`; a task without a score is not escalated:
  there is nothing to judge it by);

in which case the next model is asked, and so on; the last model's answer is used as it is. Should
a later model fail outright, the latest earlier answer that passed validation is returned instead
of nothing. A task whose input cannot be read (`task_error`) is not escalated: every model would
read the same input.

Every step goes through the normal path, response cache included, so a re-run escalates the same
tasks again at no cost. The outcome keeps every step in `TaskOutcome.cascade`; its usage is the sum
over the steps, so the batch summary and the metrics bill what was spent. `Cascade` wraps a
`Predictor` (it asks it once per step) rather than extending it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from prometheus_client import Counter

from ..core.config import LabelConfig
from ..core.usage import Usage
from .metrics import Metrics
from .outcome import CascadeStep, TaskOutcome, count_outcome
from .predictor import PredictionJob, Predictor

# Failure codes (LLMBackendError.code) worth asking another model about, and the reason reported.
ESCALATE_FAILURES = {
    "invalid_answer": "invalid",
    "llm_error": "error",
    "llm_unavailable": "error",
    "llm_rejected": "error",
    "context_window_exceeded": "error",  # the local model's window is too small even for one part of the text
    "llm_unreachable": "error",
    "answer_cut_off": "invalid",
    "answer_refused": "invalid",
    "answer_empty": "invalid",
}
REASONS = ("invalid", "error", "unaligned", "low_score")


class Cascade:
    """Walks `steps` for every task whose project did not name its own model, asking `predictor`."""

    def __init__(self, predictor: Predictor, steps: tuple[str, ...], min_score: float | None) -> None:
        self.predictor = predictor
        self.steps = steps
        self.min_score = min_score
        self.metrics: Metrics = predictor.metrics
        registry = self.metrics.registry
        self.answered = Counter("llm_backend_cascade_answered", "Tasks answered by this cascade step",
                                ["step", "model"], registry=registry)
        self.escalated = Counter("llm_backend_cascade_escalated", "Tasks passed from this cascade step to the next",
                                 ["step", "model", "reason"], registry=registry)

    def model_version(self, config: LabelConfig, project: str | None, model: str | None = None,
                      params: dict[str, Any] | None = None) -> str:
        if model is not None:
            return self.predictor.model_version(config, project, model, params)
        name = "+".join(step.rsplit("/", 1)[-1] for step in self.steps)
        cascade = {"cascade": list(self.steps), "cascade_min_score": self.min_score}
        return self.predictor.model_version(config, project, name, {**(params or {}), **cascade})

    def escalation(self, outcome: TaskOutcome) -> str | None:
        """Why this outcome should go to the next model, or None when it is good enough."""
        if outcome.regions is None:
            return ESCALATE_FAILURES.get(outcome.error_code or "")
        if outcome.invalid_controls:
            return "invalid"  # a partial answer: a control stayed invalid after the repair round
        if outcome.unaligned:
            return "unaligned"
        if self.min_score is not None and outcome.score is not None and outcome.score < self.min_score:
            return "low_score"
        return None

    def predict(self, job: PredictionJob) -> TaskOutcome:
        if job.model is not None:  # the project chose its model in Label Studio's extra_params
            return self.predictor.predict(job)
        outcome = self.cascade(job)
        count_outcome(self.metrics, outcome)
        return outcome

    def cascade(self, job: PredictionJob, first: TaskOutcome | None = None) -> TaskOutcome:
        """Walk the steps; `first` is the first step's outcome when it was obtained already (a provider batch)."""
        outcomes: list[TaskOutcome] = []
        reasons: list[str] = []
        for index, model in enumerate(self.steps):
            given = first if index == 0 else None
            outcome = given or self.predictor.attempt(dataclasses.replace(job, model=model))
            outcomes.append(outcome)
            reason = self.escalation(outcome) if index + 1 < len(self.steps) else None
            if reason is None:
                break
            reasons.append(reason)
        chosen = outcomes[-1]
        if chosen.regions is None:
            chosen = next((o for o in reversed(outcomes[:-1]) if o.regions is not None), chosen)
        steps = [
            CascadeStep(model=o.model or "", status=o.status, score=o.score,
                        escalated=reasons[i] if i < len(reasons) else None, used=o is chosen, usage=o.usage,
                        regions=o.regions, error=o.error)
            for i, o in enumerate(outcomes)
        ]
        for index, step in enumerate(steps, start=1):
            if step.escalated:
                self.escalated.labels(str(index), step.model, step.escalated).inc()
            if step.used and step.regions is not None:
                self.answered.labels(str(index), step.model).inc()
        return dataclasses.replace(chosen, usage=Usage.total(o.usage for o in outcomes), cascade=steps)

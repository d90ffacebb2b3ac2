"""Offline prediction: many tasks through the service's runner, with a progress bar.

Shared by the `predict`, `eval` and `label-project` commands. `predict_tasks` runs a list of tasks through
the service's own runner, so concurrency, retries and the response cache behave exactly as in
`/predict`, and a re-run after an interruption or failure only pays for tasks with no cached answer.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from ..core.causes import Cause, classify_failure
from ..core.config import LabelConfig
from ..core.evaluate import EvalReport, evaluate, gold_result, task_key
from ..core.usage import Usage
from ..engine.outcome import BatchSummary, TaskOutcome
from ..engine.predictor import PredictionJob
from ..engine.task_runner import TaskRunner
from ..redact import redact
from ..services import Services
from .cascade_report import cascade_steps


class Progress:
    """A tqdm bar on stderr counting finished tasks, with failures, LLM calls and cost alongside.

    `enabled=None` shows it only on a terminal; the caller prints its own summary either way.
    """

    def __init__(self, total: int, description: str, enabled: bool | None = None) -> None:
        self.bar = tqdm(total=total, desc=description, unit="task", file=sys.stderr, dynamic_ncols=True,
                        disable=None if enabled is None else not enabled)
        self.failed = 0
        self.usage = Usage()

    def add(self, outcome: TaskOutcome) -> None:
        self.failed += outcome.status in ("failed", "timeout")
        self.usage += outcome.usage
        cost = self.usage.cost_text(4) if self.usage.cost is not None else "?"
        self.bar.set_postfix_str(f"failed={self.failed} calls={self.usage.calls} cost={cost}", refresh=False)
        self.bar.update(1)

    def show(self, finished: int, failed: int, usage: Usage) -> None:
        """Set the bar to totals read from somewhere else (a job's ledger) rather than counted here."""
        self.failed, self.usage = failed, usage
        cost = usage.cost_text(4) if usage.cost is not None else "?"
        self.bar.set_postfix_str(f"failed={failed} calls={usage.calls} cost={cost}", refresh=False)
        self.bar.update(finished - self.bar.n)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class PredictionRun:
    """Outcomes in task order; None for tasks not finished when the run was interrupted."""

    model_version: str
    outcomes: list[TaskOutcome | None]
    summary: BatchSummary
    interrupted: bool = False
    errors: dict[str, list[Any]] = field(default_factory=dict)  # error message -> task ids
    causes: dict[str, Cause] = field(default_factory=dict)  # error message -> its cause

    @property
    def finished(self) -> list[TaskOutcome]:
        return [outcome for outcome in self.outcomes if outcome is not None]


def predict_tasks(
    services: Services,
    config: LabelConfig,
    tasks: list[dict[str, Any]],
    project: str | None = None,
    *,
    progress: Progress | None = None,
    on_outcome: Callable[[int, TaskOutcome], None] | None = None,
    runner: TaskRunner | None = None,
) -> PredictionRun:
    """Predict `tasks` through the backend's runner (or `runner`); Ctrl-C stops it and returns what finished.

    On interruption, unstarted tasks are cancelled and the calls in flight are waited for, so
    every answer paid for is in the cache for the next run.
    """
    runner = runner or services.runner
    started = time.monotonic()
    version = services.predictor.model_version(config, project)
    outcomes: list[TaskOutcome | None] = [None] * len(tasks)
    errors: dict[str, list[Any]] = {}
    causes: dict[str, Cause] = {}
    interrupted = False
    jobs = [PredictionJob(config, project, task) for task in tasks]
    try:
        with closing(runner.as_completed(jobs)) as finished:
            for index, outcome in finished:
                outcomes[index] = outcome
                if outcome.regions is None:
                    message = outcome.error or outcome.status
                    errors.setdefault(message, []).append(tasks[index].get("id", index))
                    causes.setdefault(message, classify_failure(outcome.error_code, outcome.error))
                if progress is not None:
                    progress.add(outcome)
                if on_outcome is not None:
                    on_outcome(index, outcome)
    except KeyboardInterrupt:
        interrupted = True
        # Unstarted tasks are cancelled; let the calls in flight finish so their answers reach the
        # cache. Exiting under them would make LiteLLM fail at interpreter shutdown and retry.
        runner.shutdown()
    done = [outcome for outcome in outcomes if outcome is not None]
    return PredictionRun(version, outcomes, BatchSummary.of(done, time.monotonic() - started), interrupted, errors,
                         causes)


def evaluate_tasks(
    services: Services,
    config: LabelConfig,
    tasks: list[dict[str, Any]],
    project: str | None = None,
    *,
    progress: Progress | None = None,
    worst: int = 10,
    accept_threshold: float | None = None,
) -> tuple[EvalReport, PredictionRun]:
    """Run the current prompts on the annotated `tasks` and score them against the annotations.

    Only tasks with a usable annotation are predicted; the report counts the others as skipped.
    If the run was interrupted, unfinished tasks count as failed: check `run.interrupted`.
    """
    annotated = [(index, task) for index, task in enumerate(tasks) if gold_result(task) is not None]
    run = predict_tasks(services, config, [task for _, task in annotated], project, progress=progress)
    predictions = {task_key(task, index): outcome.regions if outcome is not None else None
                   for (index, task), outcome in zip(annotated, run.outcomes, strict=True)}
    summary = run.summary
    report = evaluate(config, tasks, predictions, usage=summary.usage, model_version=run.model_version, worst=worst,
                      accept_threshold=accept_threshold)
    report.cascade = cascade_steps(config, annotated, run.outcomes)
    return report, run


def error_lines(errors: dict[str, list[Any]], causes: dict[str, Cause] | None = None, *, shown: int = 5
                ) -> list[str]:
    """The most frequent errors, each with how many tasks had it, a few of their ids, and its cause's fix."""
    lines = []
    for message, ids in sorted(errors.items(), key=lambda item: -len(item[1]))[:shown]:
        examples = ", ".join(map(str, ids[:5])) + (", ..." if len(ids) > 5 else "")
        lines.append(f"  {len(ids)} x {redact(message)[:300]} (tasks {examples})")
        cause = (causes or {}).get(message)
        if cause is not None:
            lines.append(f"      cause: {cause.title}; fix: {cause.fix}")
    if len(errors) > shown:
        lines.append(f"  ... and {len(errors) - shown} other errors")
    return lines


def failed_advice(failed: int, total: int, causes: list[Cause]) -> str:
    """The last line after failed tasks: a re-run alone helps only when every cause may pass by itself."""
    head = f"{failed} of {total} tasks failed"
    if causes and all(cause.transient for cause in causes):
        return f"{head}; run the same command again to retry them (finished tasks come from the cache)"
    return f"{head}; running the command again will not help until the cause above is fixed"


def summary_lines(summary: BatchSummary, errors: dict[str, list[Any]], causes: dict[str, Cause] | None = None
                  ) -> list[str]:
    """A human summary of a run: totals, then the most frequent errors."""
    usage = summary.usage
    cost = usage.cost_text() if usage.cost is not None else "unknown (no price for this model)"
    lines = [
        f"{summary.tasks} tasks in {summary.seconds:.1f} s: {summary.ok + summary.cached} predicted "
        f"({summary.cached} from the cache), {summary.failed + summary.timeout} failed",
        f"LLM calls {usage.calls} (retries {usage.retries}, repairs {usage.repairs}), "
        f"tokens {usage.prompt_tokens} prompt + {usage.completion_tokens} completion, cost {cost}",
    ]
    if summary.dropped or summary.unaligned:
        lines.append(f"dropped {summary.dropped} invalid values and {summary.unaligned} entities not found in the text")
    if summary.partial:
        lines.append(f"{summary.partial} tasks predicted in part: a control still invalid after the repair round was "
                     "left out (the server log names it)")
    return lines + error_lines(errors, causes)

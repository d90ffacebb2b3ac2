"""Offline prediction: task files in, Label Studio's import format out, with a progress bar.

Shared by the `predict`, `eval` and `label-project` commands and by anything else that holds a
`Backend` (the training webhook: `evaluate_tasks`). `predict_tasks` runs a list of tasks through
the service's own runner, so concurrency, retries and the response cache behave exactly as in
`/predict`, and a re-run after an interruption or failure only pays for tasks with no cached answer.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .app import Backend
from .batch import BatchSummary
from .cascade_report import cascade_steps
from .errors import BadRequestError
from .evaluate import EvalReport, Usage, evaluate, gold_result, task_key
from .label_config import LabelConfig
from .predictor import PredictionJob, TaskOutcome
from .redact import redact

JSONL_SUFFIXES = (".jsonl", ".ndjson")


class TaskFileError(BadRequestError):
    """A tasks or predictions file that cannot be used; the message names the file and position."""

    code = "invalid_task_file"


def _json_error(name: str, exc: json.JSONDecodeError, line: int | None = None) -> TaskFileError:
    return TaskFileError(f"{name} line {line or exc.lineno}: {exc.msg} (column {exc.colno})")


def _as_task(item: object, where: str) -> dict[str, Any]:
    """Label Studio's import rules: a dict with a "data" object is a task, any other dict is its data."""
    if not isinstance(item, dict):
        raise TaskFileError(f"{where}: expected a task object, got {type(item).__name__}")
    if "data" not in item:
        return {"data": item}
    if not isinstance(item["data"], dict):
        raise TaskFileError(f"{where}: \"data\" must be an object, got {type(item['data']).__name__}")
    return item


def read_tasks(path: Path) -> list[dict[str, Any]]:
    """Tasks from a JSON list (a Label Studio export, or plain data dicts) or a JSONL file."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TaskFileError(f"{name}: not UTF-8 text (invalid byte at offset {exc.start})") from None
    except OSError as exc:
        raise TaskFileError(f"{name}: cannot be read ({exc.strerror})") from None
    if path.suffix.lower() in JSONL_SUFFIXES:
        tasks = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _json_error(name, exc, number) from None
            tasks.append(_as_task(item, f"{name} line {number}"))
    else:
        try:
            body = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _json_error(name, exc) from None
        if isinstance(body, dict) and "data" in body:
            body = [body]  # one task on its own
        if not isinstance(body, list):
            raise TaskFileError(f"{name}: expected a JSON list of tasks, got {type(body).__name__}")
        tasks = [_as_task(item, f"{name} item {index + 1}") for index, item in enumerate(body)]
    if not tasks:
        raise TaskFileError(f"{name}: holds no tasks")
    return tasks


def write_json(path: Path, value: Any) -> None:
    """Write through a temporary file, so an interrupted run never leaves half a file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            if isinstance(value, list):
                # One task per line: diffable and greppable, a third of the size of indented JSON.
                file.write("[\n" + ",\n".join(json.dumps(item, ensure_ascii=False) for item in value) + "\n]\n")
            else:
                json.dump(value, file, ensure_ascii=False, indent=1)
                file.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def prediction_item(outcome: TaskOutcome, model_version: str) -> dict[str, Any] | None:
    """One entry of a task's `predictions` list, or None when the task failed."""
    item = outcome.to_result(model_version)
    if "result" not in item:
        return None
    ordered = {"model_version": model_version, "result": item["result"]}
    if "score" in item:
        ordered["score"] = item["score"]
    return ordered


def import_task(task: dict[str, Any], outcome: TaskOutcome | None, model_version: str) -> dict[str, Any]:
    """A task in Label Studio's import format. Label Studio gives imported tasks new ids; the
    original id is kept anyway so `eval --predictions` can match this file to an export."""
    item: dict[str, Any] = {}
    if "id" in task:
        item["id"] = task["id"]
    item["data"] = task["data"]
    if task.get("meta"):
        item["meta"] = task["meta"]
    prediction = prediction_item(outcome, model_version) if outcome is not None else None
    item["predictions"] = [prediction] if prediction else []
    return item


class Progress:
    """A tqdm bar on stderr counting finished tasks, with failures, LLM calls and cost alongside.

    `enabled=None` shows it only on a terminal; the caller prints its own summary either way.
    """

    def __init__(self, total: int, description: str, enabled: bool | None = None) -> None:
        self.bar = tqdm(total=total, desc=description, unit="task", file=sys.stderr, dynamic_ncols=True,
                        disable=None if enabled is None else not enabled)
        self.failed = 0
        self.calls = 0
        self.cost: float | None = None

    def add(self, outcome: TaskOutcome) -> None:
        self.failed += outcome.status in ("failed", "timeout")
        self.calls += outcome.calls
        if outcome.cost is not None:
            self.cost = (self.cost or 0.0) + outcome.cost
        cost = f"${self.cost:.4f}" if self.cost is not None else "?"
        self.bar.set_postfix_str(f"failed={self.failed} calls={self.calls} cost={cost}", refresh=False)
        self.bar.update(1)

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

    @property
    def finished(self) -> list[TaskOutcome]:
        return [outcome for outcome in self.outcomes if outcome is not None]


def predict_tasks(
    backend: Backend,
    config: LabelConfig,
    tasks: list[dict[str, Any]],
    project: str | None = None,
    *,
    progress: Progress | None = None,
    on_outcome: Callable[[int, TaskOutcome], None] | None = None,
) -> PredictionRun:
    """Predict `tasks` through the backend's runner; Ctrl-C stops it and returns what finished.

    On interruption, unstarted tasks are cancelled and the calls in flight are waited for, so
    every answer paid for is in the cache for the next run.
    """
    started = time.monotonic()
    version = backend.predictor.model_version(config, project)
    outcomes: list[TaskOutcome | None] = [None] * len(tasks)
    errors: dict[str, list[Any]] = {}
    interrupted = False
    jobs = [PredictionJob(config, project, task) for task in tasks]
    try:
        with closing(backend.runner.as_completed(jobs)) as finished:
            for index, outcome in finished:
                outcomes[index] = outcome
                if outcome.regions is None:
                    errors.setdefault(outcome.error or outcome.status, []).append(tasks[index].get("id", index))
                if progress is not None:
                    progress.add(outcome)
                if on_outcome is not None:
                    on_outcome(index, outcome)
    except KeyboardInterrupt:
        interrupted = True
        # Unstarted tasks are cancelled; let the calls in flight finish so their answers reach the
        # cache. Exiting under them would make LiteLLM fail at interpreter shutdown and retry.
        backend.runner.shutdown()
    done = [outcome for outcome in outcomes if outcome is not None]
    return PredictionRun(version, outcomes, BatchSummary.of(done, time.monotonic() - started), interrupted, errors)


def evaluate_tasks(
    backend: Backend,
    config: LabelConfig,
    tasks: list[dict[str, Any]],
    project: str | None = None,
    *,
    progress: Progress | None = None,
    worst: int = 10,
) -> tuple[EvalReport, PredictionRun]:
    """Run the current prompts on the annotated `tasks` and score them against the annotations.

    Only tasks with a usable annotation are predicted; the report counts the others as skipped.
    If the run was interrupted, unfinished tasks count as failed: check `run.interrupted`.
    """
    annotated = [(index, task) for index, task in enumerate(tasks) if gold_result(task) is not None]
    run = predict_tasks(backend, config, [task for _, task in annotated], project, progress=progress)
    predictions = {task_key(task, index): outcome.regions if outcome is not None else None
                   for (index, task), outcome in zip(annotated, run.outcomes, strict=True)}
    summary = run.summary
    usage = Usage(summary.calls, summary.prompt_tokens, summary.completion_tokens, summary.cost)
    report = evaluate(config, tasks, predictions, usage=usage, model_version=run.model_version, worst=worst)
    report.cascade = cascade_steps(config, annotated, run.outcomes)
    return report, run


def error_lines(errors: dict[str, list[Any]], *, shown: int = 5) -> list[str]:
    """The most frequent errors, each with how many tasks had it and a few of their ids."""
    lines = []
    for message, ids in sorted(errors.items(), key=lambda item: -len(item[1]))[:shown]:
        examples = ", ".join(map(str, ids[:5])) + (", ..." if len(ids) > 5 else "")
        lines.append(f"  {len(ids)} x {redact(message)[:300]} (tasks {examples})")
    if len(errors) > shown:
        lines.append(f"  ... and {len(errors) - shown} other errors")
    return lines


def summary_lines(summary: BatchSummary, errors: dict[str, list[Any]]) -> list[str]:
    """A human summary of a run: totals, then the most frequent errors."""
    cost = f"${summary.cost:.6f}" if summary.cost is not None else "unknown (no price for this model)"
    lines = [
        f"{summary.tasks} tasks in {summary.seconds:.1f} s: {summary.ok + summary.cached} predicted "
        f"({summary.cached} from the cache), {summary.failed + summary.timeout} failed",
        f"LLM calls {summary.calls} (retries {summary.retries}, repairs {summary.repairs}), "
        f"tokens {summary.prompt_tokens} prompt + {summary.completion_tokens} completion, cost {cost}",
    ]
    if summary.dropped or summary.unaligned:
        lines.append(f"dropped {summary.dropped} invalid values and {summary.unaligned} entities not found in the text")
    return lines + error_lines(errors)

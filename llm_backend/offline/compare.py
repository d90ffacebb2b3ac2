"""`eval --compare A B`: two prompt versions (or models) on the same annotated tasks, paired.

A version is a folder in PROMPTS_DIR's format (an empty one means the shipped defaults) or
`model=NAME` (the current prompts, another model). Both run through the backend's own runner, so
answers are cached by request: a second comparison, or one that shares a side with an earlier one,
makes no model call for what it already asked. Per control: each side's headline metric, B − A with a
seeded 95% paired bootstrap interval (core/paired.py), and for accuracy-type controls (Choices,
Taxonomy, Rating, Number, DateTime: a task is right or wrong) the exact McNemar p-value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.config import LabelConfig
from ..core.evaluate import EvalReport, TaskScore, gold_result, object_text, task_key
from ..core.paired import CONFIDENCE, MIN_TASKS, RESAMPLES, Interval, Side, mcnemar, paired_bootstrap
from ..core.usage import Usage
from ..errors import LLMBackendError
from ..services import Services, build_services
from ..settings import Settings
from .runs import PredictionRun, Progress, evaluate_tasks

MODEL_PREFIX = "model="


class LabError(LLMBackendError):
    """Unusable input for the prompt lab: the CLI exits 2 with this message."""


@dataclass(frozen=True)
class Version:
    """One side: prompts in a PROMPTS_DIR-format folder, and a model."""

    name: str  # as the user wrote it
    prompts_dir: Path
    model: str

    def settings(self, base: Settings) -> Settings:
        return base.model_copy(update={"prompts_dir": self.prompts_dir.absolute(), "llm_model": self.model})


def parse_version(text: str, settings: Settings) -> Version:
    if text.startswith(MODEL_PREFIX):
        model = text[len(MODEL_PREFIX):].strip()
        if not model:
            raise LabError(f"{text!r}: name the model after model=, e.g. model=openai/gpt-4o")
        return Version(text, settings.prompts_dir, model)
    path = Path(text)
    if not path.is_dir():
        raise LabError(f"{text}: not a folder. A version is a prompt folder in PROMPTS_DIR's format (an empty "
                       "folder means the shipped defaults) or model=NAME")
    return Version(text, path, settings.llm_model)


@dataclass
class VersionRun:
    version: Version
    report: EvalReport
    run: PredictionRun

    @property
    def usage(self) -> Usage:
        return self.run.summary.usage


Runner = Callable[[Version, list[dict[str, Any]], Progress | None], VersionRun]


def version_runner(settings: Settings, config: LabelConfig, project: str | None,
                   build: Callable[[Settings], Services] = build_services) -> Runner:
    """Runs a version's prompts on tasks through services built for it (one set per version, shared cache file)."""
    built: dict[Version, Services] = {}

    def run(version: Version, tasks: list[dict[str, Any]], progress: Progress | None = None) -> VersionRun:
        if version not in built:
            built[version] = build(version.settings(settings))
        report, outcome = evaluate_tasks(built[version], config, tasks, project, progress=progress, worst=0)
        if outcome.interrupted:
            raise KeyboardInterrupt
        return VersionRun(version, report, outcome)

    return run


def annotated(tasks: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tasks with a usable annotation, each with a key (task_key) that survives subsetting."""
    kept = []
    for index, task in enumerate(tasks):
        if gold_result(task) is not None:
            keyed = dict(task)
            keyed.setdefault("id", task_key(task, index))
            kept.append(keyed)
    return kept


def require_enough(tasks: Sequence[dict[str, Any]], what: str, minimum: int = MIN_TASKS) -> None:
    if len(tasks) < minimum:
        raise LabError(f"{what}: {len(tasks)} annotated tasks found; a paired comparison needs at least {minimum} "
                       "to say anything (annotate more tasks, or give a larger file)")


@dataclass(frozen=True)
class ControlComparison:
    control: str
    metric: str  # the headline's name: accuracy, exact F1, similarity...
    a: float | None
    b: float | None
    interval: Interval | None  # None when the control has nothing to measure on these tasks
    p: float | None  # exact McNemar, for right-or-wrong metrics
    tasks: int

    def to_dict(self) -> dict[str, Any]:
        interval = self.interval
        return {"metric": self.metric, "a": self.a, "b": self.b, "diff": interval.diff if interval else None,
                "ci": [interval.low, interval.high] if interval else None, "p": self.p, "tasks": self.tasks}


def _sides(a: dict[str, TaskScore], b: dict[str, TaskScore], keys: Sequence[str]) -> tuple[Side, Side]:
    return (Side.of([a[k].num for k in keys], [a[k].den for k in keys]),
            Side.of([b[k].num for k in keys], [b[k].den for k in keys]))


def _right_or_wrong(scores: Sequence[TaskScore]) -> bool:
    return all(score.den in (0, 1) and score.num in (0, score.den) for score in scores)


def compare_control(name: str, metric: str, a: dict[str, TaskScore], b: dict[str, TaskScore], *,
                    confidence: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = 0) -> ControlComparison:
    keys = sorted(set(a) & set(b))
    side_a, side_b = _sides(a, b, keys)
    interval = p = None
    if side_a.den.sum() and side_b.den.sum():
        interval = paired_bootstrap([(side_a, side_b)], resamples=resamples, confidence=confidence, seed=seed)
    counted = [k for k in keys if a[k].den or b[k].den]
    if counted and _right_or_wrong([a[k] for k in keys] + [b[k] for k in keys]):
        p = mcnemar([a[k].num == 1 for k in counted], [b[k].num == 1 for k in counted])
    return ControlComparison(name, metric, side_a.metric, side_b.metric, interval, p, len(counted))


def overall_interval(a: EvalReport, b: EvalReport, keys: Sequence[str], *, confidence: float = CONFIDENCE,
                     resamples: int = RESAMPLES, seed: int = 0) -> Interval:
    """B − A of the mean of the controls' headlines (EvalReport.accuracy), tasks resampled jointly."""
    pairs = [_sides(a.per_task[name], b.per_task[name], keys) for name in a.per_task]
    pairs = [(x, y) for x, y in pairs if x.den.sum() and y.den.sum()]
    if not pairs:
        raise LabError("no control has anything to measure on these tasks")
    return paired_bootstrap(pairs, resamples=resamples, confidence=confidence, seed=seed)


@dataclass(frozen=True)
class Disagreement:
    task: str
    text: str
    fields: dict[str, tuple[str, str, str]]  # control -> (annotated, A's answer, B's answer)
    link: str | None = None


@dataclass
class Comparison:
    a: VersionRun
    b: VersionRun
    controls: list[ControlComparison]
    disagreements: list[Disagreement] = field(default_factory=list)
    tasks: int = 0

    def to_dict(self) -> dict[str, Any]:
        def side(run: VersionRun) -> dict[str, Any]:
            return {"version": run.version.name, "model": run.version.model, "model_version": run.run.model_version,
                    "failed": run.report.failed, "usage": run.usage.to_dict()}

        return {"tasks": self.tasks, "controls": {c.control: c.to_dict() for c in self.controls},
                "a": side(self.a), "b": side(self.b),
                "disagreements": [{"task": d.task, "text": d.text, "link": d.link,
                                   "fields": {name: {"annotated": gold, "a": left, "b": right}
                                              for name, (gold, left, right) in d.fields.items()}}
                                  for d in self.disagreements]}


def disagreements(config: LabelConfig, tasks: Sequence[dict[str, Any]], a: EvalReport, b: EvalReport,
                  link: Callable[[str], str | None] = lambda key: None) -> list[Disagreement]:
    """The tasks where A's and B's answers differ, in task order, with the annotation."""
    found = []
    for task in tasks:
        key = str(task["id"])
        fields = {}
        for control in config.controls:
            left, right = a.per_task[control.name].get(key), b.per_task[control.name].get(key)
            if left is not None and right is not None and left.predicted != right.predicted:
                fields[control.name] = (left.annotated, left.predicted, right.predicted)
        if fields:
            text = " ".join(next((t for c in config.controls if (t := object_text(config, c, task))), "").split())
            found.append(Disagreement(key, text[:300], fields, link(key)))
    return found


def compare(config: LabelConfig, tasks: list[dict[str, Any]], run: Runner, a: Version, b: Version, *,
            progress: Callable[[str, int], Progress | None] = lambda name, total: None,
            link: Callable[[str], str | None] = lambda key: None) -> Comparison:
    """Run both versions on the annotated `tasks` and compare them control by control."""
    tasks = annotated(tasks)
    require_enough(tasks, "compare")
    runs = []
    for version in (a, b):
        bar = progress(version.name, len(tasks))
        try:
            runs.append(run(version, tasks, bar))
        finally:
            if bar is not None:
                bar.close()
    left, right = runs
    keys = [str(task["id"]) for task in tasks]
    controls = [compare_control(report.control, report.headline_name,
                                {k: left.report.per_task[report.control][k] for k in keys},
                                {k: right.report.per_task[report.control][k] for k in keys})
                for report in left.report.controls]
    return Comparison(left, right, controls, disagreements(config, tasks, left.report, right.report, link), len(keys))

"""`llm-backend improve`: revise the instructions from the errors they cause, kept only on held-out evidence.

    annotated tasks --(seeded split, stratified by label)--> working part | held-out part
    round r (from the last kept version V):
        V on the working part -> its errors (text, answer, annotation)
        one request to IMPROVE_MODEL with the meta-prompt (improve.j2) -> revised instructions + rationale
        candidate C = V's own templates + the new instructions.j2, in a temporary folder
        C and V on the held-out part, paired -> B − A with its interval; C is kept iff the low end > 0

The improver never sees a held-out task. With several rounds the same held-out part decides each
one, so each interval is widened (Bonferroni: 1 − 0.05/rounds) to keep the chance of keeping a
version that is not better at 2.5% or less over all rounds. Nothing is written to PROMPTS_DIR;
the last kept version is copied to the output folder, and nothing at all is written when none is kept.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.config import LabelConfig
from ..core.evaluate import EvalReport, evaluate, object_text
from ..core.paired import CONFIDENCE, MIN_TASKS, Interval, stratified_split
from ..core.reading import read_json
from ..core.usage import Usage
from ..engine.prompt_versions import INSTRUCTIONS, template_diff, write_version
from ..engine.prompts import PromptLibrary, control_context
from ..errors import AnswerError, LLMBackendError
from ..models.client import LLMRequest
from ..services import Services
from ..settings import Settings
from .compare import LabError, Runner, Version, VersionRun, annotated, overall_interval

MAX_ERRORS = 30  # errors quoted in one request: enough to show a pattern, bounded in cost
MAX_TEXT = 2000  # characters of each quoted task
REVISION_FORMAT = {"type": "json_schema", "json_schema": {"name": "prompt_revision", "strict": True, "schema": {
    "type": "object", "additionalProperties": False, "required": ["instructions", "rationale"],
    "properties": {"instructions": {"type": "string"}, "rationale": {"type": "string"}}}}}


@dataclass(frozen=True)
class Paired:
    before: float | None
    after: float | None
    interval: Interval

    def to_dict(self) -> dict[str, Any]:
        return {"before": self.before, "after": self.after, "diff": self.interval.diff,
                "ci": [self.interval.low, self.interval.high], "confidence": self.interval.confidence}


@dataclass
class Round:
    number: int
    errors: int  # working-part errors the request quoted
    instructions: str = ""
    rationale: str = ""
    working: Paired | None = None
    heldout: Paired | None = None
    accepted: bool = False
    reason: str = ""
    usage: Usage = field(default_factory=Usage)
    diff: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"round": self.number, "errors": self.errors, "instructions": self.instructions,
                "rationale": self.rationale, "working": self.working.to_dict() if self.working else None,
                "heldout": self.heldout.to_dict() if self.heldout else None, "accepted": self.accepted,
                "reason": self.reason, "usage": self.usage.to_dict(), "diff": self.diff}


@dataclass
class Outcome:
    rounds: list[Round]
    working: int
    heldout: int
    final: Paired | None  # the last kept version (or, when none was kept, the last candidate) against the start
    out: Path | None

    @property
    def accepted(self) -> bool:
        return self.out is not None

    def to_dict(self) -> dict[str, Any]:
        final = self.final
        return {"accepted": self.accepted, "rounds": [r.to_dict() for r in self.rounds],
                "tasks": {"working": self.working, "heldout": self.heldout},
                "heldout": {"before": final.before if final else None, "after": final.after if final else None,
                            "diff_ci": [final.interval.low, final.interval.high] if final else None},
                "out": str(self.out) if self.out else None}


def split(config: LabelConfig, tasks: list[dict[str, Any]], holdout: float, seed: int = 0
          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(working, held-out) annotated tasks, stratified by the first control's annotated value."""
    first = config.controls[0].name
    labels = evaluate(config, tasks, {}).per_task[first]
    keys = [str(task["id"]) for task in tasks]
    working, held = stratified_split(keys, [labels[key].annotated for key in keys], holdout, seed=seed)
    by_key = {str(task["id"]): task for task in tasks}
    return [by_key[k] for k in working], [by_key[k] for k in held]


def errors_of(config: LabelConfig, tasks: list[dict[str, Any]], report: EvalReport) -> list[dict[str, Any]]:
    """The tasks the version got wrong (any control short of full agreement), as improve.j2 quotes them."""
    found = []
    for task in tasks:
        key = str(task["id"])
        fields = [{"name": name, "annotated": scores[key].annotated, "predicted": scores[key].predicted}
                  for name, scores in report.per_task.items() if key in scores and scores[key].num < scores[key].den]
        if fields:
            text = next((t for c in config.controls if (t := object_text(config, c, task))), "")
            found.append({"task": key, "text": text[:MAX_TEXT], "fields": fields})
    return found[:MAX_ERRORS]


class Improver:
    """Asks IMPROVE_MODEL for revised instructions, through the backend's client and response cache."""

    def __init__(self, settings: Settings, services: Services, config: LabelConfig, project: str | None) -> None:
        self.settings, self.services, self.config, self.project = settings, services, config, project

    def current_instructions(self, library: PromptLibrary) -> str:
        context = {"controls": [control_context(control) for control in self.config.controls]}
        if INSTRUCTIONS not in library.files(self.project):
            return ""
        return library.render(self.project, INSTRUCTIONS, context)

    def request(self, library: PromptLibrary, errors: list[dict[str, Any]], rejected: list[dict[str, str]]
                ) -> LLMRequest:
        context = {"controls": [control_context(control) for control in self.config.controls],
                   "instructions": self.current_instructions(library), "errors": errors, "rejected": rejected}
        text = library.render(self.project, "improve.j2", context)
        mode = self.settings.llm_output_mode
        response_format = REVISION_FORMAT if mode == "schema" else {"type": "json_object"} if mode == "json" else None
        return LLMRequest(model=self.settings.improve_model or self.settings.llm_model,
                          messages=({"role": "user", "content": text},), response_format=response_format,
                          temperature=0.0, max_tokens=self.settings.llm_max_tokens,
                          api_base=None if self.settings.llm_router_config else self.settings.api_base)

    def ask(self, request: LLMRequest) -> tuple[str, str, Usage]:
        """(instructions, rationale, usage); a cached answer costs nothing."""
        cached = self.services.cache.get(request.cache_key)
        if cached is not None:
            content, usage = cached["content"], Usage()
        else:
            completion = self.services.client.complete(request)
            content, usage = completion.content, completion.usage
        try:
            value = read_json(content, ("instructions",)).value
        except AnswerError as exc:
            raise LabError(f"{request.model} did not answer the improvement request with JSON: {exc.message}") from None
        instructions, rationale = value.get("instructions"), value.get("rationale")
        if not isinstance(instructions, str):
            raise LabError(f"{request.model}'s revision has no \"instructions\" text: {json.dumps(value)[:300]}")
        if cached is None:
            self.services.cache.set(request.cache_key, {"content": content})
        return instructions.strip(), str(rationale or "").strip(), usage


def _paired(before: VersionRun, after: VersionRun, tasks: list[dict[str, Any]], confidence: float) -> Paired:
    keys = [str(task["id"]) for task in tasks]
    interval = overall_interval(before.report, after.report, keys, confidence=confidence)
    return Paired(before.report.accuracy, after.report.accuracy, interval)


@dataclass
class ImproveJob:
    settings: Settings
    config: LabelConfig
    project: str | None
    run: Runner
    improver: Improver
    holdout: float = 0.3
    rounds: int = 1
    on_round: Callable[[Round], None] = lambda r: None

    def start(self, tasks: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        tasks = annotated(tasks)
        working, held = split(self.config, tasks, self.holdout) if len(tasks) > 1 else (tasks, [])
        if len(held) < MIN_TASKS or len(working) < MIN_TASKS:
            raise LabError(f"improve: {len(tasks)} annotated tasks found, which split {len(working)} working and "
                           f"{len(held)} held out (--holdout {self.holdout:g}); each part needs at least {MIN_TASKS} "
                           f"to say anything: annotate at least {_needed(self.holdout)} tasks")
        return working, held

    def improve(self, tasks: list[dict[str, Any]], out: Path) -> Outcome:
        working, held = self.start(tasks)
        confidence = 1 - (1 - CONFIDENCE) / self.rounds
        start = current = Version("current", self.settings.prompts_dir, self.settings.llm_model)
        rejected: list[dict[str, str]] = []
        rounds: list[Round] = []
        kept: Version | None = None
        last: Paired | None = None
        with tempfile.TemporaryDirectory(prefix="llm-backend-improve-") as scratch:
            for number in range(1, self.rounds + 1):
                result, candidate = self._round(number, current, working, held, rejected, Path(scratch), confidence)
                rounds.append(result)
                self.on_round(result)
                if result.accepted and candidate is not None:
                    current = kept = candidate
                elif result.instructions:
                    rejected.append({"instructions": result.instructions, "rationale": result.rationale})
                if result.heldout is not None and kept is None:
                    last = result.heldout
                if result.working is None and not result.instructions:
                    break  # nothing to improve, or the model suggested nothing: another round would ask the same
            final = last
            if kept is not None:
                final = _paired(self.run(start, held, None), self.run(kept, held, None), held, CONFIDENCE)
                out.mkdir(parents=True, exist_ok=True)
                shutil.copytree(kept.prompts_dir, out, dirs_exist_ok=True)
        return Outcome(rounds, len(working), len(held), final, out if kept is not None else None)

    def _round(self, number: int, current: Version, working: list[dict[str, Any]], held: list[dict[str, Any]],
               rejected: list[dict[str, str]], scratch: Path, confidence: float) -> tuple[Round, Version | None]:
        before = self.run(current, working, None)
        usage = before.usage
        errors = errors_of(self.config, working, before.report)
        if not errors:
            return Round(number, 0, reason="no errors on the working part: nothing to improve", usage=usage), None
        library = PromptLibrary(current.prompts_dir)
        try:
            instructions, rationale, asked = self.improver.ask(self.improver.request(library, errors, rejected))
        except LLMBackendError as exc:
            raise LabError(f"round {number}: the improvement request failed: {exc.message}") from None
        result = Round(number, len(errors), instructions, rationale, usage=usage + asked)
        if not instructions or instructions == self.improver.current_instructions(library).strip():
            result.reason = "the model suggested no change"
            return result, None
        folder = scratch / f"round-{number}"
        write_version(current.prompts_dir, folder, instructions, self.project)
        candidate = Version(f"round {number}", folder, current.model)
        result.diff = template_diff(library, PromptLibrary(folder), self.project)
        self._check_used(PromptLibrary(folder), instructions)
        after = self.run(candidate, working, None)
        held_before, held_after = self.run(current, held, None), self.run(candidate, held, None)
        result.usage = result.usage + after.usage + held_before.usage + held_after.usage
        result.working = _paired(before, after, working, confidence)
        result.heldout = _paired(held_before, held_after, held, confidence)
        result.accepted = result.heldout.interval.above_zero
        level = f"{confidence * 100:g}% interval"
        result.reason = (f"kept: the held-out {level}'s low end is above zero" if result.accepted else
                         f"not kept: the held-out {level} reaches zero or below")
        return result, candidate

    def _check_used(self, library: PromptLibrary, instructions: str) -> None:
        """The templates in effect must show instructions.j2, or a candidate would change nothing."""
        context = library.base_context(self.config, self.settings.llm_output_mode, "{}")
        context.update(objects=[], task={"id": 0, "data": {}}, examples=[], instruction=None, long_text=None)
        try:
            shown = "\n".join(message.content for message in library.messages(self.project, context))
        except LLMBackendError:
            return  # a template that needs a real task: the runs below render it, and say what is wrong
        if instructions.strip().splitlines()[0] not in shown:
            raise LabError(f"the prompts in {self.settings.prompts_dir} do not show {INSTRUCTIONS}: add "
                           '{% include "instructions.j2" ignore missing %} to your system.j2 (the shipped one has it)')


def _needed(holdout: float) -> int:
    """The fewest annotated tasks whose split (sklearn: ceil(holdout x n) held out) gives both parts MIN_TASKS."""
    tasks = 2 * MIN_TASKS
    while math.ceil(holdout * tasks) < MIN_TASKS or tasks - math.ceil(holdout * tasks) < MIN_TASKS:
        tasks += 1
    return tasks

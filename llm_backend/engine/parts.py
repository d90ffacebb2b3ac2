"""One part of a long text: its request, its answer, and its entities at whole-text offsets; and
the merge of every part's entities into one list of regions (engine/longtext.py drives both)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..core.align import AlignOptions
from ..core.chunks import Chunk, Found, add_new_pass, merge_found
from ..core.config import Control, LabelConfig
from ..core.controls import spec_for
from ..core.controls.base import make_region
from ..core.controls.combine import SPANS
from ..core.regions import RegionInputs, build_regions
from ..core.scores import control_scores
from ..core.usage import Usage
from ..errors import ContextWindowError, TaskError
from ..models.client import LLMRequest
from .job import Answered, PredictionJob

PART_NOTE: dict[str, Any] = {"mode": "part"}


class Asker(Protocol):
    """What the long-text engine needs of the predictor: requests built and answered as for any task."""

    def build_request(self, job: PredictionJob, texts: dict[str, str], images: Any = None,
                      long_text: dict[str, Any] | None = None) -> LLMRequest: ...

    def answer(self, job: PredictionJob, request: LLMRequest, inputs: RegionInputs) -> Answered: ...

    def examples_in_use(self, job: PredictionJob) -> bool: ...


class Counter(Protocol):
    def count_request(self, request: LLMRequest) -> int: ...


@dataclass(frozen=True)
class Part:
    """A piece of the split object's text to ask about, and which controls to ask it."""

    chunk: Chunk
    config: LabelConfig
    pass_index: int = 0
    depth: int = 0  # how often it was split again because the provider refused it as too long


@dataclass
class PartAnswer:
    part: Part
    answered: Answered | None = None
    regions: list[dict[str, Any]] = field(default_factory=list)  # Labels regions, whole-text offsets
    unaligned: int = 0
    align_seconds: float = 0.0
    usage: Usage = field(default_factory=Usage)
    error: TaskError | None = None
    prompt_tokens: int | None = None  # our count of the prompt, when refused as too long or asked to measure
    answer_room: int | None = None  # the max_tokens that request asked for

    @property
    def overflow(self) -> bool:
        return isinstance(self.error, ContextWindowError)


def span_controls(controls: Sequence[Control]) -> list[Control]:
    """The controls whose parts' answers are merged as spans (Labels)."""
    return [control for control in controls if spec_for(control.kind).long_text(control) == SPANS]


def only(config: LabelConfig, controls: Sequence[Control]) -> LabelConfig:
    """The config asking only `controls` (its schema and prompt list only them)."""
    chosen = tuple(controls)
    return config if chosen == config.controls else dataclasses.replace(config, controls=chosen)


def with_text(job: PredictionJob, obj: str, text: str, config: LabelConfig) -> PredictionJob:
    """The job for a part: a template that shows task.data.<field> shows the part, not the whole text."""
    key = job.config.objects[obj].data_key
    data = job.task.get("data")
    task = job.task
    if key is not None and isinstance(data, dict):
        task = {**job.task, "data": {**data, key: text}}
    return dataclasses.replace(job, config=config, task=task)


def ask_part(asker: Asker, job: PredictionJob, texts: dict[str, str], obj: str, part: Part, limit: int | None,
             counter: Counter | None, measure: bool = False) -> PartAnswer:
    """Ask one part (on the part pool). Never raises a TaskError: it comes back in the answer, with
    what was spent, so the task can bill every part and re-split the ones that were too long.
    `measure`: count the prompt our way even when it is answered (set against what the provider billed)."""
    chunk = part.chunk
    piece = texts[obj][chunk.start : chunk.end]
    part_job = with_text(job, obj, piece, part.config)
    part_texts = {**texts, obj: piece}
    result = PartAnswer(part)
    request: LLMRequest | None = None
    try:
        request = asker.build_request(part_job, part_texts, long_text=PART_NOTE)
        if limit is not None and counter is not None and asker.examples_in_use(part_job):
            # Each part picks its own examples: count what was picked against the window.
            tokens = counter.count_request(request)
            if tokens > limit:
                raise ContextWindowError(f"the part with its few-shot examples takes {tokens} tokens, over {limit}")
        answered = asker.answer(part_job, request, RegionInputs(part_texts))
    except TaskError as exc:
        result.error, result.usage = exc, exc.usage
        if isinstance(exc, ContextWindowError) and request is not None and counter is not None:
            # Set against the provider's own count, it tells how its tokenizer differs from ours.
            result.prompt_tokens, result.answer_room = counter.count_request(request), request.max_tokens
        return result
    result.answered, result.usage = answered, answered.usage
    if measure and counter is not None:
        result.prompt_tokens = counter.count_request(request)
    return result


def place_entities(result: PartAnswer, texts: dict[str, str], obj: str, align: AlignOptions) -> None:
    """Align a part's quotes inside the part and move them to whole-text offsets. Done by the task's own
    thread while other parts are in flight: a part thread is free for the next request at once."""
    started = time.perf_counter()
    part, answered = result.part, result.answered
    labels = span_controls(part.config.controls)
    if answered is None or not labels:
        return
    chunk = part.chunk
    part_texts = {**texts, obj: texts[obj][chunk.start : chunk.end]}
    values = {c.name: answered.answer.values[c.name] for c in labels if c.name in answered.answer.values}
    scores = control_scores(part.config, answered.completion.content, answered.completion.logprobs)
    report = build_regions(only(part.config, labels), values, RegionInputs(part_texts, {}, align, text_only=True),
                           scores)
    result.unaligned = len(report.unaligned)
    for region in report.regions:
        if region["to_name"] == obj:
            value = region["value"]
            region["value"] = {**value, "start": value["start"] + chunk.start, "end": value["end"] + chunk.start}
        result.regions.append(region)
    result.align_seconds = time.perf_counter() - started


@dataclass
class MergedRegions:
    regions: dict[str, list[dict[str, Any]]]  # control name -> its regions, in text order
    duplicates: int = 0
    cut_off: int = 0
    seconds: float = 0.0


def _found(answers: list[PartAnswer], obj: str, lengths: dict[str, int], controls: dict[str, Control]
           ) -> tuple[dict[str, list[Found]], dict[str, list[Chunk]], dict[int, dict[str, Any]]]:
    """Per object: the spans found and the parts (geometry) they came from; region payloads by id."""
    found: dict[str, list[Found]] = {}
    parts: dict[str, list[Chunk]] = {}
    payload: dict[int, dict[str, Any]] = {}
    for answer in answers:
        for region in answer.regions:
            target = region["to_name"]
            geometry = parts.setdefault(target, [])
            chunk = answer.part.chunk if target == obj else Chunk(0, lengths[target], 0)
            if target != obj and geometry:
                index = 0  # an object that is not split: every part read all of it
            else:
                geometry.append(chunk)
                index = len(geometry) - 1
            value = region["value"]
            control = controls[region["from_name"]]
            label = spec_for(control.kind).span_label(control, value)
            item = Found(value["start"], value["end"], label, control.name, index, float(region.get("score", 1.0)))
            payload[id(item)] = region
            found.setdefault(target, []).append(item)
    return found, parts, payload


def merge_regions(answers: list[PartAnswer], obj: str, texts: dict[str, str], controls: Sequence[Control]
                  ) -> MergedRegions:
    """Every pass's spans merged (core/chunks.py) and turned back into regions with fresh ids."""
    started = time.perf_counter()
    lengths = {name: len(text) for name, text in texts.items()}
    merged = MergedRegions({control.name: [] for control in controls})
    kept: list[Found] = []
    payload: dict[int, dict[str, Any]] = {}
    by_control = {control.name: control for control in controls}
    for pass_index in sorted({answer.part.pass_index for answer in answers}):
        found, parts, regions = _found([a for a in answers if a.part.pass_index == pass_index], obj, lengths,
                                       by_control)
        payload.update(regions)
        this_pass: list[Found] = []
        for target, items in found.items():
            result = merge_found(items, parts[target], lengths[target])
            merged.duplicates += result.duplicates
            merged.cut_off += result.cut_off
            this_pass.extend(items[i] for i in result.kept)
        kept.extend(this_pass if pass_index == 0 else add_new_pass(kept, this_pass))
    for item in sorted(kept, key=lambda found: (found.start, found.end)):
        control = by_control[item.group]
        region = payload[id(item)]
        spans = merged.regions[control.name]
        spans.append(make_region(control, len(spans), region["value"], region.get("score")))
        if "meta" in region:
            spans[-1]["meta"] = region["meta"]
    merged.seconds = time.perf_counter() - started
    return merged

"""<Labels> on text (NER): the model quotes each entity, the aligner finds its offsets."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ..agreement import SpanReport
from ..align import Entity, align
from ..config_types import Control
from .base import (
    ControlSpec,
    Dropped,
    RegionInputs,
    RegionReport,
    Validator,
    Value,
    drop,
    item_score,
    make_region,
    middle_option,
    option_key,
    option_lookup,
)
from .combine import SPANS, Combined
from .demo_rules import capitalised_phrases, pick

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EntityAnswer:
    text: str
    label: str
    # Position in the model's raw list (items before it may have been dropped): keys its token scores.
    source_index: int = field(default=-1, compare=False)


class LabelsSpec(ControlSpec):
    tag = "Labels"
    option_tag = "Label"
    media = frozenset()
    object_tags = frozenset({"text", "hypertext", "paragraphs"})  # objects whose text spans point into

    def multiple(self, attrs: dict[str, str]) -> bool:
        return True
    score_style = "items"

    def json_schema(self, control: Control) -> dict[str, Any]:
        return {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "text": {"type": "string", "description": "the entity copied exactly from the text"},
                    "label": {"type": "string", "enum": [option.value for option in control.options]},
                },
                "required": ["text", "label"],
                "additionalProperties": False,
            },
        }

    def validator(self, control: Control) -> Validator:
        table = option_lookup(control.options)

        def validate(value: object, dropped: list[Dropped]) -> list[EntityAnswer]:
            if not isinstance(value, (list, tuple)):
                raise ValueError("must be a list of {\"text\", \"label\"} objects")
            entities: list[EntityAnswer] = []
            for index, item in enumerate(value):
                if not isinstance(item, dict) or not isinstance(item.get("text"), str) or not item["text"].strip():
                    drop(dropped, control, item, "entity without text")
                    continue
                label = item.get("label")
                if not isinstance(label, str) or option_key(label) not in table:
                    drop(dropped, control, item, "label not in the config")
                    continue
                entities.append(EntityAnswer(item["text"], table[option_key(label)], index))
            return entities

        return validate

    def add_regions(self, control: Control, answer: list[EntityAnswer], inputs: RegionInputs,
                    scores: list[float | None], report: RegionReport) -> None:
        text = inputs.texts[control.to_name[0]]
        quoted = [Entity(e.text, e.label) for e in answer]
        source = {id(entity): answered.source_index for entity, answered in zip(quoted, answer, strict=True)}
        for index, span in enumerate(align(text, quoted, inputs.align)):
            if not span.aligned:
                report.unaligned.append(span)
                log.info("dropped entity %r (%s): not found in %s", span.entity.text[:80], span.entity.label,
                         control.to_name[0])
                continue
            report.match_kinds[span.kind.value] = report.match_kinds.get(span.kind.value, 0) + 1
            value = {"start": span.start, "end": span.end, "text": span.text, "labels": [span.entity.label]}
            score = item_score(scores, source[id(span.entity)])
            if score is None:
                # No token scores: the alignment's quality is the evidence we have (exact 1.0, fuzzy its ratio).
                score = round(span.score / 100, 4)
            region = make_region(control, index, value, score)
            region["meta"] = span.meta()  # exact / case_insensitive / normalised / fuzzy, and its score
            report.regions.append(region)

    def text_spans(self, control: Control, answer: list[EntityAnswer], inputs: RegionInputs,
                   scores: list[float | None], report: RegionReport) -> list[dict[str, Any]]:
        """The answer's spans at text offsets, their labels under this control's result type (what a span
        control placing them in a structure starts from); what could not be aligned goes to `report`."""
        spans = RegionReport()
        LabelsSpec.add_regions(self, control, answer, inputs, scores, spans)
        report.unaligned.extend(spans.unaligned)
        for kind, count in spans.match_kinds.items():
            report.match_kinds[kind] = report.match_kinds.get(kind, 0) + count
        for region in spans.regions:
            value = region["value"]
            region["type"] = control.result_type
            region["value"] = {"start": value["start"], "end": value["end"], "text": value["text"],
                               control.result_type: value["labels"]}
        return spans.regions

    def answer_from_values(self, control: Control, values: list[Value]) -> Any:
        to_value = {o.result_value: o.value for o in control.options}
        return [{"text": v["text"], "label": to_value.get(label, label)}
                for v in values if isinstance(v.get("text"), str) and v["text"]
                for label in (v.get("labels") or [""])[:1]]

    def typical_answer(self, control: Control, text: str) -> Any:
        # About one two-word entity per 150 characters: a guess, which `plan --sample N` replaces by a measurement.
        quote = " ".join(text.split()[:2]) or "entity"
        return [{"text": quote, "label": middle_option(control)}] * max(1, min(50, len(text) // 150))

    def long_text(self, control: Control) -> str:
        return SPANS

    def combine(self, control: Control, answers: list[Any]) -> Combined:
        # Entities are merged by their offsets in the whole text (core/chunks.py), not by value.
        raise NotImplementedError("Labels answers are merged as spans, see core/chunks.merge_found")

    def report(self, control: Control) -> SpanReport:
        return SpanReport(control.name, control.kind, key=control.kind)

    def demo_answer(self, control: Control, inputs: RegionInputs) -> list[dict[str, str]]:
        # Quotes must be in the text, which the schema cannot say: capitalised phrases are.
        labels = [option.value for option in control.options]
        return [{"text": phrase, "label": pick(labels, phrase, control.name)}
                for phrase in capitalised_phrases(inputs.texts.get(control.to_name[0], ""))]


class PlacedLabelsSpec(LabelsSpec):
    """A span control whose regions point into its object's structure (HyperText's XPaths, Paragraphs' utterances):
    the quotes are found in the object's text, then its `place` turns those text spans into the structure's."""

    def add_regions(self, control: Control, answer: list[EntityAnswer], inputs: RegionInputs,
                    scores: list[float | None], report: RegionReport) -> None:
        spans = self.text_spans(control, answer, inputs, scores, report)
        if inputs.text_only:  # a long text's part: placed once the parts are merged
            report.regions.extend(spans)
        else:
            self.place(control, spans, inputs, report)

"""<ParagraphLabels> on <Paragraphs> (spans inside dialogue lines): quotes found in the utterances as
the model reads them ("author: text" lines, as for <Labels>), then stored the way Label Studio stores a
Paragraphs span: the index of the utterance where it starts and where it ends (`start`, `end`, as
strings, as its editor keeps them) and the offsets inside those utterances' texts (`startOffset`,
`endOffset`). A quote of a speaker's name only (outside every text) is dropped and counted."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

from ..agreement import SpanReport
from ..agreement.base import Value as ReportValue
from ..config_types import Control
from .base import RegionInputs, RegionReport, Value, make_region
from .demo_rules import pick
from .labels import PlacedLabelsSpec

# A place (utterance, offset) as one number for evaluation: ordered and overlapping as the places are.
_STRIDE = 1 << 32


@dataclass(frozen=True)
class _Utterance:
    start: int  # where its text starts in the text the model read
    text: str


def _utterances(lines: list[tuple[str, int, str]]) -> list[_Utterance]:
    utterances, at = [], 0
    for line, text_start, text in lines:
        utterances.append(_Utterance(at + text_start, text))
        at += len(line) + 1  # the line and its "\n"
    return utterances


def _place(utterances: list[_Utterance], start: int, end: int) -> dict[str, Any] | None:
    """The Paragraphs value of the read text's [start, end), or None when it covers no utterance text."""
    starts = [u.start for u in utterances]
    first = max(0, bisect_right(starts, start) - 1)
    last = max(0, bisect_right(starts, end - 1) - 1)
    start_offset = min(max(0, start - utterances[first].start), len(utterances[first].text))
    end_offset = min(max(0, end - utterances[last].start), len(utterances[last].text))
    if start_offset == len(utterances[first].text) and first < last:  # starts after its utterance's text
        first, start_offset = first + 1, 0
    if first > last or (first == last and start_offset >= end_offset):
        return None
    pieces = [u.text for u in utterances[first:last + 1]]
    pieces[-1] = pieces[-1][:end_offset]
    pieces[0] = pieces[0][start_offset:]
    return {"start": str(first), "end": str(last), "startOffset": start_offset, "endOffset": end_offset,
            "text": "\n".join(pieces)}


class ParagraphSpanReport(SpanReport):
    """Spans compared by their places (utterance, offset), as Label Studio stores them."""

    def add(self, gold: list[ReportValue], predicted: list[ReportValue] | None, text: str
            ) -> tuple[float | None, tuple[str, str]]:
        def linear(values: list[ReportValue] | None) -> list[ReportValue]:
            out = []
            for value in values or []:
                try:
                    start = int(value["start"]) * _STRIDE + int(value.get("startOffset") or 0)
                    end = int(value["end"]) * _STRIDE + int(value.get("endOffset") or 0)
                except (KeyError, TypeError, ValueError):
                    continue
                out.append({**value, "start": start, "end": end})
            return out

        return super().add(linear(gold), linear(predicted), "")


class ParagraphLabelsSpec(PlacedLabelsSpec):
    tag = "ParagraphLabels"
    object_tags = frozenset({"paragraphs"})

    def place(self, control: Control, spans: list[dict[str, Any]], inputs: RegionInputs, report: RegionReport
              ) -> None:
        lines = inputs.markup.get(control.to_name[0])  # `paragraph_lines` of the task's utterances
        utterances = _utterances(lines) if isinstance(lines, list) else []
        for index, region in enumerate(spans):
            place = _place(utterances, region["value"]["start"], region["value"]["end"]) if utterances else None
            if place is None:
                report.leave_out("span_outside_utterances")
                continue
            placed = make_region(control, index, {**place, "paragraphlabels": region["value"]["paragraphlabels"]},
                                 region.get("score"))
            if "meta" in region:
                placed["meta"] = region["meta"]
            report.regions.append(placed)

    def answer_from_values(self, control: Control, values: list[Value]) -> Any:
        return super().answer_from_values(control, [{**value, "labels": value.get("paragraphlabels")}
                                                    for value in values])

    def report(self, control: Control) -> ParagraphSpanReport:
        return ParagraphSpanReport(control.name, control.kind, key=control.kind)

    def demo_answer(self, control: Control, inputs: RegionInputs) -> list[dict[str, str]]:
        # Each utterance's text as a passage (a speaker's name is not one), its label by the demo's rule.
        lines = inputs.markup.get(control.to_name[0])
        labels = [option.value for option in control.options]
        return [{"text": text.strip(), "label": pick(labels, text, control.name)}
                for _line, _start, text in (lines if isinstance(lines, list) else []) if text.strip()]

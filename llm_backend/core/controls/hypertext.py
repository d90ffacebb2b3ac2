"""<HyperTextLabels> on <HyperText> (NER on a web page): quotes found in the page's visible text, as
for <Labels>, then placed in the page the way Label Studio stores HyperText spans: the XPaths of
the text nodes where a span starts and ends, the offsets inside them, and `globalOffsets` (offsets
in the page's text content, which evaluation compares). A span that cannot be placed (no markup came
with the task, as in a preview without a fetcher, or it is broken in a way the browser repairs
differently) is dropped and counted as "unplaced_span", never guessed. A long page's parts are
aligned as text and merged (engine/parts.py), then placed in the page (`place`).
"""

from __future__ import annotations

from typing import Any

from ..config_types import Control
from ..html_text import HtmlText
from .base import RegionInputs, RegionReport, Value, make_region
from .labels import PlacedLabelsSpec


class HyperTextLabelsSpec(PlacedLabelsSpec):
    tag = "HyperTextLabels"
    object_tags = frozenset({"hypertext"})

    def place(self, control: Control, spans: list[dict[str, Any]], inputs: RegionInputs, report: RegionReport
              ) -> None:
        markup = inputs.markup.get(control.to_name[0])
        page = HtmlText(markup) if isinstance(markup, str) else None
        if page is not None and page.text != inputs.texts.get(control.to_name[0]):
            page = None  # the text the model quoted is not the one these positions describe
        for index, region in enumerate(spans):
            value = region["value"]
            place = page.place(value["start"], value["end"]) if page is not None else None
            if place is None:
                report.leave_out("unplaced_span")
                continue
            placed = {"start": place.start, "startOffset": place.start_offset, "end": place.end,
                      "endOffset": place.end_offset, "globalOffsets": {"start": place.global_start,
                                                                       "end": place.global_end},
                      "text": value["text"], "hypertextlabels": value["hypertextlabels"]}
            report.regions.append(make_region(control, index, placed, region.get("score")))

    def answer_from_values(self, control: Control, values: list[Value]) -> Any:
        return super().answer_from_values(control, [{**value, "labels": value.get("hypertextlabels")}
                                                    for value in values])

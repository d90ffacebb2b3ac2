"""<Ranker> over a <List>: the list's items in order of relevance, or sorted into <Bucket>s.

The model answers with the items' ids, which the list shows it as "[id] title: body" lines (see
`objects.read_list`). The ids are not in the config, so the schema can only ask for strings; the
region keeps the ids the list has, in the model's order, and puts the ones it left out at the end
(a ranking in Label Studio holds every item). With buckets, each bucket holds the ids placed in it
and Label Studio keeps the others in the list's own column.
"""

from __future__ import annotations

from typing import Any

from ..agreement import ExactReport
from ..config_types import Control
from ..objects import list_item_ids
from .base import MISSING, ControlSpec, Dropped, RegionInputs, RegionReport, Validator, Value, drop, make_region


def _ids(value: object) -> list[str]:
    if not isinstance(value, list):
        raise ValueError("must be a list of item ids")
    return [str(item).strip().strip("[]") for item in value if str(item).strip()]


class RankerSpec(ControlSpec):
    tag = "Ranker"
    option_tag = "Bucket"
    option_attr = "name"
    options_required = False  # without buckets it ranks the whole list
    media = frozenset()
    object_tags = frozenset({"list"})
    reads_context = True  # the query or instruction the items are ranked by

    def buckets(self, control: Control) -> list[str]:
        return [option.value for option in control.options]

    def json_schema(self, control: Control) -> dict[str, Any]:
        ids = {"type": "array", "items": {"type": "string"}}
        buckets = self.buckets(control)
        if not buckets:
            return ids
        return {"type": "object", "properties": {bucket: ids for bucket in buckets}, "required": buckets,
                "additionalProperties": False}

    def validator(self, control: Control) -> Validator:
        buckets = self.buckets(control)

        def validate(value: object, dropped: list[Dropped]) -> list[str] | dict[str, list[str]]:
            if not buckets:
                return _ids(value)
            if not isinstance(value, dict):
                raise ValueError(f"must be an object with a list of item ids for each bucket: {', '.join(buckets)}")
            for key in value:
                if key not in buckets:
                    drop(dropped, control, key, "not a bucket of this ranker")
            return {bucket: _ids(value.get(bucket) or []) for bucket in buckets}

        return validate

    def prompt_vars(self, control: Control) -> dict[str, Any]:
        return {"buckets": self.buckets(control)}

    def add_regions(self, control: Control, answer: Any, inputs: RegionInputs, scores: list[float | None],
                    report: RegionReport) -> None:
        known = list_item_ids(inputs.texts.get(control.to_name[0], ""))
        if isinstance(answer, dict):
            placed: set[str] = set()
            ranker = {}
            for bucket, ids in answer.items():
                ranker[bucket] = [i for i in dict.fromkeys(ids) if i in known and i not in placed]
                placed.update(ranker[bucket])
        else:
            ranked = [i for i in dict.fromkeys(answer) if i in known]
            ranker = {control.name: ranked + [i for i in known if i not in ranked]}
        if any(ranker.values()):
            report.regions.append(make_region(control, 0, {"ranker": ranker}, scores[0] if scores else None))

    def answer_from_values(self, control: Control, values: list[Value]) -> Any:
        ranker = next((value["ranker"] for value in values if isinstance(value.get("ranker"), dict)), None)
        if ranker is None:
            return MISSING
        buckets = self.buckets(control)
        if not buckets:
            return [str(i) for i in ranker.get(control.name) or []]
        return {bucket: [str(i) for i in ranker.get(bucket) or []] for bucket in buckets}

    def typical_answer(self, control: Control, text: str) -> Any:
        ids = list_item_ids(text)[:10] or ["1", "2", "3"]
        buckets = self.buckets(control)
        return {bucket: ids[index::len(buckets)] for index, bucket in enumerate(buckets)} if buckets else ids

    def demo_answer(self, control: Control, inputs: RegionInputs) -> Any:
        # The list's own order (the demo model has no opinion); with buckets, every item in the first.
        ids = list_item_ids(inputs.texts.get(control.to_name[0], ""))
        buckets = self.buckets(control)
        return {bucket: ids if index == 0 else [] for index, bucket in enumerate(buckets)} if buckets else ids

    def report(self, control: Control) -> ExactReport:
        return ExactReport(control.name, control.kind, key="ranker")

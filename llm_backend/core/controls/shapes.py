"""<RectangleLabels> and <KeyPointLabels> on images.

The model answers in pixels of the image it was shown (models locate things in pixels far better
than in percentages); regions are stored in Label Studio's percent of the image, with the
original size alongside.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..agreement import ShapeReport
from ..config_types import Control
from ..objects import IMAGE
from .base import (
    MISSING,
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
from .demo_rules import pick

BOX = ("x_min", "y_min", "x_max", "y_max")
POINT = ("x", "y")


@dataclass(frozen=True)
class BoxAnswer:
    label: str
    x_min: float
    y_min: float
    x_max: float
    y_max: float
    source_index: int = field(default=-1, compare=False)


@dataclass(frozen=True)
class PointAnswer:
    label: str
    x: float
    y: float
    source_index: int = field(default=-1, compare=False)


def _percent(value: float, size: int) -> float:
    return round(value / size * 100, 4)


def box_value(box: BoxAnswer, width: int, height: int) -> Value | None:
    """Pixels of the image the model saw -> Label Studio percent, clipped; None for a degenerate box."""
    x0, x1 = sorted((min(max(box.x_min, 0.0), width), min(max(box.x_max, 0.0), width)))
    y0, y1 = sorted((min(max(box.y_min, 0.0), height), min(max(box.y_max, 0.0), height)))
    if x1 - x0 < 1 or y1 - y0 < 1:  # nothing left inside the image, or thinner than a pixel
        return None
    return {"x": _percent(x0, width), "y": _percent(y0, height), "width": _percent(x1 - x0, width),
            "height": _percent(y1 - y0, height), "rotation": 0, "rectanglelabels": [box.label]}


def point_value(point: PointAnswer, width: int, height: int, stroke: float) -> Value | None:
    if not (0 <= point.x <= width and 0 <= point.y <= height):
        return None  # a point outside the image is a mistake, not something to clip onto the border
    return {"x": _percent(point.x, width), "y": _percent(point.y, height), "width": _percent(stroke, width),
            "keypointlabels": [point.label]}


def _coordinates(item: dict[str, Any], names: tuple[str, ...]) -> tuple[float, ...] | None:
    values = []
    for name in names:
        raw = item.get(name)
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
            return None
        values.append(float(raw))
    return tuple(values)


class _ShapesSpec(ControlSpec):
    score_style = "items"
    option_tag = "Label"
    media = frozenset({IMAGE})
    names: tuple[str, ...] = ()

    def multiple(self, attrs: dict[str, str]) -> bool:
        return True

    def json_schema(self, control: Control) -> dict[str, Any]:
        return {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"label": {"type": "string", "enum": [option.value for option in control.options]},
                               **{name: {"type": "number"} for name in self.names}},
                "required": ["label", *self.names],
                "additionalProperties": False,
            },
        }

    def shape(self, label: str, coordinates: tuple[float, ...], index: int) -> Any:
        raise NotImplementedError

    def value(self, control: Control, shape: Any, width: int, height: int) -> Value | None:
        raise NotImplementedError

    def validator(self, control: Control) -> Validator:
        table = option_lookup(control.options)

        def validate(value: object, dropped: list[Dropped]) -> list[Any]:
            if not isinstance(value, (list, tuple)):
                raise ValueError("must be a list of objects")
            shapes: list[Any] = []
            for index, item in enumerate(value):
                label = item.get("label") if isinstance(item, dict) else None
                if not isinstance(label, str) or option_key(label) not in table:
                    drop(dropped, control, item, "label not in the config")
                    continue
                coordinates = _coordinates(item, self.names)
                if coordinates is None:
                    drop(dropped, control, item, "coordinates missing or not numbers")
                    continue
                shapes.append(self.shape(table[option_key(label)], coordinates, index))
            return shapes

        return validate

    def add_regions(self, control: Control, answer: list[Any], inputs: RegionInputs, scores: list[float | None],
                    report: RegionReport) -> None:
        width, height = inputs.image_sizes[control.to_name[0]]
        for index, shape in enumerate(answer):
            value = self.value(control, shape, width, height)
            if value is None:
                report.leave_out("empty_shape")  # under a pixel, or outside the image
                continue
            region = make_region(control, index, value, item_score(scores, shape.source_index))
            region.update(original_width=width, original_height=height, image_rotation=0)
            report.regions.append(region)

    def pixels(self, value: Value, width: float, height: float) -> dict[str, float]:
        raise NotImplementedError

    def typical_answer(self, control: Control, text: str) -> Any:
        # Three shapes with three-digit pixel coordinates.
        return [{"label": middle_option(control), **{name: 100 + 10 * i for i, name in enumerate(self.names)}}] * 3

    def demo_answer(self, control: Control, inputs: RegionInputs) -> list[dict[str, Any]]:
        # The box must lie inside the image, whose size the schema cannot know: the middle half of it
        # (a key point at its top-left corner), in pixels like a model's answer.
        width, height = inputs.image_sizes.get(control.to_name[0], (100, 100))
        label = pick([option.value for option in control.options], "", control.name)
        return [{"label": label, **self.pixels({"x": 25, "y": 25, "width": 50, "height": 50}, width, height)}]

    def answer_from_regions(self, control: Control, regions: list[dict[str, Any]]) -> Any:
        to_value = {o.result_value: o.value for o in control.options}
        answer = []
        for region in regions:
            value = region.get("value") or {}
            width, height = region.get("original_width"), region.get("original_height")
            if not isinstance(width, (int, float)) or not isinstance(height, (int, float)):
                return MISSING  # percent alone does not say where the pixels are
            try:
                coordinates = self.pixels(value, width, height)
            except (TypeError, ValueError):
                return MISSING
            for label in (value.get(control.kind) or [])[:1]:
                answer.append({"label": to_value.get(label, label), **coordinates})
        return answer


class RectanglesSpec(_ShapesSpec):
    tag = "RectangleLabels"
    names = BOX

    def shape(self, label: str, coordinates: tuple[float, ...], index: int) -> BoxAnswer:
        return BoxAnswer(label, *coordinates, source_index=index)

    def value(self, control: Control, shape: BoxAnswer, width: int, height: int) -> Value | None:
        return box_value(shape, width, height)

    def pixels(self, value: Value, width: float, height: float) -> dict[str, float]:
        x, y = float(value["x"]) * width / 100, float(value["y"]) * height / 100
        return {"x_min": round(x, 1), "y_min": round(y, 1),
                "x_max": round(x + float(value["width"]) * width / 100, 1),
                "y_max": round(y + float(value["height"]) * height / 100, 1)}

    def report(self, control: Control) -> ShapeReport:
        return ShapeReport(control.name, control.kind, key="rectanglelabels")


class KeyPointsSpec(_ShapesSpec):
    tag = "KeyPointLabels"
    names = POINT

    def shape(self, label: str, coordinates: tuple[float, ...], index: int) -> PointAnswer:
        return PointAnswer(label, *coordinates, source_index=index)

    def value(self, control: Control, shape: PointAnswer, width: int, height: int) -> Value | None:
        stroke = float(control.attrs.get("strokeWidth", "1") or 1)
        return point_value(shape, width, height, stroke)

    def pixels(self, value: Value, width: float, height: float) -> dict[str, float]:
        return {"x": round(float(value["x"]) * width / 100, 1), "y": round(float(value["y"]) * height / 100, 1)}

    def report(self, control: Control) -> ShapeReport:
        return ShapeReport(control.name, control.kind, key="keypointlabels", points=True)

"""A validated answer -> Label Studio result regions, one list per task.

Only the config's controls and values can appear here: the answer was validated against the
config, and every region is built from the config's own names. NER quotes become offsets
through the aligner; quotes it cannot place are dropped and counted, never guessed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from .align import AlignOptions, Entity, Span, align
from .label_config import Control, ControlKind, LabelConfig
from .schema import BoxAnswer, EntityAnswer, PointAnswer

log = logging.getLogger(__name__)


@dataclass
class RegionReport:
    regions: list[dict[str, Any]] = field(default_factory=list)
    unaligned: list[Span] = field(default_factory=list)
    match_kinds: dict[str, int] = field(default_factory=dict)
    dropped_shapes: int = 0


def _percent(value: float, size: int) -> float:
    return round(value / size * 100, 4)


def box_value(box: BoxAnswer, width: int, height: int) -> dict[str, Any] | None:
    """Pixels of the image the model saw -> Label Studio percent, clipped; None for a degenerate box."""
    x0, x1 = sorted((min(max(box.x_min, 0.0), width), min(max(box.x_max, 0.0), width)))
    y0, y1 = sorted((min(max(box.y_min, 0.0), height), min(max(box.y_max, 0.0), height)))
    if x1 - x0 < 1 or y1 - y0 < 1:  # nothing left inside the image, or thinner than a pixel
        return None
    return {"x": _percent(x0, width), "y": _percent(y0, height), "width": _percent(x1 - x0, width),
            "height": _percent(y1 - y0, height), "rotation": 0, "rectanglelabels": [box.label]}


def point_value(point: PointAnswer, width: int, height: int, stroke: float) -> dict[str, Any] | None:
    if not (0 <= point.x <= width and 0 <= point.y <= height):
        return None  # a point outside the image is a mistake, not something to clip onto the border
    return {"x": _percent(point.x, width), "y": _percent(point.y, height), "width": _percent(stroke, width),
            "keypointlabels": [point.label]}


def region_id(control: Control, index: int, value: dict[str, Any]) -> str:
    # Deterministic, so the same answer gives byte-identical predictions (cache re-runs, tests).
    raw = json.dumps([control.name, index, value], sort_keys=True, ensure_ascii=False)
    return hashlib.sha1(raw.encode("utf-8")).hexdigest()[:10]


def _region(control: Control, index: int, value: dict[str, Any], score: float | None = None) -> dict[str, Any]:
    region: dict[str, Any] = {
        "id": region_id(control, index, value),
        "from_name": control.name,
        "to_name": control.to_name[0],
        "type": control.result_type,
        "value": value,
    }
    if score is not None:
        region["score"] = score
    return region


def _values(control: Control, answer: Any) -> list[dict[str, Any]]:
    if control.kind is ControlKind.CHOICES:
        chosen = answer if isinstance(answer, list) else [answer]
        return [{"choices": chosen}] if chosen else []
    if control.kind is ControlKind.TEXTAREA:
        return [{"text": answer}] if answer else []
    if control.kind is ControlKind.RATING:
        return [{"rating": answer}]
    if control.kind is ControlKind.NUMBER:
        return [{"number": answer}]
    if control.kind is ControlKind.TAXONOMY:
        return [{"taxonomy": answer}] if answer else []
    if control.kind is ControlKind.DATETIME:
        return [{"datetime": answer}]
    raise ValueError(f"no region builder for {control.kind}")


def build_regions(
    config: LabelConfig,
    values: dict[str, Any],
    texts: dict[str, str],
    options: AlignOptions,
    scores: dict[str, list[float | None]] | None = None,
    image_sizes: dict[str, tuple[int, int]] | None = None,
) -> RegionReport:
    """Regions for every control; `scores` are token-probability scores by control (see scores.py);
    `image_sizes` the (width, height) of each image object, which shape coordinates refer to."""
    scores = scores or {}
    report = RegionReport()
    for control in config.controls:
        answer = values.get(control.name)
        control_scores = scores.get(control.name, [])
        if control.kind in (ControlKind.RECTANGLES, ControlKind.KEYPOINTS):
            width, height = (image_sizes or {})[control.to_name[0]]
            stroke = float(control.attrs.get("strokeWidth", "1") or 1)
            for index, shape in enumerate(answer or []):
                if isinstance(shape, BoxAnswer):
                    value = box_value(shape, width, height)
                else:
                    value = point_value(shape, width, height, stroke)
                if value is None:
                    report.dropped_shapes += 1
                    continue
                source = shape.source_index
                score = control_scores[source] if 0 <= source < len(control_scores) else None
                region = _region(control, index, value, score)
                region.update(original_width=width, original_height=height, image_rotation=0)
                report.regions.append(region)
            continue
        if control.kind is ControlKind.LABELS:
            entities: list[EntityAnswer] = answer or []
            quoted = [Entity(e.text, e.label) for e in entities]
            by_entity = {id(entity): answer_entity for entity, answer_entity in zip(quoted, entities, strict=True)}
            spans = align(texts[control.to_name[0]], quoted, options)
            for index, span in enumerate(spans):
                if not span.aligned:
                    report.unaligned.append(span)
                    log.info("dropped entity %r (%s): not found in %s", span.entity.text[:80], span.entity.label,
                             control.to_name[0])
                    continue
                report.match_kinds[span.kind.value] = report.match_kinds.get(span.kind.value, 0) + 1
                value = {"start": span.start, "end": span.end, "text": span.text, "labels": [span.entity.label]}
                source = by_entity[id(span.entity)].source_index
                score = control_scores[source] if 0 <= source < len(control_scores) else None
                if score is None:
                    # No token scores: the alignment's quality is the evidence we have (exact 1.0, fuzzy its ratio).
                    score = round(span.score / 100, 4)
                report.regions.append(_region(control, index, value, score))
            continue
        for index, value in enumerate(_values(control, answer)):
            report.regions.append(_region(control, index, value, control_scores[0] if control_scores else None))
    return report

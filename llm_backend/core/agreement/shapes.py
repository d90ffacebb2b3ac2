"""RectangleLabels and KeyPointLabels: shapes matched one to one."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .base import NONE_LABEL, ControlReport, Scores, Value, show


@dataclass(frozen=True)
class Shape:
    """A box or point in percent of the image, as Label Studio stores it."""

    label: str
    x: float
    y: float
    width: float = 0.0
    height: float = 0.0


def _iou(a: Shape, b: Shape) -> float:
    across = min(a.x + a.width, b.x + b.width) - max(a.x, b.x)
    down = min(a.y + a.height, b.y + b.height) - max(a.y, b.y)
    if across <= 0 or down <= 0:
        return 0.0
    inter = across * down
    return inter / (a.width * a.height + b.width * b.height - inter)


@dataclass
class ShapeReport(ControlReport):
    """RectangleLabels and KeyPointLabels: shapes matched one to one, same label, largest overlap first."""

    key: str = "rectanglelabels"
    points: bool = False
    matched: Scores = field(default_factory=Scores)

    headline_name: ClassVar[str] = "F1"
    IOU: ClassVar[float] = 0.5  # boxes: the usual detection threshold
    DISTANCE: ClassVar[float] = 5.0  # points: within 5% of the image's width and height

    def note(self) -> str:
        if self.points:
            return f"a point matches an annotated one with the same label within {self.DISTANCE:g}% of the image."
        return f"a box matches an annotated one with the same label when IoU >= {self.IOU:g}."

    @property
    def headline(self) -> float | None:
        return self.matched.f1

    @property
    def parts(self) -> tuple[float, float]:
        return self.matched.f1_parts

    def _shapes(self, values: list[Value] | None) -> list[Shape]:
        shapes = []
        for value in values or []:
            try:
                numbers = [float(value.get(name, 0.0)) for name in ("x", "y", "width", "height")]
            except (TypeError, ValueError):
                continue
            for label in value.get(self.key) or []:
                shapes.append(Shape(str(label), *numbers))
        return shapes

    def _closeness(self, a: Shape, b: Shape) -> float:
        if self.points:
            distance = math.hypot(a.x - b.x, a.y - b.y)
            return 1.0 - distance / self.DISTANCE if distance <= self.DISTANCE else 0.0
        iou = _iou(a, b)
        return iou if iou >= self.IOU else 0.0

    def add(self, gold: list[Value], predicted: list[Value] | None, text: str) -> tuple[float | None, tuple[str, str]]:
        want, got = self._shapes(gold), self._shapes(predicted)
        self.tasks += 1
        pairs = sorted(((self._closeness(g, p), gi, pi) for gi, g in enumerate(want) for pi, p in enumerate(got)
                        if g.label == p.label), reverse=True)
        used_gold: set[int] = set()
        used_predicted: set[int] = set()
        for closeness, gi, pi in pairs:
            if closeness > 0 and gi not in used_gold and pi not in used_predicted:
                used_gold.add(gi)
                used_predicted.add(pi)
        self.matched.add(len(used_gold), len(want), len(got))
        agreement = 2 * len(used_gold) / (len(want) + len(got)) if want or got else 1.0

        def listed(shapes: list[Shape]) -> str:
            return "; ".join(f"{s.label} at {s.x:.0f},{s.y:.0f}" for s in shapes) or NONE_LABEL

        return agreement, (listed(want), listed(got))

    def metrics(self) -> dict[str, Any]:
        return {"matched": self.matched.to_dict()}

    def summary(self) -> str:
        return (f"{self.control} ({self.kind}): F1 {show(self.matched.f1)}, precision {show(self.matched.precision)},"
                f" recall {show(self.matched.recall)} ({self.matched.gold} annotated, {self.matched.predicted} "
                "predicted)")

    def facts(self) -> list[tuple[str, str]]:
        return [("F1", show(self.matched.f1)), ("precision", show(self.matched.precision)),
                ("recall", show(self.matched.recall))]

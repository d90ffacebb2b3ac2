"""How far a prediction agrees with an annotation, one report kind per way of measuring it.

Each control family (see `controls/`) picks the report that fits its values:

    SetReport      Choices, Taxonomy: accuracy of the chosen set, per-class P/R/F1, and for a
                   single choice a confusion matrix
    SpanReport     Labels (NER): span P/R/F1, exact (same start, end, label) and overlap (same
                   label, shared characters, each span matched once), per label
    TextReport     TextArea: mean string similarity, share of identical texts
    NumberReport   Rating, Number: accuracy and mean absolute error
    ExactReport    DateTime: accuracy of the exact value
    ShapeReport    RectangleLabels (IoU >= 0.5), KeyPointLabels (within 5% of the image): P/R/F1

A report sees one task at a time: `add(gold, predicted, text)` takes this control's region values
on each side (`predicted` is None when the prediction failed: it counts as empty) and returns the
task's agreement (0..1, None when there is nothing to compare) with the two sides as shown to a
reader. `summary()`, `facts()` and `tables()` describe it for the text and HTML renderers.
"""

from __future__ import annotations

from .base import NONE_LABEL, ControlReport, Scores, Table, show
from .sets import SetReport
from .shapes import ShapeReport
from .spans import SpanReport, match_exact, match_overlap
from .values import ExactReport, NumberReport, TextReport

__all__ = [
    "NONE_LABEL", "ControlReport", "ExactReport", "NumberReport", "Scores", "SetReport", "ShapeReport", "SpanReport",
    "Table", "TextReport", "match_exact", "match_overlap", "show",
]

"""Every Label Studio control this backend predicts, one module per family.

    choices.py    Choices
    labels.py     Labels (NER on text)
    text.py       TextArea
    scalar.py     Rating, Number, DateTime
    taxonomy.py   Taxonomy
    shapes.py     RectangleLabels, KeyPointLabels (on images)

`spec_for(kind)` is the only lookup; a kind without a spec is an error here, never a guess
elsewhere. To add a control: a `ControlKind` in `config.py`, a spec in a module here listed in
`SPECS`, a template `prompts/controls/<kind>.j2`, and their tests.
"""

from __future__ import annotations

from ..config import ControlKind
from .base import MISSING, ControlSpec, Dropped, RegionInputs, RegionReport
from .choices import ChoicesSpec
from .labels import EntityAnswer, LabelsSpec
from .scalar import DateTimeSpec, NumberSpec, RatingSpec
from .shapes import BoxAnswer, KeyPointsSpec, PointAnswer, RectanglesSpec
from .taxonomy import TaxonomySpec
from .text import TextAreaSpec

__all__ = [
    "MISSING", "SPECS", "BoxAnswer", "ControlSpec", "Dropped", "EntityAnswer", "PointAnswer", "RegionInputs",
    "RegionReport", "spec_for",
]

SPECS: dict[ControlKind, ControlSpec] = {
    kind: spec
    for spec in (ChoicesSpec(), LabelsSpec(), TextAreaSpec(), RatingSpec(), NumberSpec(), DateTimeSpec(),
                 TaxonomySpec(), RectanglesSpec(), KeyPointsSpec())
    for kind in spec.kinds
}


def spec_for(kind: ControlKind) -> ControlSpec:
    try:
        return SPECS[kind]
    except KeyError:
        raise LookupError(f"no ControlSpec for {kind!r}: add one in llm_backend/core/controls/") from None

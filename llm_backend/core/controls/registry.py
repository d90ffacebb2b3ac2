"""The table of controls: every spec this backend predicts, looked up by its kind (lower-case tag).

The config parser, the schema, prompts, regions, scores, long texts and evaluation all find a
control's behaviour here; adding a control is a spec module, a line below, a template
`prompts/controls/<kind>.j2` and a case in tests/test_controls.py.
"""

from __future__ import annotations

from .base import ControlSpec
from .chat import ChatMessageSpec
from .choices import ChoicesSpec
from .conversation import ChatSpec
from .hypertext import HyperTextLabelsSpec
from .labels import LabelsSpec
from .pairwise import PairwiseSpec
from .paragraphs import ParagraphLabelsSpec
from .ranker import RankerSpec
from .scalar import DateTimeSpec, NumberSpec, RatingSpec
from .shapes import KeyPointsSpec, RectanglesSpec
from .taxonomy import TaxonomySpec
from .text import TextAreaSpec

SPECS: dict[str, ControlSpec] = {}
SPECS.update({spec.kind: spec for spec in (
    ChoicesSpec(), LabelsSpec(), TextAreaSpec(), RatingSpec(), NumberSpec(), DateTimeSpec(), TaxonomySpec(),
    RectanglesSpec(), KeyPointsSpec(), PairwiseSpec(), RankerSpec(), HyperTextLabelsSpec(),
    ParagraphLabelsSpec(), ChatSpec(),
    ChatMessageSpec(SPECS),  # a control asked per Chat message finds its own spec here
)})


def spec_for(kind: str) -> ControlSpec:
    try:
        return SPECS[kind]
    except KeyError:
        raise LookupError(f"no ControlSpec for {kind!r}: add one in llm_backend/core/controls/registry.py") from None

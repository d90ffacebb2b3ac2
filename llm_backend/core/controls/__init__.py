"""Every Label Studio control this backend predicts, one module per family.

    choices.py    Choices
    labels.py     Labels (NER on text)
    text.py       TextArea
    scalar.py     Rating, Number, DateTime
    taxonomy.py   Taxonomy
    shapes.py     RectangleLabels, KeyPointLabels (on images)
    hypertext.py  HyperTextLabels (NER on a web page)
    paragraphs.py ParagraphLabels (spans in dialogue utterances)
    pairwise.py   Pairwise; ranker.py Ranker
    chat.py       a control asked about each message of a Chat (perRegion)
    conversation.py  a Chat that is its own control: the conversation written

    scoring.py    how decisions are scored (token log-probabilities, samples), by `score_style`

`registry.py` lists them; `spec_for(kind)` is the only lookup, and a kind without a spec is an
error there, never a guess elsewhere. To add a control: a spec module here (its `tag`, the objects
it reads, schema, validation, regions), its line in `registry.py`, a template
`prompts/controls/<kind>.j2`, and its case in tests/test_controls.py.
"""

from __future__ import annotations

from .base import MISSING, ControlSpec, Dropped, RegionInputs, RegionReport
from .labels import EntityAnswer
from .registry import SPECS, spec_for
from .shapes import BoxAnswer, PointAnswer

__all__ = [
    "MISSING", "SPECS", "BoxAnswer", "ControlSpec", "Dropped", "EntityAnswer", "PointAnswer", "RegionInputs",
    "RegionReport", "spec_for",
]

"""How a control's decisions are scored: one strategy per `ControlSpec.score_style`.

Token scores: where a decision sits in the raw reply and how its tokens turn into a probability:
"value" (the value itself: exp(sum) of its tokens; an array scores as its least sure element),
"items" (each list item's "label", one score per item in the reply's order), "text" (free text:
exp(mean), per-token confidence, since a sum would punish length).

Sample scores (CONFIDENCE=samples): the share of sampled answers that made the same decision; for
"items", per item, the share of samples that hold that same item.

A spec with another notion of its decisions overrides `token_scores` or `sample_scores` instead.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from ..reply_tokens import CharRange, ReplyTokens

TokenScorer = Callable[[ReplyTokens, CharRange], list[float | None]]
SampleScorer = Callable[[Any, list[Any]], list[float | None]]


def value_tokens(reply: ReplyTokens, span: CharRange) -> list[float | None]:
    if reply.is_array(span):
        items = [reply.probability(element) for _value, element in reply.elements(span)]
        known = [item for item in items if item is not None]
        return [min(known) if known else None]
    return [reply.probability(span)]


def item_label_tokens(reply: ReplyTokens, span: CharRange) -> list[float | None]:
    scores: list[float | None] = []
    for _value, element in reply.elements(span):
        label = reply.key_span("label", element[0], element[1])
        scores.append(reply.probability(label) if label else None)
    return scores


def text_tokens(reply: ReplyTokens, span: CharRange) -> list[float | None]:
    return [reply.probability(span, mean=True)]


TOKEN_SCORERS: dict[str, TokenScorer] = {"value": value_tokens, "items": item_label_tokens, "text": text_tokens}


def canonical(value: Any) -> str:
    """A decision as comparable text: lists as sets (the order of chosen options carries no meaning)."""
    if isinstance(value, (list, tuple)):
        return json.dumps(sorted(canonical(item) for item in value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return json.dumps(value, sort_keys=True, default=str)


def same_decision(mine: Any, theirs: list[Any]) -> list[float | None]:
    """The share of samples whose value is the same decision (`None`: a sample that could not be read)."""
    key = canonical(mine)
    return [round(sum(other is not None and canonical(other) == key for other in theirs) / len(theirs), 4)]


def same_items(mine: Any, theirs: list[Any]) -> list[float | None]:
    """Per item, at its position in the reply (`source_index`, what token scores give), the share of samples
    that hold the same item."""
    size = max((getattr(item, "source_index", -1) for item in mine), default=-1) + 1
    scores: list[float | None] = [None] * size
    for item in mine:
        agree = sum(1 for other in theirs if other is not None and item in other)
        if 0 <= item.source_index < size:
            scores[item.source_index] = round(agree / len(theirs), 4)
    return scores


SAMPLE_SCORERS: dict[str, SampleScorer] = {"value": same_decision, "items": same_items, "text": same_decision}

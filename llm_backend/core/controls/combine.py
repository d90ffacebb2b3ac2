"""One answer for a whole long text from the answers its parts gave (see engine/longtext.py).

A text too long for the model's context is asked in parts; a control about the whole document
(a sentiment, a rating, a date) then has one answer per part, and its spec's `combine` turns them
into one. The strategies, by name (the name is what the task's log line and the README show):

    majority   the value most parts gave; a tie goes to the value an earlier part gave first
               (single Choices, DateTime)
    union      every value any part gave, in the order they first appeared (multiple Choices, Taxonomy)
    median     the middle value, one a part actually gave (Rating, Number)
    summary    a model call over the parts' texts: a summary of summaries (TextArea; engine's job)
    spans      each part's entities at their offsets in the whole text (Labels; engine's job)

`agreement` is the share of parts whose answer equals the combined one (majority and median), the
region's score when the model gave no token probabilities to score it by.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MAJORITY, UNION, MEDIAN, SUMMARY, SPANS = "majority", "union", "median", "summary", "spans"


@dataclass(frozen=True)
class Combined:
    value: Any
    agreement: float | None = None


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def majority(answers: Sequence[Any]) -> Combined:
    if not answers:
        raise ValueError("nothing to combine")
    counts: dict[str, int] = {}
    first: dict[str, Any] = {}
    for answer in answers:
        key = _key(answer)
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, answer)
    best = max(counts, key=lambda key: counts[key])  # max keeps the first of equal counts: the earliest value
    return Combined(first[best], round(counts[best] / len(answers), 4))


def union(answers: Sequence[list[Any]]) -> Combined:
    chosen: dict[str, Any] = {}
    for answer in answers:
        for item in answer:
            chosen.setdefault(_key(item), item)
    return Combined(list(chosen.values()))


def median(answers: Sequence[Any]) -> Combined:
    if not answers:
        raise ValueError("nothing to combine")
    ordered = sorted(answers)
    middle = ordered[(len(ordered) - 1) // 2]  # the lower median: a value a part gave, valid for the control
    return Combined(middle, round(sum(answer == middle for answer in answers) / len(answers), 4))

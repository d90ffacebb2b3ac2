"""Confidence scores from token log-probabilities, located on the values they decided.

For each control we find, in the raw JSON reply, the characters of the value the model chose (the
choice string, each entity's label, the rating...), take the tokens covering them, and turn their
log-probabilities into a probability: exp(sum) for a label or a number (the probability of that
exact value given the prompt), exp(mean) for free text (per-token confidence; a sum would punish
length). The task's score is the lowest region score: the decision most worth a reviewer's look.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

from .config import LabelConfig
from .controls import spec_for

_decoder = json.JSONDecoder()
CharRange = tuple[int, int]  # [start, end) in the raw reply


def token_offsets(logprobs: list[dict[str, Any]] | None, content: str) -> list[tuple[int, int, float]] | None:
    """(start, end, logprob) per token, or None when the tokens do not spell the content."""
    if not logprobs:
        return None
    spans, position, parts = [], 0, []
    for item in logprobs:
        token, logprob = item.get("token"), item.get("logprob")
        if not isinstance(token, str) or not isinstance(logprob, (int, float)) or not math.isfinite(logprob):
            return None
        spans.append((position, position + len(token), float(logprob)))
        position += len(token)
        parts.append(token)
    return spans if "".join(parts) == content else None


def _probability(tokens: list[tuple[int, int, float]], span: CharRange, mean: bool = False) -> float | None:
    values = [lp for start, end, lp in tokens if start < span[1] and end > span[0]]
    if not values:
        return None
    total = sum(values) / len(values) if mean else sum(values)
    return round(math.exp(total), 4)


def _skip_space(content: str, index: int) -> int:
    while index < len(content) and content[index] in " \t\r\n":
        index += 1
    return index


def _value_at(content: str, index: int) -> tuple[Any, CharRange]:
    """The JSON value starting at `index` (after whitespace) and its span; strings without quotes."""
    index = _skip_space(content, index)
    value, end = _decoder.raw_decode(content, index)
    return value, ((index + 1, end - 1) if isinstance(value, str) else (index, end))


def _elements(content: str, span: CharRange) -> Iterator[tuple[Any, CharRange]]:
    """The elements of the array occupying `span`, with their spans."""
    index = _skip_space(content, span[0] + 1)
    while index < span[1] - 1:
        value, element = _value_at(content, index)
        yield value, element
        index = _skip_space(content, element[1] + (1 if isinstance(value, str) else 0))
        if index < len(content) and content[index] == ",":
            index += 1


def _key_span(content: str, name: str, start: int = 0, end: int | None = None) -> CharRange | None:
    match = re.compile(re.escape(json.dumps(name)) + r"\s*:").search(content, start, end or len(content))
    if match is None:
        return None
    try:
        _value, span = _value_at(content, match.end())
    except ValueError:
        return None
    return span


def control_scores(config: LabelConfig, content: str, logprobs: list[dict[str, Any]] | None,
                   start: int | None = None) -> dict[str, list[float | None]]:
    """{control name: [score per decision]}; for Labels, one score per entity in the reply's order.

    `start` is where the answer object begins in `content` (after a `<think>` block, a preamble...)."""
    tokens = token_offsets(logprobs, content)
    if tokens is None:
        return {}
    top = content.find("{") if start is None else start
    scores: dict[str, list[float | None]] = {}
    for control in config.controls:
        try:
            span = _key_span(content, control.name, max(top, 0))
            if span is None:
                continue
            style = spec_for(control.kind).score_style
            if style == "items":
                entity_scores: list[float | None] = []
                for _value, element in _elements(content, span):
                    label = _key_span(content, "label", element[0], element[1])
                    entity_scores.append(_probability(tokens, label) if label else None)
                scores[control.name] = entity_scores
            elif style == "text":
                scores[control.name] = [_probability(tokens, span, mean=True)]
            elif content[span[0]] == "[":
                items = [_probability(tokens, element) for _value, element in _elements(content, span)]
                known = [item for item in items if item is not None]
                scores[control.name] = [min(known) if known else None]
            else:
                scores[control.name] = [_probability(tokens, span)]
        except (ValueError, IndexError):
            continue  # a reply we cannot walk gets no score rather than a wrong one
    return scores

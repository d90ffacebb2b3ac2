"""A raw reply's tokens laid over its JSON: which tokens spelled a value, and how sure the model was of them.

The pieces each control's scoring strategy (core/controls/scoring.py) is built from: the character
span of a key's value or of an array's elements in the raw reply, and the probability of the tokens
covering a span.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

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


def _skip_space(content: str, index: int) -> int:
    while index < len(content) and content[index] in " \t\r\n":
        index += 1
    return index


def _value_at(content: str, index: int) -> tuple[Any, CharRange]:
    """The JSON value starting at `index` (after whitespace) and its span; strings without quotes."""
    index = _skip_space(content, index)
    value, end = _decoder.raw_decode(content, index)
    return value, ((index + 1, end - 1) if isinstance(value, str) else (index, end))


@dataclass(frozen=True)
class ReplyTokens:
    """A reply's content and its tokens' (start, end, logprob), as `token_offsets` gives them."""

    content: str
    tokens: list[tuple[int, int, float]]

    def probability(self, span: CharRange, mean: bool = False) -> float | None:
        """exp(sum) of the logprobs of the tokens covering `span` (exp(mean) with `mean`); None: no token."""
        values = [lp for start, end, lp in self.tokens if start < span[1] and end > span[0]]
        if not values:
            return None
        total = sum(values) / len(values) if mean else sum(values)
        return round(math.exp(total), 4)

    def is_array(self, span: CharRange) -> bool:
        return self.content[span[0]] == "["

    def elements(self, span: CharRange) -> Iterator[tuple[Any, CharRange]]:
        """The elements of the array occupying `span`, with their spans."""
        content = self.content
        index = _skip_space(content, span[0] + 1)
        while index < span[1] - 1:
            value, element = _value_at(content, index)
            yield value, element
            index = _skip_space(content, element[1] + (1 if isinstance(value, str) else 0))
            if index < len(content) and content[index] == ",":
                index += 1

    def key_span(self, name: str, start: int = 0, end: int | None = None) -> CharRange | None:
        """The span of the value of the first key `name` in [start, end), or None."""
        match = re.compile(re.escape(json.dumps(name)) + r"\s*:").search(self.content, start, end or len(self.content))
        if match is None:
            return None
        try:
            _value, span = _value_at(self.content, match.end())
        except ValueError:
            return None
        return span

"""The demo model's rules (`LLM_MODEL=demo`): a deterministic answer from a JSON schema and the task's text.

Every spec answers from its own JSON schema unless it overrides `demo_answer`, so a new control
works without writing anything here; only controls whose schema cannot say what is valid (a quote
that must be in the text, a date format, a box inside the image) bring their own rule.

The rules, by schema shape:
  enum            the first value that appears in the text as a word, else one chosen by a hash of the text
  array           one item (an array of enum values: the value above)
  integer/number  the first number in the text within minimum..maximum, else one chosen by the hash
  string          the text's first sentence (at most 100 characters)
  object          each property by these rules
The same text always gets the same answer; nothing here calls a model.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Sequence
from typing import Any

DEMO_MODEL = "demo"

_NUMBER = re.compile(r"(?<![\w.-])-?\d+(?:\.\d+)?(?![\w.-])")  # not the parts of 2024-03-05 or v1.2.3
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def stable_index(seed: str, size: int) -> int:
    """The same seed always gives the same index (Python's hash() changes between processes)."""
    return int.from_bytes(hashlib.sha256(seed.encode("utf-8")).digest()[:8], "big") % size if size else 0


def pick(options: Sequence[str], text: str, salt: str = "") -> str:
    """The first option named in the text (whole words, any case), else one chosen by the text's hash."""
    lowered = text.casefold()
    for option in options:
        if option.strip() and re.search(rf"(?<!\w){re.escape(option.casefold())}(?!\w)", lowered):
            return option
    return options[stable_index(salt + text, len(options))]


def first_sentence(text: str, limit: int = 100) -> str:
    sentence = _SENTENCE_END.split(" ".join(text.split()), maxsplit=1)[0]
    if len(sentence) > limit:
        sentence = sentence[:limit].rsplit(" ", 1)[0] + "..."
    return sentence or "demo answer"


def number_in(schema: dict[str, Any], text: str, salt: str = "") -> int | float:
    low, high = schema.get("minimum"), schema.get("maximum")
    integer = schema.get("type") == "integer"
    for match in _NUMBER.finditer(text):
        value = float(match.group())
        if (low is None or value >= low) and (high is None or value <= high) and (value.is_integer() or not integer):
            return int(value) if value.is_integer() else value
    low = 0 if low is None else low
    high = low + 100 if high is None else high
    span = max(0, int(high - low))
    value = low + stable_index(salt + text, span + 1)
    return int(value) if integer or float(value).is_integer() else value


def schema_answer(schema: dict[str, Any], text: str, salt: str = "") -> Any:
    """A value valid for `schema` (the subset our specs use: OpenAI strict structured outputs)."""
    if schema.get("enum"):
        return pick([str(option) for option in schema["enum"]], text, salt)
    kind = schema.get("type")
    if kind == "object":
        return {name: schema_answer(sub, text, f"{salt}.{name}") for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        items = schema.get("items")
        return [schema_answer(items, text, salt)] if isinstance(items, dict) and schema.get("maxItems", 1) else []
    if kind in ("integer", "number"):
        return number_in(schema, text, salt)
    if kind == "boolean":
        return stable_index(salt + text, 2) == 1
    if kind == "string":
        return first_sentence(text)
    return None


_CAPITALISED = re.compile(r"\b[A-Z][\w'-]*(?:[ \t]+[A-Z][\w'-]*)*")
_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2}))?")


def capitalised_phrases(text: str, limit: int = 10) -> list[str]:
    """Runs of capitalised words, but not a sentence's capitalised first word alone: the demo's "entities"."""
    found: list[str] = []
    for match in _CAPITALISED.finditer(text):
        phrase = match.group()
        before = text[:match.start()].rstrip()
        if (not before or before[-1] in ".!?:;\"") and " " not in phrase:
            continue
        if phrase and phrase not in found:
            found.append(phrase)
        if len(found) == limit:
            break
    return found


def first_date(text: str) -> dt.datetime:
    """The first ISO date (and time) in the text, else 2024-01-01 09:00."""
    for match in _DATE.finditer(text):
        parts = [int(part) for part in match.group(1, 2, 3)] + \
            ([int(part) for part in match.group(4, 5)] if match.group(4) else [9, 0])
        try:
            return dt.datetime(*parts)
        except ValueError:
            continue
    return dt.datetime(2024, 1, 1, 9, 0)

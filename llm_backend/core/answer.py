"""Turn the model's raw reply into a validated answer.

Models that honour `response_format` reply with bare JSON; others wrap it in code fences or
prose. We take the first JSON object we can decode, then validate it against the config. The
error message is written for the model: it is sent back verbatim in the repair round.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ..errors import AnswerError
from .config import LabelConfig
from .schema import Dropped, validate_answer

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_decoder = json.JSONDecoder()


@dataclass(frozen=True)
class Answer:
    values: dict[str, Any]
    dropped: list[Dropped] = field(default_factory=list)


def extract_json(content: str) -> dict[str, Any]:
    """The first JSON object in `content`: bare, fenced, or surrounded by prose."""
    if not isinstance(content, str) or not content.strip():
        raise AnswerError("the reply was empty; answer with one JSON object", content=content)
    candidates = [content.strip(), *(match.strip() for match in _FENCE.findall(content))]
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    # Prose around the object: try each "{" in turn; raw_decode stops at the object's end.
    start = content.find("{")
    while start != -1:
        try:
            value, _end = _decoder.raw_decode(content, start)
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value
        start = content.find("{", start + 1)
    raise AnswerError("the reply did not contain a JSON object; answer with one JSON object only", content=content)


def _explain(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"property \"{where}\": {message}")
    return "; ".join(parts)


def parse_answer(config: LabelConfig, content: str) -> Answer:
    data = extract_json(content)
    try:
        values, dropped = validate_answer(config, data)
    except ValidationError as exc:
        raise AnswerError(f"the JSON object is not valid: {_explain(exc)}", content=content) from None
    return Answer(values=values, dropped=dropped)

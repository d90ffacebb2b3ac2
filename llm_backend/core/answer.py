"""Turn the model's raw reply into a validated answer.

`core/reading.py` finds the JSON object (tolerantly, naming each repair it needed); this module
validates it against the config (strictly: nothing outside the config passes). Error messages are
written for the model: they are sent back verbatim in the repair round.

With `partial=True`, a control whose value is invalid is dropped and the others are kept (a
sentiment outside the config must not cost the entities placed correctly beside it); the dropped
controls and why are in `Answer.invalid`. An answer with no valid control at all is still an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ..errors import AnswerError, EmptyReplyError
from .config import LabelConfig
from .reading import Reading, read_json
from .schema import Dropped, validate_answer, validate_controls


@dataclass(frozen=True)
class Answer:
    values: dict[str, Any]
    dropped: list[Dropped] = field(default_factory=list)
    repairs: tuple[str, ...] = ()  # what reading the reply took (see reading.REPAIRS)
    invalid: dict[str, str] = field(default_factory=dict)  # control -> why it was left out (partial answers)
    start: int | None = None  # where the object began in the reply's content, for token scores

    @property
    def partial(self) -> bool:
        return bool(self.invalid)

    def invalid_text(self) -> str:
        """The per-task note returned beside a partial result."""
        return "; ".join(f"{name} left out: {why}" for name, why in self.invalid.items())


def _explain(items: list[dict[str, Any]]) -> str:
    parts = []
    for item in items:
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"property \"{where}\": {message}")
    return "; ".join(parts)


def read_reply(config: LabelConfig, content: str | None, reasoning: str | None = None) -> Reading:
    """The answer object of a reply: from its content or, when the content is empty, from the reasoning
    the server returned beside it (LM Studio and llama.cpp put a whole answer there at times)."""
    keys = [control.name for control in config.controls]
    if content and content.strip():
        return read_json(content, keys)
    if reasoning and reasoning.strip():
        try:
            found = read_json(reasoning, keys, last=True)
        except AnswerError:
            raise EmptyReplyError("the reply had no answer: its content was empty and its reasoning held no JSON "
                                  "object; answer with one JSON object", content=content) from None
        return Reading(found.value, ("reasoning_content", *found.repairs))
    raise EmptyReplyError("the reply was empty; answer with one JSON object", content=content)


def parse_answer(config: LabelConfig, content: str | None, reasoning: str | None = None, *,
                 partial: bool = False) -> Answer:
    reading = read_reply(config, content, reasoning)
    try:
        values, dropped = validate_answer(config, reading.value)
        invalid: dict[str, str] = {}
    except ValidationError as exc:
        if not partial:
            raise AnswerError(f"the JSON object is not valid: {_explain(exc.errors())}", content=content) from None
        values, dropped, problems = validate_controls(config, reading.value, exc)
        if not values:
            raise AnswerError(f"the JSON object is not valid: {_explain(exc.errors())}", content=content) from None
        invalid = {name: _explain(items) for name, items in problems.items()}
    return Answer(values=values, dropped=dropped, repairs=reading.repairs, invalid=invalid, start=reading.start)

"""Turn the model's raw reply into a validated answer.

`core/reading.py` finds the JSON object (tolerantly, naming each repair it needed); this module
validates it against the config (strictly: nothing outside the config passes). Error messages are
written for the model: they are sent back verbatim in the repair round.

With `partial=True`, a control whose value is invalid is dropped and the others are kept (a
sentiment outside the config must not cost the entities placed correctly beside it); the dropped
controls and why are in `Answer.invalid`. An answer with no valid control at all is still an error.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ..errors import AnswerError
from .config import LabelConfig
from .reading import read_reply
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


@dataclass(frozen=True)
class ReadAnswer:
    """One reading of a reply, validated both ways at once: strictly (every control valid) and in part.

    Reading the reply is the costly step (core/reading.py); with both results kept, a caller that wants
    the strict answer first and the partial one after a failed repair reads the reply once."""

    answer: Answer | None  # the valid controls (all of them when `error` is None); None when none is valid
    error: AnswerError | None  # why the strict answer fails; None when it does not

    def strict(self) -> Answer:
        """The answer when every control is valid; else the AnswerError (the message sent in a repair round)."""
        if self.error is not None:
            raise copy.copy(self.error)  # a copy: the same reading may be raised again (the cache, a twin)
        assert self.answer is not None
        return self.answer

    def partial(self) -> Answer:
        """The valid controls (`Answer.invalid` names the others); the AnswerError when none is valid."""
        if self.answer is None:
            assert self.error is not None
            raise copy.copy(self.error)
        return self.answer


def read_answer(config: LabelConfig, content: str | None, reasoning: str | None = None) -> ReadAnswer:
    """The reply read once, and validated against the config strictly and in part."""
    try:
        reading = read_reply(content, reasoning, [control.name for control in config.controls])
    except AnswerError as exc:
        return ReadAnswer(None, exc)
    try:
        values, dropped = validate_answer(config, reading.value)
    except ValidationError as exc:
        error = AnswerError(f"the JSON object is not valid: {_explain(exc.errors())}", content=content)
        values, dropped, problems = validate_controls(config, reading.value, exc)
        if not values:
            return ReadAnswer(None, error)
        invalid = {name: _explain(items) for name, items in problems.items()}
        return ReadAnswer(Answer(values=values, dropped=dropped, repairs=reading.repairs, invalid=invalid,
                                 start=reading.start), error)
    return ReadAnswer(Answer(values=values, dropped=dropped, repairs=reading.repairs, start=reading.start), None)


def parse_answer(config: LabelConfig, content: str | None, reasoning: str | None = None, *,
                 partial: bool = False) -> Answer:
    """The reply's answer: strict, or with `partial` the valid controls (see `ReadAnswer`)."""
    reading = read_answer(config, content, reasoning)
    return reading.partial() if partial else reading.strict()

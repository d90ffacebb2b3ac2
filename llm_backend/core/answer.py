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


def parse_answer(config: LabelConfig, content: str | None, reasoning: str | None = None, *,
                 partial: bool = False) -> Answer:
    reading = read_reply(content, reasoning, [control.name for control in config.controls])
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

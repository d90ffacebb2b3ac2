"""<Choices>: one value from a list, or several with choice="multiple"."""

from __future__ import annotations

from typing import Any

from ..agreement import SetReport
from ..config_types import Control
from ..objects import IMAGE, TEXT
from .base import (
    MISSING,
    ControlSpec,
    Dropped,
    Validator,
    Value,
    allowed_values,
    as_list,
    attr,
    drop,
    middle_option,
    option_key,
    option_lookup,
)
from .combine import MAJORITY, UNION, Combined, majority, union


class ChoicesSpec(ControlSpec):
    tag = "Choices"
    option_tag = "Choice"
    media = frozenset({TEXT, IMAGE})
    options_suffice = True

    def multiple(self, attrs: dict[str, str]) -> bool:
        return attr(attrs, "choice", "single").lower() == "multiple"

    def json_schema(self, control: Control) -> dict[str, Any]:
        item = {"type": "string", "enum": [option.value for option in control.options]}
        return {"type": "array", "items": item} if control.multiple else item

    def validator(self, control: Control) -> Validator:
        table = option_lookup(control.options)

        def single(value: object, dropped: list[Dropped]) -> str:
            if isinstance(value, list) and len(value) == 1:
                value = value[0]
            if not isinstance(value, str) or option_key(value) not in table:
                raise ValueError(f"{value!r} is not one of the allowed choices: {allowed_values(control)}")
            return table[option_key(value)]

        def multiple(value: object, dropped: list[Dropped]) -> list[str]:
            chosen: list[str] = []
            for item in as_list(value):
                if isinstance(item, str) and option_key(item) in table:
                    if table[option_key(item)] not in chosen:
                        chosen.append(table[option_key(item)])
                else:
                    drop(dropped, control, item, "not an allowed choice")
            return chosen

        return multiple if control.multiple else single

    def region_values(self, control: Control, answer: str | list[str]) -> list[Value]:
        chosen = answer if isinstance(answer, list) else [answer]
        return [{"choices": chosen}] if chosen else []

    def answer_from_values(self, control: Control, values: list[Value]) -> Any:
        to_value = {o.result_value: o.value for o in control.options}  # results hold aliases, prompts values
        chosen = [to_value.get(c, c) for v in values for c in v.get("choices") or []]
        if control.multiple:
            return chosen
        # The schema asks for exactly one value: an annotation that chose none cannot be shown as an answer.
        return chosen[0] if chosen else MISSING

    def typical_answer(self, control: Control, text: str) -> Any:
        return [middle_option(control)] if control.multiple else middle_option(control)

    def long_text(self, control: Control) -> str:
        return UNION if control.multiple else MAJORITY

    def combine(self, control: Control, answers: list[Any]) -> Combined:
        return union(answers) if control.multiple else majority(answers)

    def report(self, control: Control) -> SetReport:
        return SetReport(control.name, control.kind, labels_of=lambda value: map(str, value.get("choices") or []),
                         multiple=control.multiple)

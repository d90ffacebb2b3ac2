"""<Pairwise> over two objects: which of the two is better, "left" (the first toName) or "right".

LLM judges prefer whichever answer they read first (or last) more often than chance: the position
bias of pairwise evaluation. So the control is asked a second time with the two texts swapped
(`reorderings`), and `reconcile` keeps the first answer when the second, mapped back, agrees; when
it does not, the answer is returned with a score of at most DISAGREEMENT_SCORE, a coin flip between
two options, which puts it first in a reviewer's queue sorted by score.
"""

from __future__ import annotations

from typing import Any

from ..agreement import ExactReport
from ..config_types import Control
from .base import MISSING, ControlSpec, Dropped, Reconciled, RegionInputs, Validator, Value, attr, option_key

SIDES = ("left", "right")
DISAGREEMENT_SCORE = 0.5


def _names(attrs: dict[str, str]) -> list[str]:
    return [name.strip() for name in attr(attrs, "toName").split(",") if name.strip()]


class PairwiseSpec(ControlSpec):
    tag = "Pairwise"
    reads_context = True  # the prompt both answers reply to

    def skip_reason(self, attrs: dict[str, str]) -> str | None:
        names = _names(attrs)
        if len(names) != 2 or names[0] == names[1]:
            return "Pairwise needs two different objects in toName (toName=\"first,second\")"
        return None

    def json_schema(self, control: Control) -> dict[str, Any]:
        return {"type": "string", "enum": list(SIDES)}

    def validator(self, control: Control) -> Validator:
        # "left"/"right", or the object's name, which models sometimes answer with.
        table = {option_key(side): side for side in SIDES}
        table.update({option_key(name): side for name, side in zip(control.to_name, SIDES, strict=False)})

        def validate(value: object, dropped: list[Dropped]) -> str:
            if not isinstance(value, str) or option_key(value) not in table:
                left, right = control.to_name[:2]
                raise ValueError(f"{value!r} is not \"left\" ({left}) or \"right\" ({right})")
            return table[option_key(value)]

        return validate

    def prompt_vars(self, control: Control) -> dict[str, Any]:
        return {"left": control.to_name[0], "right": control.to_name[1]}

    def region_values(self, control: Control, answer: str) -> list[Value]:
        return [{"selected": answer}]

    def answer_from_values(self, control: Control, values: list[Value]) -> Any:
        chosen = [value.get("selected") for value in values if value.get("selected") in SIDES]
        return chosen[0] if chosen else MISSING

    def typical_answer(self, control: Control, text: str) -> Any:
        return "left"

    def demo_answer(self, control: Control, inputs: RegionInputs) -> Any:
        # The longer text wins: a rule that does not depend on which side a text is shown on.
        left, right = (len(inputs.texts.get(name, "")) for name in control.to_name[:2])
        return "left" if left >= right else "right"

    def reorderings(self, control: Control) -> list[dict[str, str]]:
        left, right = control.to_name[:2]
        return [{left: right, right: left}]

    def reconcile(self, control: Control, first: Any, again: list[Any]) -> Reconciled:
        swapped_back = [SIDES[1 - SIDES.index(value)] for value in again if value in SIDES]
        agreed = bool(swapped_back) and all(value == first for value in swapped_back)
        return Reconciled(first, None if agreed else DISAGREEMENT_SCORE,
                          "both orders agree" if agreed else "the answer changed when the two were swapped")

    def report(self, control: Control) -> ExactReport:
        return ExactReport(control.name, control.kind, key="selected")

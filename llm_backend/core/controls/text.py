"""<TextArea>: free text, a list of strings (usually one)."""

from __future__ import annotations

from typing import Any

from ..agreement import TextReport
from ..config_types import Control
from ..objects import IMAGE, TEXT
from .base import ControlSpec, Dropped, Validator, Value, as_list
from .combine import SUMMARY, Combined, union


class TextAreaSpec(ControlSpec):
    tag = "TextArea"
    media = frozenset({TEXT, IMAGE})
    score_style = "text"

    def json_schema(self, control: Control) -> dict[str, Any]:
        return {"type": "array", "items": {"type": "string"}}

    def validator(self, control: Control) -> Validator:
        def validate(value: object, dropped: list[Dropped]) -> list[str]:
            items = as_list(value)
            if not all(isinstance(item, str) for item in items):
                raise ValueError("must be a list of strings")
            return [item.strip() for item in items if item.strip()]

        return validate

    def region_values(self, control: Control, answer: list[str]) -> list[Value]:
        return [{"text": answer}] if answer else []

    def typed_text(self, value: Value) -> list[str]:
        return [str(text) for text in value.get("text") or [] if str(text).strip()]

    def answer_from_values(self, control: Control, values: list[Value]) -> Any:
        return [str(t) for v in values for t in v.get("text") or []]

    def typical_answer(self, control: Control, text: str) -> Any:
        words = text.split() or ["summary"]
        return [" ".join((words * 20)[:20])]  # one sentence of twenty words

    def long_text(self, control: Control) -> str:
        return SUMMARY

    def combine(self, control: Control, answers: list[Any]) -> Combined:
        # What the summary call reads (engine/longtext.py): every part's text, once each, in order.
        return union(answers)

    def report(self, control: Control) -> TextReport:
        return TextReport(control.name, control.kind)

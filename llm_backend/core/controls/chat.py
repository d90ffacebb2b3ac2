"""Controls asked about each message of a <Chat> (`perRegion="true"` on a control whose toName is a
Chat, shown in Label Studio when a message of a role is selected: `whenRole` on it or on a View
around it).

The model reads the conversation with numbered messages and answers, for each message of those roles,
{"message": n, "value": <what the control as written asks>}; the control as written (Choices,
Rating, TextArea...) keeps its own schema, validation and region value through its own spec.
Label Studio stores a message as a `chatmessage` region (from_name = to_name = the Chat's name,
`{"chatmessage": {"role", "content"}}`) and a per-region result of a control as that region's
value plus the control's own (the same `id`), which is what `add_regions` writes: the message's
region once, then one result per control answered about it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from ..config_types import Control, ObjectTag, Option
from ..objects import chat_messages
from .base import MISSING, ControlSpec, Dropped, RegionInputs, RegionReport, Validator, Value, attr, drop

MessageAnswer = tuple[int, Any]  # (message number, the control's validated value for it)


def _message(option: Option) -> dict[str, str]:
    role, _, content = (option.hint or "").partition(": ")
    return {"role": role, "content": content}


class ChatMessageSpec(ControlSpec):
    """Label Studio's `chatmessage` region, as the kind of a control asked per message; `specs` is the
    registry's table, where the control as written finds its own spec."""

    tag = "ChatMessage"
    media = frozenset()
    object_tags = frozenset({"chat"})
    per_item_of = frozenset({"chat"})

    listed_as = "perRegion Choices, Rating, TextArea... (each message)"

    def __init__(self, specs: Mapping[str, ControlSpec]) -> None:
        self.specs = specs

    def skip_reason(self, attrs: dict[str, str]) -> str | None:
        return "<ChatMessage> is the region of a <Chat> message, not a control tag"  # only made by the parser

    def inner(self, control: Control, to_name: str | None = None) -> tuple[ControlSpec, Control]:
        """The control as written, and its spec."""
        inner = dataclasses.replace(control, kind=control.per_item, per_item="", task_options=False, items=(),
                                    to_name=(to_name,) if to_name else control.to_name)
        return self.specs[control.per_item], inner

    def roles(self, control: Control) -> list[str]:
        return [role.strip() for role in attr(control.attrs, "whenRole").split(",") if role.strip()]

    def for_task(self, control: Control, objects: dict[str, ObjectTag], data: dict[str, Any]) -> Control | None:
        chat = objects[control.to_name[0]]
        roles = self.roles(control)
        messages = chat_messages(data.get(chat.data_key or ""))
        items = tuple(Option(str(number), hint=f"{role}: {content}")
                      for number, (role, content) in enumerate(messages, start=1) if not roles or role in roles)
        return dataclasses.replace(control, items=items) if items else None

    def json_schema(self, control: Control) -> dict[str, Any]:
        spec, inner = self.inner(control)
        return {"type": "array", "items": {
            "type": "object",
            "properties": {"message": {"type": "integer", "enum": [int(item.value) for item in control.items]},
                           "value": spec.json_schema(inner)},
            "required": ["message", "value"], "additionalProperties": False}}

    def validator(self, control: Control) -> Validator:
        spec, inner = self.inner(control)
        validate_inner = spec.validator(inner)
        numbers = {int(item.value) for item in control.items}

        def validate(value: object, dropped: list[Dropped]) -> list[MessageAnswer]:
            if not isinstance(value, (list, tuple)):
                raise ValueError("must be a list of {\"message\", \"value\"} objects, one per message")
            answers: dict[int, Any] = {}
            for item in value:
                number = item.get("message") if isinstance(item, dict) else None
                if isinstance(number, str) and number.strip().isdigit():
                    number = int(number)
                if not isinstance(number, int) or number not in numbers or number in answers:
                    drop(dropped, control, item, "not one of the messages asked about, or asked twice")
                    continue
                try:
                    answers[number] = validate_inner(item.get("value"), dropped)
                except ValueError as exc:
                    drop(dropped, control, item, f"message {number}: {exc}")
            return sorted(answers.items())

        return validate

    def prompt_vars(self, control: Control) -> dict[str, Any]:
        spec, inner = self.inner(dataclasses.replace(control, name="value"), f"{control.to_name[0]} message")
        return {"messages": [int(item.value) for item in control.items], "roles": self.roles(control),
                "inner": spec.template_vars(inner)}

    def add_regions(self, control: Control, answer: list[MessageAnswer], inputs: RegionInputs,
                    scores: list[float | None], report: RegionReport) -> None:
        spec, inner = self.inner(control)
        chat = control.to_name[0]
        by_number = {int(item.value): item for item in control.items}
        for number, value in answer:
            message = _message(by_number[number])
            # One id per message, whichever control answers about it: Label Studio groups results by id.
            region_id = hashlib.sha1(json.dumps([chat, number, message]).encode("utf-8")).hexdigest()[:10]
            base = {"id": region_id, "to_name": chat}
            report.regions.append({**base, "from_name": chat, "type": "chatmessage",
                                   "value": {"chatmessage": message}})
            for inner_value in spec.region_values(inner, value):
                region = {**base, "from_name": control.name, "type": inner.kind,
                          "value": {"chatmessage": message, **inner_value}}
                if scores and scores[0] is not None:
                    region["score"] = scores[0]
                report.regions.append(region)

    def answer_from_regions(self, control: Control, regions: list[dict[str, Any]]) -> Any:
        spec, inner = self.inner(control)
        numbers = {json.dumps(_message(item), sort_keys=True): int(item.value) for item in control.items}
        answers = []
        for region in regions:
            value = region.get("value") or {}
            number = numbers.get(json.dumps(value.get("chatmessage"), sort_keys=True))
            answered = spec.answer_from_values(inner, [value]) if number is not None else MISSING
            if answered is not MISSING:
                answers.append({"message": number, "value": answered})
        return answers if answers or not regions else MISSING

    def answer_from_values(self, control: Control, values: list[Value]) -> Any:
        return self.answer_from_regions(control, [{"value": value} for value in values])

    def typical_answer(self, control: Control, text: str) -> Any:
        spec, inner = self.inner(control)
        return [{"message": int(item.value), "value": spec.typical_answer(inner, text)} for item in control.items]

    def report(self, control: Control) -> Any:
        # Judged as the control as written over the task's messages together (which message is not compared).
        spec, inner = self.inner(control)
        report = spec.report(inner)
        report.kind = control.kind
        return report

    def demo_answer(self, control: Control, inputs: RegionInputs) -> Any:
        spec, inner = self.inner(control)
        return [{"message": int(item.value),
                 "value": spec.demo_answer(inner, RegionInputs({inner.to_name[0]: _message(item)["content"]}))}
                for item in control.items]

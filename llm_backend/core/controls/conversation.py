"""A <Chat> that is its own control (`toName` naming itself): the annotator writes the conversation,
playing the roles of `messageroles` (Label Studio's "Fine-Tune an Agent without an LLM" template).
The model drafts that conversation from the task's instructions: a list of {"role", "content"}
messages, at least `minMessages` of them, each a region with from_name = to_name = the Chat's name
and `{"chatmessage": {"role", "content"}}` (Label Studio's chat message value), after any messages the
task's chat already holds. Its type is "chat": Label Studio 1.23.2 validates a prediction's type
against the tag of the control it names (label-studio-sdk), and here the control is the <Chat> itself;
a Chat that is not a control has its messages typed "chatmessage" (see chat.py)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..agreement import TextReport
from ..agreement.base import Value as ReportValue
from ..config_types import Control
from .base import ControlSpec, Dropped, RegionInputs, RegionReport, Validator, Value, attr, drop, option_key


class ConversationReport(TextReport):
    """The written conversation compared as text, one "role: content" line per message."""

    def add(self, gold: list[ReportValue], predicted: list[ReportValue] | None, text: str
            ) -> tuple[float | None, tuple[str, str]]:
        def lines(values: list[ReportValue] | None) -> list[ReportValue] | None:
            if values is None:
                return None
            messages = [value.get("chatmessage") or {} for value in values]
            return [{"text": [f"{m.get('role', '')}: {m.get('content', '')}" for m in messages]}]

        return super().add(lines(gold) or [], lines(predicted), text)


class ChatSpec(ControlSpec):
    tag = "Chat"
    media = frozenset()
    object_tags = frozenset({"chat"})
    score_style = "text"
    reads_context = True  # the instructions the conversation is written by
    listed_as = "Chat (toName naming itself: the conversation written)"

    def roles(self, control: Control) -> list[str]:
        # Label Studio's default: "user" with an `llm` answering, else "user,assistant".
        default = "user" if attr(control.attrs, "llm") else "user,assistant"
        return [role.strip() for role in attr(control.attrs, "messageroles", default).replace("|", ",").split(",")
                if role.strip()]

    def least(self, control: Control) -> int:
        value = attr(control.attrs, "minMessages", "2")
        return int(value) if value.isdigit() else 2

    def json_schema(self, control: Control) -> dict[str, Any]:
        return {"type": "array", "items": {
            "type": "object", "properties": {"role": {"type": "string", "enum": self.roles(control)},
                                             "content": {"type": "string"}},
            "required": ["role", "content"], "additionalProperties": False}}

    def validator(self, control: Control) -> Validator:
        roles = {option_key(role): role for role in self.roles(control)}

        def validate(value: object, dropped: list[Dropped]) -> list[dict[str, str]]:
            if not isinstance(value, (list, tuple)):
                raise ValueError("must be a list of {\"role\", \"content\"} messages")
            messages = []
            for item in value:
                role = roles.get(option_key(str(item.get("role", "")))) if isinstance(item, dict) else None
                content = item.get("content") if isinstance(item, dict) else None
                if role is None or not isinstance(content, str) or not content.strip():
                    drop(dropped, control, item, "a message needs one of the roles and some content")
                    continue
                messages.append({"role": role, "content": content.strip()})
            return messages

        return validate

    def prompt_vars(self, control: Control) -> dict[str, Any]:
        return {"roles": self.roles(control), "min": self.least(control)}

    def add_regions(self, control: Control, answer: list[dict[str, str]], inputs: RegionInputs,
                    scores: list[float | None], report: RegionReport) -> None:
        for index, message in enumerate(answer):
            raw = json.dumps([control.name, index, message], sort_keys=True).encode("utf-8")
            region: dict[str, Any] = {"id": hashlib.sha1(raw).hexdigest()[:10], "from_name": control.name,
                                      "to_name": control.name, "type": control.result_type,
                                      "value": {"chatmessage": message}}
            if scores and scores[0] is not None:
                region["score"] = scores[0]
            report.regions.append(region)

    def answer_from_values(self, control: Control, values: list[Value]) -> Any:
        messages = [value.get("chatmessage") or {} for value in values]
        return [{"role": str(m.get("role", "")), "content": str(m.get("content", ""))} for m in messages]

    def typical_answer(self, control: Control, text: str) -> Any:
        roles = self.roles(control)
        words = text.split() or ["message"]
        return [{"role": roles[i % len(roles)], "content": " ".join((words * 30)[:30])}
                for i in range(max(self.least(control), 1))]

    def report(self, control: Control) -> ConversationReport:
        return ConversationReport(control.name, control.kind)

    def demo_answer(self, control: Control, inputs: RegionInputs) -> list[dict[str, str]]:
        # Turns in the roles' order, each the first sentence of the texts the task shows (or a placeholder).
        roles = self.roles(control)
        shown = " ".join(text for text in inputs.texts.values() if text).split(". ")[0].strip() or "Hello."
        return [{"role": roles[i % len(roles)], "content": f"{shown} ({i + 1})"}
                for i in range(max(self.least(control), 1))]

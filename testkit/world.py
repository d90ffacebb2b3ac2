"""A model stand-in for the prompt lab: right on most tasks, wrong on one class of them unless told a rule.

The test LLM server answers a request's Choices property the way this world's model would:

- a rule whose text appears anywhere in the request's messages (the instructions) applies first: a task
  whose text contains the rule's `trigger` gets the rule's label;
- otherwise the first cue word the task's text contains gives its label ("love" -> Positive);
- otherwise the `fallback` label.

So a world where refund requests are annotated Negative, with no cue for "refund" and the fallback
Neutral, errs on every refund request until the prompt states the rule "A request for a refund is
Negative." A harmful rule ("Anything that mentions the lamp is Positive.") makes other tasks wrong.

A prompt-improvement request (its response_format asks for `instructions` and `rationale`) is
answered with the configured `suggestion`, but only when it quotes at least `min_quoted` tasks of
the erring class (counted by their trigger): the improver must show the model its errors. Otherwise
the answer suggests nothing (empty instructions).

Standard library only: the server runs wherever the tests run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

IMPROVE_PROPERTIES = frozenset({"instructions", "rationale"})


@dataclass(frozen=True)
class Rule:
    text: str  # the sentence that, written in the instructions, switches the rule on
    trigger: str  # tasks whose text contains this (case-insensitive) ...
    label: str  # ... get this label


@dataclass
class World:
    control: str
    cues: dict[str, str]  # word -> label the model gets right without being told
    fallback: str
    rules: list[Rule]
    suggestion: str = ""  # what an improvement request is answered with
    erring: str = ""  # the trigger of the class of tasks the model errs on; counted in improvement requests
    min_quoted: int = 3
    object: str = "text"
    improvement_requests: list[str] = field(default_factory=list, repr=False)  # the user message of each

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> World:
        known = {"control", "cues", "fallback", "rules", "suggestion", "erring", "min_quoted", "object"}
        if set(data) - known or not isinstance(data.get("control"), str) or not isinstance(data.get("rules"), list):
            raise ValueError(f"a world is an object with {sorted(known)}; control, cues, fallback and rules needed")
        rules = [Rule(**rule) for rule in data["rules"]]
        return cls(data["control"], dict(data["cues"]), str(data["fallback"]), rules, str(data.get("suggestion", "")),
                   str(data.get("erring", "")), int(data.get("min_quoted", 3)), str(data.get("object", "text")))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("improvement_requests")
        return data

    def label(self, instructions: str, text: str) -> str:
        """The label this world's model gives `text` when its prompt reads `instructions`."""
        lowered = text.lower()
        for rule in self.rules:
            if rule.text in instructions and rule.trigger.lower() in lowered:
                return rule.label
        for word, label in self.cues.items():
            if word.lower() in lowered:
                return label
        return self.fallback

    def shown_text(self, prompt: str) -> str | None:
        """The task's text as the default user template shows it, between <object> and </object>."""
        opening, closing = f"<{self.object}>\n", f"\n</{self.object}>"
        start, end = prompt.find(opening), prompt.rfind(closing)
        return prompt[start + len(opening):end] if start != -1 and end > start else None

    def answer(self, body: Mapping[str, Any], prompt: str) -> str | None:
        """The reply's content, or None when the request is neither a task nor an improvement request."""
        if _asks_for(body) >= IMPROVE_PROPERTIES:
            self.improvement_requests.append(prompt)
            quoted = prompt.lower().count(self.erring.lower()) if self.erring else 0
            if quoted >= self.min_quoted:
                return json.dumps({"instructions": self.suggestion, "rationale": "state the rule the errors miss"})
            return json.dumps({"instructions": "", "rationale": f"only {quoted} erring tasks quoted"})
        text = self.shown_text(prompt)
        if text is None:
            return None
        # The task's text is data, not instructions: a rule quoted inside it must not switch the rule on.
        instructions = prompt.replace(text, "")
        return json.dumps({self.control: self.label(instructions, text)})


def _asks_for(body: Mapping[str, Any]) -> set[str]:
    """The property names the request's JSON schema asks for."""
    response_format = body.get("response_format")
    if not isinstance(response_format, Mapping):
        return set()
    schema = (response_format.get("json_schema") or {}).get("schema") or {}
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    return set(properties) if isinstance(properties, Mapping) else set()

"""How real models and servers dress a correct answer: switchable reply styles for the test LLM server.

Each style takes the right answer (a JSON value) and returns the assistant message the way a local
or hosted model sends it, so the backend is tested against reply shapes, not only clean JSON. Where
each shape was seen in the wild is cited in `tests/fixtures/reply_corpus.json`.

Styles combine with "+", e.g. ``think+trailing_commas``: at most one serialiser (how the value is
written), any wrappers (what surrounds the text, applied in the order given) and at most one message
shape (what the server puts in which field), in any order in the name.

Standard library only: the test server runs wherever the tests run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["STYLES", "Shaped", "check_style", "shape"]


@dataclass
class Shaped:
    """The parts of a chat-completion choice a style decides."""

    content: str | None
    finish_reason: str = "stop"
    refusal: str | None = None
    reasoning_content: str | None = None  # LM Studio, llama.cpp, DeepSeek's API
    reasoning: str | None = None  # vLLM >= 0.10 and Ollama's OpenAI-compatible endpoint


def _extra_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {**value, "confidence": 0.93, "explanation": "The wording leaves little doubt."}
    return value


def _trailing_commas(value: Any) -> str:
    # `"Person",\n }`: a comma before every closing bracket of a multi-line object or list.
    return re.sub(r"(?<=[^\[{,\s])(\n\s*[}\]])", r",\1", json.dumps(value, indent=2, ensure_ascii=False))


def _comments(value: Any) -> str:
    lines = json.dumps(value, indent=2, ensure_ascii=False).split("\n")
    commented = [f"{line} // checked against the labels" if line.endswith(",") else line for line in lines]
    return "/* annotation */\n" + "\n".join(commented)


def _raw_newlines(value: Any) -> str:
    # A string value with a literal line break, as models write multi-line text fields.
    return json.dumps(value, ensure_ascii=False).replace("\\n", "\n")


SERIALISERS: dict[str, Callable[[Any], str]] = {
    "json": lambda value: json.dumps(value, ensure_ascii=False),
    "pretty": lambda value: json.dumps(value, indent=2, ensure_ascii=False),
    "trailing_commas": _trailing_commas,
    "single_quotes": repr,  # Python's dict repr: single quotes, True/False/None
    "comments": _comments,
    "raw_newlines": _raw_newlines,
}


def _draft(value: Any) -> str:
    """A draft object inside the thinking: the answer's keys with placeholder values (it must never win)."""
    keys = list(value) if isinstance(value, dict) else ["label"]
    return json.dumps({key: "?" for key in keys})


WRAPPERS: dict[str, Callable[[str, Any], str]] = {
    "fence": lambda text, value: f"```json\n{text}\n```",
    "prose": lambda text, value: ("Sure! Here is the annotation {as JSON}, checked against every control:\n"
                                  f"{text}\n\nLet me know if you need anything else {{or a change}}."),
    "think": lambda text, value: (f"<think>\nThe user wants labels. A first draft: {_draft(value)} - no, the "
                                  "schema names the controls {and their values}; check the text again.\n</think>\n\n"
                                  f"{text}"),
    "reasoning_tag": lambda text, value: f"<reasoning>Drafting {_draft(value)} first.</reasoning>\n{text}",
    # The chat template opened the block in the prompt, so the reply starts inside it.
    "think_no_open": lambda text, value: f"Let me look at the text {_draft(value)}.\n</think>\n\n{text}",
}

VALUE_TRANSFORMS: dict[str, Callable[[Any], Any]] = {"extra_keys": _extra_keys}

REFUSAL = "I'm sorry, but I can't help with that request."
SHAPES: dict[str, Callable[[str, Any], Shaped]] = {
    "reasoning_beside": lambda text, value: Shaped(text, reasoning_content=f"Weighing the labels {_draft(value)}."),
    # LM Studio and llama.cpp: the whole answer in reasoning_content, content empty.
    "reasoning_only": lambda text, value: Shaped("", reasoning_content=f"Let me label this.\n{text}"),
    # vLLM with a reasoning parser and thinking off: content null, the answer in `reasoning`.
    "reasoning_only_vllm": lambda text, value: Shaped(None, reasoning=text),
    "cut_off": lambda text, value: Shaped(text[: max(1, len(text) // 2)], finish_reason="length"),
    "cut_off_thinking": lambda text, value: Shaped("", finish_reason="length",
                                                   reasoning_content="Let me think this through step by step"),
    "refusal": lambda text, value: Shaped(None, refusal=REFUSAL),
    "content_filter": lambda text, value: Shaped(None, finish_reason="content_filter"),
    "empty": lambda text, value: Shaped(""),
}

STYLES = (*VALUE_TRANSFORMS, *SERIALISERS, *WRAPPERS, *SHAPES)


def check_style(style: str) -> list[str]:
    """The parts of `style`; raises ValueError naming an unknown part or a conflict."""
    parts = [part.strip() for part in style.split("+") if part.strip()]
    unknown = [part for part in parts if part not in STYLES]
    if unknown or not parts:
        raise ValueError(f"unknown reply style(s) {unknown or [style]}; known: {', '.join(STYLES)}")
    if sum(part in SERIALISERS for part in parts) > 1 or sum(part in SHAPES for part in parts) > 1:
        raise ValueError(f"style {style!r}: at most one serialiser and one message shape")
    return parts


def shape(style: str, value: Any) -> Shaped:
    """The message a model answering `value` in `style` sends."""
    parts = check_style(style)
    for part in parts:
        if part in VALUE_TRANSFORMS:
            value = VALUE_TRANSFORMS[part](value)
    serialiser = next((part for part in parts if part in SERIALISERS), "json")
    text = SERIALISERS[serialiser](value)
    for part in parts:
        if part in WRAPPERS:
            text = WRAPPERS[part](text, value)
    message_shape = next((part for part in parts if part in SHAPES), None)
    return SHAPES[message_shape](text, value) if message_shape else Shaped(text)

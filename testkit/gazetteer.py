"""A model stand-in for NER on long texts: it quotes the known entities it can see in its input.

The test LLM server answers a request's NER property with every occurrence of the entities it was
given that appear, as whole words, in the object's text of that request, in reading order, once per
occurrence (what the prompt asks a model for). Where two entities overlap the longer one wins,
as a model would quote "Anna Bergman" rather than "Anna Berg" inside it. With `cut_edges`, it
also quotes the piece of an entity cut off by the very start or end of the text it was shown, as
a model shown a part of a document does: the backend must drop those pieces, not label them.

Standard library only: the server runs wherever the tests run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MIN_PIECE = 3  # shortest cut-off piece quoted


def _word_char(char: str) -> bool:
    # Letters and digits of scripts that separate words with spaces; CJK and emoji are not word characters here.
    return (char.isalnum() or char == "_") and ord(char) < 0x2E80


def _whole(text: str, start: int, end: int) -> bool:
    return (start == 0 or not _word_char(text[start - 1])) and (end == len(text) or not _word_char(text[end]))


@dataclass
class Gazetteer:
    control: str
    entities: list[tuple[str, str]]  # (text, label)
    object: str = "text"
    cut_edges: bool = False
    _by_text: dict[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_text = {}
        for text, label in self.entities:
            if not isinstance(text, str) or not text or not isinstance(label, str):
                raise ValueError("entities must be [text, label] pairs of non-empty strings")
            self._by_text.setdefault(text, label)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Gazetteer:
        unknown = set(data) - {"control", "entities", "object", "cut_edges"}
        if unknown or not isinstance(data.get("control"), str) or not isinstance(data.get("entities"), list):
            raise ValueError('expected {"control": str, "entities": [[text, label], ...], "object": str, '
                             '"cut_edges": bool}')
        return cls(data["control"], [(str(text), str(label)) for text, label in data["entities"]],
                   str(data.get("object", "text")), bool(data.get("cut_edges", False)))

    def to_dict(self) -> dict[str, Any]:
        return {"control": self.control, "entities": [list(pair) for pair in self.entities], "object": self.object,
                "cut_edges": self.cut_edges}

    def shown_text(self, prompt: str) -> str | None:
        """The object's text as the prompt shows it: between <object> and </object> (the default template)."""
        opening, closing = f"<{self.object}>\n", f"\n</{self.object}>"
        start = prompt.find(opening)
        end = prompt.rfind(closing)
        return prompt[start + len(opening) : end] if start != -1 and end > start else None

    def occurrences(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end, label) of each whole-word occurrence, longest first where they overlap."""
        hits: list[tuple[int, int, str]] = []
        for entity, label in self._by_text.items():
            start = text.find(entity)
            while start != -1:
                if _whole(text, start, start + len(entity)):
                    hits.append((start, start + len(entity), label))
                start = text.find(entity, start + 1)
        hits.sort(key=lambda hit: (hit[0], -(hit[1] - hit[0])))
        kept: list[tuple[int, int, str]] = []
        for hit in hits:
            if not kept or hit[0] >= kept[-1][1]:
                kept.append(hit)
        return kept

    def pieces(self, text: str, taken: Iterable[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
        """Entities cut by the text's start or end: a proper prefix at the end, a proper suffix at the start."""
        found: list[tuple[int, int, str]] = []
        spans = list(taken)
        for entity, label in self._by_text.items():
            for size in range(len(entity) - 1, MIN_PIECE - 1, -1):
                if text.endswith(entity[:size]) and _whole(text, len(text) - size, len(text)):
                    found.append((len(text) - size, len(text), label))
                    break
            for size in range(len(entity) - 1, MIN_PIECE - 1, -1):
                if text.startswith(entity[-size:]) and _whole(text, 0, size):
                    found.append((0, size, label))
                    break
        unique = {(start, end): (start, end, label) for start, end, label in reversed(found)}  # names sharing a start
        return [piece for piece in unique.values() if not any(s < piece[1] and piece[0] < e for s, e, _ in spans)]

    def answer(self, prompt: str, default: str) -> str | None:
        """The default answer with the control's entities filled in, or None when the prompt shows no text."""
        text = self.shown_text(prompt)
        if text is None:
            return None
        hits = self.occurrences(text)
        if self.cut_edges:
            hits = sorted([*hits, *self.pieces(text, hits)])
        try:
            answer = json.loads(default)
        except ValueError:
            answer = {}
        if not isinstance(answer, dict):
            answer = {}
        answer[self.control] = [{"text": text[start:end], "label": label} for start, end, label in hits]
        return json.dumps(answer, ensure_ascii=False)

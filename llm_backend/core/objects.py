"""Every Label Studio object tag, and how this backend reads each one for the model.

An object tag (<Text>, <Image>, <Paragraphs>...) shows task data; controls point at it by name.
`OBJECT_TAGS` is the one table of them: the parser records every object Label Studio knows (so a
control on <Audio> is skipped as "not read by this backend", never refused as pointing nowhere),
the engine asks `read` for the text a text object shows, and the prompt shows an object as text or
as an attached image by its `medium`. To read a new object as text: a reader here and a row below.

A reader is pure: (the task's data value, the tag's attributes) -> the text the model reads; it
raises ValueError with a message naming the expected shape when the value is not one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .html_text import readable_html

Reader = Callable[[Any, Mapping[str, str]], str]

TEXT, IMAGE = "text", "image"


def _attr(attrs: Mapping[str, str], name: str, default: str) -> str:
    # Label Studio matches attribute names case-insensitively (nameKey, namekey).
    return next((value for key, value in attrs.items() if key.lower() == name.lower()), default)


def _scalar(value: Any) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ValueError(f"must be text, got {type(value).__name__}")
    return str(value)


def read_text(value: Any, attrs: Mapping[str, str]) -> str:
    return _scalar(value)


def read_hypertext(value: Any, attrs: Mapping[str, str]) -> str:
    """The text a reader of the page sees (no markup, scripts or styles)."""
    return readable_html(_scalar(value))


def paragraph_lines(value: Any, attrs: Mapping[str, str]) -> list[tuple[str, int, str]]:
    """Each utterance as the model reads it: (its line, where its text starts in that line, its text).
    ParagraphLabels regions point into the texts (paragraph index, offset), so the line is built here once."""
    if not isinstance(value, list):
        raise ValueError("expects a list of utterances")
    name_key, text_key = _attr(attrs, "nameKey", "author"), _attr(attrs, "textKey", "text")
    lines = []
    for item in value:
        author, text = (str(item.get(name_key) or "").strip(), str(item.get(text_key) or "")) \
            if isinstance(item, dict) else ("", str(item))
        prefix = f"{author}: " if author else ""
        lines.append((prefix + text, len(prefix), text))
    return lines


def read_paragraphs(value: Any, attrs: Mapping[str, str]) -> str:
    """One "author: text" line per utterance (nameKey/textKey say which fields hold them)."""
    return "\n".join(line for line, _start, _text in paragraph_lines(value, attrs))


def chat_messages(value: Any) -> list[tuple[str, str]]:
    """(role, content) of each message, in order (OpenAI-style content parts as their text)."""
    if not isinstance(value, list):
        raise ValueError("expects a list of messages ({\"role\", \"content\"} objects)")
    messages = []
    for message in value:
        if isinstance(message, dict):
            content = message.get("content")
            if isinstance(content, list):  # OpenAI-style content parts: their text
                content = " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
            messages.append((str(message.get("role", "message")), str(content) if content is not None else ""))
        else:
            messages.append(("message", str(message)))
    return messages


def read_chat(value: Any, attrs: Mapping[str, str]) -> str:
    """One "[n] role: content" line per message, in order (a message's own line breaks kept): the number
    is how a control asked about each message (a perRegion control on <Chat>) names it."""
    return "\n".join(f"[{number}] {role}: {content}"
                     for number, (role, content) in enumerate(chat_messages(value), start=1))


def read_table(value: Any, attrs: Mapping[str, str]) -> str:
    """One "key: value" line per field; a list of rows as one block of such lines per row."""
    rows = value if isinstance(value, list) else [value]
    if not rows or not all(isinstance(row, dict) for row in rows):
        raise ValueError("expects an object of {column: value} (or a list of them)")
    return "\n\n".join("\n".join(f"{key}: {cell}" for key, cell in row.items()) for row in rows)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def read_list(value: Any, attrs: Mapping[str, str]) -> str:
    """One line per item, "[id] title: body" (an item's HTML as its visible text), in the task's order:
    the ids are what a Ranker answers with, and `list_item_ids` reads them back from these lines."""
    if not isinstance(value, list):
        raise ValueError("expects a list of items ({\"id\", \"title\", \"body\"} objects)")
    lines = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            item = {"id": index + 1, "body": item}
        body = item.get("body") if item.get("body") is not None else readable_html(str(item.get("html") or ""))
        shown = ": ".join(_one_line(part) for part in (item.get("title"), body) if part not in (None, ""))
        lines.append(f"[{_one_line(item.get('id', index + 1))}] {shown}".rstrip())
    return "\n".join(lines)


def list_item_ids(text: str) -> list[str]:
    """The item ids of a <List>'s text as `read_list` wrote it, in order."""
    return [line[1:line.index("] ")] if "] " in line else line[1:-1] for line in text.splitlines()
            if line.startswith("[") and ("] " in line or line.endswith("]"))]


@dataclass(frozen=True)
class ObjectKind:
    """One object tag: how Label Studio's docs spell it, and how it is read here."""

    tag: str
    medium: str | None = None  # TEXT, IMAGE, or None: Label Studio shows it, this backend does not read it
    read: Reader | None = None  # for TEXT: the task's data value -> the text the model reads
    # Regions on it point into its structure (HyperText: XPaths in the markup; Paragraphs: an utterance and
    # an offset in it): the task's value -> what region building needs of it (RegionInputs.markup).
    structure: Callable[[Any, Mapping[str, str]], Any] | None = None
    # A task value of its shape around a sentence (a preview's example task); None: the sentence itself.
    example: Callable[[str], Any] | None = None

    @property
    def name(self) -> str:
        return self.tag.lower()


OBJECT_TAGS: dict[str, ObjectKind] = {kind.name: kind for kind in (
    ObjectKind("Text", TEXT, read_text),
    ObjectKind("HyperText", TEXT, read_hypertext, structure=lambda markup, _attrs: _scalar(markup)),
    ObjectKind("Paragraphs", TEXT, read_paragraphs, structure=paragraph_lines,
               example=lambda text: [{"author": "Ana", "text": text}, {"author": "Ben", "text": "Me too."}]),
    ObjectKind("List", TEXT, read_list, example=lambda text: [{"id": 1, "title": "First", "body": text},
                                                               {"id": 2, "title": "Second", "body": "Me too."}]),
    ObjectKind("Chat", TEXT, read_chat, example=lambda text: [{"role": "user", "content": text},
                                                               {"role": "assistant", "content": "Me too."}]),
    ObjectKind("Table", TEXT, read_table, example=lambda text: {"review": text, "stars": 5}),
    ObjectKind("Image", IMAGE),
    # Known to Label Studio, not read here: controls on them are skipped with that reason.
    ObjectKind("Audio"), ObjectKind("AudioPlus"), ObjectKind("Video"), ObjectKind("TimeSeries"),
    ObjectKind("PDF"), ObjectKind("MultiChannel"),
)}


def object_kind(tag: str) -> ObjectKind:
    """The row for a lower-case object tag; a tag this table does not know is shown, not read."""
    return OBJECT_TAGS.get(tag) or ObjectKind(tag)

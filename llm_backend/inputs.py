"""What the model reads: the text of each object tag, taken from a task's data."""

from __future__ import annotations

import html
from html.parser import HTMLParser
from typing import Any

from .errors import TaskError
from .fetch import MediaFetcher, is_reference
from .label_config import LabelConfig, ObjectTag


class _TextExtractor(HTMLParser):
    _BLOCKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def readable_html(markup: str) -> str:
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return html.unescape("\n".join(line for line in lines if line))


def _paragraphs(value: Any, obj: ObjectTag) -> str:
    if not isinstance(value, list):
        raise TaskError(f"<Paragraphs name=\"{obj.name}\"> expects a list of utterances in data.{obj.data_key}")
    name_key = "author"
    lines = []
    for item in value:
        if isinstance(item, dict):
            lines.append(f"{item.get(name_key, '')}: {item.get('text', '')}".strip(": "))
        else:
            lines.append(str(item))
    return "\n".join(lines)


def object_text(task: dict[str, Any], obj: ObjectTag, fetcher: MediaFetcher | None = None) -> str:
    """The text an object shows for this task, or a TaskError naming the missing field."""
    data = task.get("data")
    if not isinstance(data, dict):
        raise TaskError("task has no \"data\" object")
    key = obj.data_key
    if key is None:
        return obj.value
    if key not in data:
        present = ", ".join(sorted(map(str, data))) or "none"
        raise TaskError(
            f"task data has no field \"{key}\" (the config's <{obj.tag} name=\"{obj.name}\" value=\"${key}\"> "
            f"reads it; fields present: {present})"
        )
    value = data[key]
    if obj.tag == "paragraphs":
        return _paragraphs(value, obj)
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise TaskError(f"task data field \"{key}\" must be text, got {type(value).__name__}")
    text = str(value)
    if (obj.value_type or "").lower() == "url" or is_reference(text):
        if fetcher is None:
            raise TaskError(f"data.{key} is a URL ({text[:200]}) and media fetching is not configured")
        text = fetcher.fetch_text(text, task.get("id"))
    if obj.tag == "hypertext":
        return readable_html(text)
    return text


def task_texts(config: LabelConfig, task: dict[str, Any], fetcher: MediaFetcher | None = None) -> dict[str, str]:
    """{object name: text} for every object a supported control points to."""
    used = {control.to_name[0] for control in config.controls}
    return {name: object_text(task, obj, fetcher) for name, obj in config.objects.items() if name in used}

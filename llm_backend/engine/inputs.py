"""What the model reads: the text of each object tag, taken from a task's data."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

from ..core.config import LabelConfig, ObjectTag
from ..errors import TaskError
from .fetch import MediaFetcher, is_reference


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
    """{object name: text} for every text object a supported control points to."""
    used = {control.to_name[0] for control in config.controls}
    return {name: object_text(task, obj, fetcher) for name, obj in config.objects.items()
            if name in used and obj.is_text}


@dataclass(frozen=True)
class ImageInput:
    """An image as the model gets it, with the pixel size its coordinates refer to."""

    url: str  # a data: URL with the bytes, or the original URL when the model may fetch it itself
    width: int
    height: int


def _image_size(content: bytes, where: str) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(content)) as image:
            return image.size
    except (UnidentifiedImageError, OSError, ValueError):
        raise TaskError(f"{where[:200]} is not an image this backend can read") from None


def object_image(task: dict[str, Any], obj: ObjectTag, fetcher: MediaFetcher | None,
                 pass_url: bool = False) -> ImageInput:
    data = task.get("data")
    key = obj.data_key
    if not isinstance(data, dict) or key is None or not isinstance(data.get(key), str) or not data[key].strip():
        raise TaskError(f"task data has no image URL in field \"{key}\" (the config's <Image name=\"{obj.name}\" "
                        f"value=\"${key}\"> reads it)")
    value = data[key].strip()
    if value.startswith("data:"):
        _header, _, payload = value.partition(",")
        try:
            content = base64.b64decode(payload, validate=False)
        except ValueError:
            raise TaskError(f"data.{key} is a data: URL that is not valid base64") from None
        width, height = _image_size(content, f"data.{key}")
        return ImageInput(value, width, height)
    if fetcher is None:
        raise TaskError(f"data.{key} is an image URL and media fetching is not configured")
    media = fetcher.fetch(value, task.get("id"))
    width, height = _image_size(media.content, media.url)
    if pass_url and value.startswith(("http://", "https://")):
        return ImageInput(value, width, height)
    content_type = media.content_type.split(";")[0].strip()
    if not content_type.startswith("image/"):
        content_type = "image/png"
    return ImageInput(f"data:{content_type};base64,{base64.b64encode(media.content).decode()}", width, height)


def task_images(config: LabelConfig, task: dict[str, Any], fetcher: MediaFetcher | None = None,
                pass_url: bool = False) -> dict[str, ImageInput]:
    """{object name: image} for every image object a supported control points to."""
    used = {control.to_name[0] for control in config.controls}
    return {name: object_image(task, obj, fetcher, pass_url) for name, obj in config.objects.items()
            if name in used and obj.is_image}

"""What the model reads: the text of each object tag, taken from a task's data."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

from ..core.config import LabelConfig, ObjectTag
from ..core.objects import object_kind
from ..errors import TaskError
from .fetch import MediaFetcher, is_reference


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
    if isinstance(value, str) and ((obj.value_type or "").lower() == "url" or is_reference(value)):
        if fetcher is None:
            raise TaskError(f"data.{key} is a URL ({value[:200]}) and media fetching is not configured")
        value = fetcher.fetch_text(value, task.get("id"))
    read = object_kind(obj.tag).read
    if read is None:
        raise TaskError(f"<{obj.tag}> is not read as text by this backend")
    try:
        return read(value, obj.attrs)
    except ValueError as exc:
        raise TaskError(f"task data field \"{key}\" (read by <{object_kind(obj.tag).tag} name=\"{obj.name}\">) "
                        f"{exc}") from None


def task_texts(config: LabelConfig, task: dict[str, Any], fetcher: MediaFetcher | None = None) -> dict[str, str]:
    """{object name: text} for every text object a supported control points to, and the context objects
    (config.context) whose field the task has."""
    if config.problems:  # options this task should give its controls (core/task_options.py)
        raise TaskError("; ".join(config.problems))
    used = {name for control in config.controls for name in control.to_name}
    data = task.get("data") if isinstance(task.get("data"), dict) else {}
    context = {name for name in config.context if config.objects[name].data_key in data}
    return {name: object_text(task, obj, fetcher) for name, obj in config.objects.items()
            if (name in used or name in context) and obj.is_text}


def task_markup(config: LabelConfig, task: dict[str, Any], fetcher: MediaFetcher | None = None) -> dict[str, Any]:
    """{object name: its structure} for the objects a control labels whose regions point into it
    (HyperText's markup, Paragraphs' utterances; `ObjectKind.structure`). Markup behind a URL is fetched
    again (the text the model read came from the same fetch's text); without a fetcher it is left out
    and its spans with it."""
    data = task.get("data") if isinstance(task.get("data"), dict) else {}
    used = {name for control in config.controls for name in control.to_name}
    structures: dict[str, Any] = {}
    for name, obj in config.objects.items():
        structure, value = object_kind(obj.tag).structure, data.get(obj.data_key or "")
        if name not in used or structure is None or value is None:
            continue
        if isinstance(value, str) and ((obj.value_type or "").lower() == "url" or is_reference(value)):
            if fetcher is None:
                continue
            value = fetcher.fetch_text(value, task.get("id"))
        try:
            structures[name] = structure(value, obj.attrs)
        except ValueError:
            continue  # reading the text reports the task's bad value
    return structures


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
    used = {name for control in config.controls for name in control.to_name}
    return {name: object_image(task, obj, fetcher, pass_url) for name, obj in config.objects.items()
            if name in used and obj.is_image}

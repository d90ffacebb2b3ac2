"""The answer the model must give, generated from the label config.

Two views of one contract: `json_schema(config)` is what the model is asked for (sent as
`response_format`; valid under OpenAI strict structured outputs: every property required,
`additionalProperties: false`, no `oneOf`), and `answer_model(config)` is the Pydantic model that
validates what comes back. Validation is lenient where the intent is clear (label case, aliases,
a bare string for a list) and strict where it is not: a value outside the config never passes.
Invalid items inside lists (an unknown NER label, an unknown choice among several) are dropped
and recorded in the validation context so callers can count them.
"""

from __future__ import annotations

import copy
import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, create_model

from .label_config import Control, ControlKind, LabelConfig, Option, taxonomy_paths

TAXONOMY_SEPARATOR = " / "


@dataclass(frozen=True)
class Dropped:
    control: str
    value: str
    reason: str


@dataclass(frozen=True)
class EntityAnswer:
    text: str
    label: str
    # Position in the model's raw list (items before it may have been dropped): keys its token scores.
    source_index: int = field(default=-1, compare=False)


def _key(value: str) -> str:
    # Case, width and stray quotes/whitespace do not change which label the model meant.
    value = unicodedata.normalize("NFKC", value).strip().strip("\"'`“”‘’.,;:").strip()
    return value.casefold()


def _lookup(options: tuple[Option, ...]) -> dict[str, str]:
    table: dict[str, str] = {}
    for option in options:
        table.setdefault(_key(option.value), option.result_value)
        if option.alias:
            table.setdefault(_key(option.alias), option.result_value)
    return table


def _record(info: ValidationInfo, control: Control, value: object, reason: str) -> None:
    if isinstance(info.context, dict):
        info.context.setdefault("dropped", []).append(Dropped(control.name, str(value)[:200], reason))


def _as_list(value: object) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _allowed(control: Control) -> str:
    return ", ".join(option.value for option in control.options)


def _single_choice(control: Control) -> Callable[[object], str]:
    table = _lookup(control.options)

    def validate(value: object) -> str:
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if not isinstance(value, str) or _key(value) not in table:
            raise ValueError(f"{value!r} is not one of the allowed choices: {_allowed(control)}")
        return table[_key(value)]

    return validate


def _multiple_choices(control: Control) -> Callable[[object, ValidationInfo], list[str]]:
    table = _lookup(control.options)

    def validate(value: object, info: ValidationInfo) -> list[str]:
        chosen: list[str] = []
        for item in _as_list(value):
            if isinstance(item, str) and _key(item) in table:
                if table[_key(item)] not in chosen:
                    chosen.append(table[_key(item)])
            else:
                _record(info, control, item, "not an allowed choice")
        return chosen

    return validate


def _entities(control: Control) -> Callable[[object, ValidationInfo], list[EntityAnswer]]:
    table = _lookup(control.options)

    def validate(value: object, info: ValidationInfo) -> list[EntityAnswer]:
        if not isinstance(value, (list, tuple)):
            raise ValueError("must be a list of {\"text\", \"label\"} objects")
        entities: list[EntityAnswer] = []
        for index, item in enumerate(value):
            if not isinstance(item, dict) or not isinstance(item.get("text"), str) or not item["text"].strip():
                _record(info, control, item, "entity without text")
                continue
            label = item.get("label")
            if not isinstance(label, str) or _key(label) not in table:
                _record(info, control, item, "label not in the config")
                continue
            entities.append(EntityAnswer(item["text"], table[_key(label)], index))
        return entities

    return validate


def _texts(control: Control) -> Callable[[object], list[str]]:
    def validate(value: object) -> list[str]:
        items = _as_list(value)
        if not all(isinstance(item, str) for item in items):
            raise ValueError("must be a list of strings")
        return [item.strip() for item in items if item.strip()]

    return validate


def rating_bounds(control: Control) -> tuple[int, int]:
    return 1, int(control.attrs.get("maxRating", "5") or 5)


def _rating(control: Control) -> Callable[[object], int]:
    low, high = rating_bounds(control)

    def validate(value: object) -> int:
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(f"must be a whole number from {low} to {high}") from None
        if not math.isfinite(number) or number != int(number) or not low <= number <= high:
            raise ValueError(f"must be a whole number from {low} to {high}, got {value!r}")
        return int(number)

    return validate


def number_bounds(control: Control) -> tuple[float | None, float | None, float | None]:
    def parse(name: str) -> float | None:
        raw = control.attrs.get(name)
        try:
            return float(raw) if raw not in (None, "") else None
        except ValueError:
            return None

    return parse("min"), parse("max"), parse("step")


def _number(control: Control) -> Callable[[object], int | float]:
    low, high, step = number_bounds(control)

    def validate(value: object) -> int | float:
        if isinstance(value, bool):
            raise ValueError("must be a number")
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError("must be a number") from None
        if not math.isfinite(number):
            raise ValueError("must be a finite number")
        if (low is not None and number < low) or (high is not None and number > high):
            bounds = " and ".join(f"{word} {bound:g}" for word, bound in (("at least", low), ("at most", high))
                                  if bound is not None)
            raise ValueError(f"must be {bounds}, got {number:g}")
        if step:
            base = low or 0.0
            number = base + round((number - base) / step) * step
            number = round(number, 10)
        return int(number) if number == int(number) else number

    return validate


def _taxonomy(control: Control) -> Callable[[object, ValidationInfo], list[list[str]]]:
    leafs_only = control.attrs.get("leafsOnly", "false").lower() == "true"
    paths = {tuple(_key(part) for part in path): list(path) for path in taxonomy_paths(control.options, leafs_only)}

    def validate(value: object, info: ValidationInfo) -> list[list[str]]:
        chosen: list[list[str]] = []
        for item in _as_list(value):
            parts = item if isinstance(item, list) else str(item).split("/")
            key = tuple(_key(str(part)) for part in parts)
            if key in paths and paths[key] not in chosen:
                chosen.append(paths[key])
            else:
                _record(info, control, item, "not a path of the taxonomy")
        return chosen

    return validate


DATETIME_FORMATS = {
    # Label Studio's DateTime `only` attribute -> the value format it stores.
    "date": ("%Y-%m-%d", "YYYY-MM-DD"),
    "time": ("%H:%M", "HH:MM (24-hour)"),
    "month": ("%Y-%m", "YYYY-MM"),
    "year": ("%Y", "YYYY"),
    "": ("%Y-%m-%dT%H:%M", "YYYY-MM-DDTHH:MM"),
}


def datetime_format(control: Control) -> tuple[str, str]:
    only = ",".join(sorted(part.strip() for part in control.attrs.get("only", "").split(",") if part.strip()))
    return DATETIME_FORMATS.get(only if only in DATETIME_FORMATS else "", DATETIME_FORMATS[""])


def _datetime(control: Control) -> Callable[[object], str]:
    pattern, shown = datetime_format(control)

    def validate(value: object) -> str:
        import datetime as dt

        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        text = str(value).strip() if isinstance(value, (str, int)) else ""
        for candidate in (text, text.replace(" ", "T")[:16], text[:10], text[:7]):
            try:
                return dt.datetime.strptime(candidate, pattern).strftime(pattern)
            except ValueError:
                continue
        raise ValueError(f"must be a date/time written {shown}, got {value!r}")

    return validate


@dataclass(frozen=True)
class BoxAnswer:
    label: str
    x_min: float
    y_min: float
    x_max: float
    y_max: float
    source_index: int = field(default=-1, compare=False)


@dataclass(frozen=True)
class PointAnswer:
    label: str
    x: float
    y: float
    source_index: int = field(default=-1, compare=False)


def _coordinates(item: dict[str, Any], names: tuple[str, ...]) -> tuple[float, ...] | None:
    values = []
    for name in names:
        raw = item.get(name)
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
            return None
        values.append(float(raw))
    return tuple(values)


def _shapes(control: Control) -> Callable[[object, ValidationInfo], list[Any]]:
    table = _lookup(control.options)
    names = ("x_min", "y_min", "x_max", "y_max") if control.kind is ControlKind.RECTANGLES else ("x", "y")
    shape = BoxAnswer if control.kind is ControlKind.RECTANGLES else PointAnswer

    def validate(value: object, info: ValidationInfo) -> list[Any]:
        if not isinstance(value, (list, tuple)):
            raise ValueError("must be a list of objects")
        shapes: list[Any] = []
        for index, item in enumerate(value):
            label = item.get("label") if isinstance(item, dict) else None
            if not isinstance(label, str) or _key(label) not in table:
                _record(info, control, item, "label not in the config")
                continue
            coordinates = _coordinates(item, names)
            if coordinates is None:
                _record(info, control, item, "coordinates missing or not numbers")
                continue
            shapes.append(shape(table[_key(label)], *coordinates, source_index=index))
        return shapes

    return validate


_VALIDATORS: dict[ControlKind, tuple[Any, Callable[[Control], Callable[..., Any]]]] = {
    ControlKind.CHOICES: (str, _single_choice),
    ControlKind.LABELS: (list[EntityAnswer], _entities),
    ControlKind.TEXTAREA: (list[str], _texts),
    ControlKind.RATING: (int, _rating),
    ControlKind.NUMBER: (int | float, _number),
    ControlKind.TAXONOMY: (list[list[str]], _taxonomy),
    ControlKind.DATETIME: (str, _datetime),
    ControlKind.RECTANGLES: (list[BoxAnswer], _shapes),
    ControlKind.KEYPOINTS: (list[PointAnswer], _shapes),
}


@lru_cache(maxsize=256)
def answer_model(config: LabelConfig) -> type[BaseModel]:
    """A Pydantic model with one required field per control, keyed by the control's name."""
    fields: dict[str, Any] = {}
    for index, control in enumerate(config.controls):
        annotation, factory = _VALIDATORS[control.kind]
        if control.kind is ControlKind.CHOICES and control.multiple:
            annotation, factory = list[str], _multiple_choices
        # Control names need not be Python identifiers; the alias carries the real name.
        fields[f"c{index}"] = (Annotated[annotation, BeforeValidator(factory(control))], Field(alias=control.name))
    return create_model(  # type: ignore[call-overload, no-any-return]
        "Answer", __config__=ConfigDict(extra="ignore", arbitrary_types_allowed=True), **fields
    )


def validate_answer(config: LabelConfig, data: object) -> tuple[dict[str, Any], list[Dropped]]:
    """Validate a parsed answer; return {control name: value} and what was dropped.

    Raises pydantic.ValidationError when a required property is missing or a value is invalid.
    """
    context: dict[str, list[Dropped]] = {"dropped": []}
    model = answer_model(config).model_validate(data, context=context)
    values = {control.name: getattr(model, f"c{index}") for index, control in enumerate(config.controls)}
    return values, context["dropped"]


def _describe(control: Control) -> str:
    return re.sub(r"\s+", " ", control.hint or "").strip()[:500]


def control_schema(control: Control) -> dict[str, Any]:
    values = [option.value for option in control.options]
    schema: dict[str, Any]
    if control.kind is ControlKind.CHOICES:
        item = {"type": "string", "enum": values}
        schema = {"type": "array", "items": item} if control.multiple else item
    elif control.kind is ControlKind.LABELS:
        schema = {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "text": {"type": "string", "description": "the entity copied exactly from the text"},
                    "label": {"type": "string", "enum": values},
                },
                "required": ["text", "label"],
                "additionalProperties": False,
            },
        }
    elif control.kind is ControlKind.TEXTAREA:
        schema = {"type": "array", "items": {"type": "string"}}
    elif control.kind is ControlKind.RATING:
        low, high = rating_bounds(control)
        schema = {"type": "integer", "minimum": low, "maximum": high}
    elif control.kind is ControlKind.NUMBER:
        schema = {"type": "number"}
        low, high, _step = number_bounds(control)
        if low is not None:
            schema["minimum"] = low
        if high is not None:
            schema["maximum"] = high
    elif control.kind is ControlKind.DATETIME:
        schema = {"type": "string", "description": f"written {datetime_format(control)[1]}"}
    elif control.kind in (ControlKind.RECTANGLES, ControlKind.KEYPOINTS):
        names = ("x_min", "y_min", "x_max", "y_max") if control.kind is ControlKind.RECTANGLES else ("x", "y")
        schema = {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"label": {"type": "string", "enum": values},
                               **{name: {"type": "number"} for name in names}},
                "required": ["label", *names],
                "additionalProperties": False,
            },
        }
    else:
        leafs_only = control.attrs.get("leafsOnly", "false").lower() == "true"
        paths = [TAXONOMY_SEPARATOR.join(path) for path in taxonomy_paths(control.options, leafs_only)]
        schema = {"type": "array", "items": {"type": "string", "enum": paths}}
    description = _describe(control)
    if description:
        schema["description"] = f"{schema.get('description', '')}; {description}".lstrip("; ")
    return schema


@lru_cache(maxsize=256)
def _json_schema(config: LabelConfig) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {control.name: control_schema(control) for control in config.controls},
        "required": [control.name for control in config.controls],
        "additionalProperties": False,
    }


def json_schema(config: LabelConfig) -> dict[str, Any]:
    """The JSON schema of the answer (a fresh copy: callers may serialise or mutate it)."""

    return copy.deepcopy(_json_schema(config))

"""The answer the model must give, generated from the label config.

Two views of one contract: `json_schema(config)` is what the model is asked for (sent as
`response_format`; valid under OpenAI strict structured outputs: every property required,
`additionalProperties: false`, no `oneOf`), and `validate_answer(config, data)` checks what comes
back with a Pydantic model built from the same control specs. Validation is lenient where the
intent is clear (label case, aliases, a bare string for a list) and strict where it is not: a
value outside the config never passes. Invalid items inside lists (an unknown NER label, an
unknown choice among several) are dropped and reported, so callers can count them.
"""

from __future__ import annotations

import copy
import json
import re
from functools import lru_cache
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo, create_model

from .config import Control, LabelConfig
from .controls import Dropped, spec_for
from .controls.base import Validator


def _describe(control: Control) -> str:
    return re.sub(r"\s+", " ", control.hint or "").strip()[:500]


def control_schema(control: Control) -> dict[str, Any]:
    schema = spec_for(control.kind).json_schema(control)
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


def shared_json_schema(config: LabelConfig) -> dict[str, Any]:
    """The same schema, one object per config, for the request of every task: read it, never change it (what
    hands it to code that may, LiteLLM's, gives a copy: `for_litellm` in models/fastpath.py). Deep-copying it for
    every task was about a quarter of building the request."""
    return _json_schema(config)


@lru_cache(maxsize=256)
def json_schema_text(config: LabelConfig) -> str:
    """The schema as the prompts show it (JSON text), made once per config."""
    return json.dumps(_json_schema(config), ensure_ascii=False)


def _pydantic_validator(validate: Validator) -> BeforeValidator:
    def run(value: object, info: ValidationInfo) -> Any:
        dropped = info.context.setdefault("dropped", []) if isinstance(info.context, dict) else []
        return validate(value, dropped)

    return BeforeValidator(run)


@lru_cache(maxsize=256)
def answer_model(config: LabelConfig) -> type[BaseModel]:
    """A Pydantic model with one required field per control, keyed by the control's name."""
    fields: dict[str, Any] = {}
    for index, control in enumerate(config.controls):
        validate = spec_for(control.kind).validator(control)
        # Control names need not be Python identifiers; the alias carries the real name.
        fields[f"c{index}"] = (Annotated[Any, _pydantic_validator(validate)], Field(alias=control.name))
    return create_model(  # type: ignore[call-overload, no-any-return]
        "Answer", __config__=ConfigDict(extra="ignore"), **fields
    )


def validate_answer(config: LabelConfig, data: object) -> tuple[dict[str, Any], list[Dropped]]:
    """Validate a parsed answer; return {control name: value} and what was dropped.

    Raises pydantic.ValidationError when a required property is missing or a value is invalid.
    """
    context: dict[str, list[Dropped]] = {"dropped": []}
    model = answer_model(config).model_validate(data, context=context)
    values = {control.name: getattr(model, f"c{index}") for index, control in enumerate(config.controls)}
    return values, context["dropped"]


def validate_controls(config: LabelConfig, data: object, error: ValidationError
                      ) -> tuple[dict[str, Any], list[Dropped], dict[str, list[Any]]]:
    """After `validate_answer` raised `error`: the controls that are valid on their own, what they
    dropped, and the error items of each invalid control (by name) for the partial answer.

    Each control is validated by its own spec, so a valid control's value is exactly what a fully
    valid answer would have given it.
    """
    problems: dict[str, list[Any]] = {}
    for item in error.errors():
        name = str(item["loc"][0]) if item["loc"] else ""
        problems.setdefault(name, []).append(item)
    if "" in problems or not isinstance(data, dict):
        return {}, [], problems  # the object itself is unusable, not one control
    values: dict[str, Any] = {}
    dropped: list[Dropped] = []
    for control in config.controls:
        if control.name not in problems:
            values[control.name] = spec_for(control.kind).validator(control)(data[control.name], dropped)
    return values, dropped, problems

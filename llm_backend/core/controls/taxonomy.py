"""<Taxonomy>: paths in a tree of choices, written "Parent / Child" in answers."""

from __future__ import annotations

from typing import Any

from ..agreement import SetReport
from ..config_types import Control, taxonomy_paths
from ..objects import IMAGE, TEXT
from .base import ControlSpec, Dropped, Validator, Value, as_list, drop, is_true, option_key
from .combine import UNION, Combined, union

SEPARATOR = " / "


def selectable_paths(control: Control) -> list[tuple[str, ...]]:
    return taxonomy_paths(control.options, is_true(control, "leafsOnly"))


def _path_label(value: Value) -> list[str]:
    return [SEPARATOR.join(map(str, path)) for path in value.get("taxonomy") or []]


class TaxonomySpec(ControlSpec):
    tag = "Taxonomy"
    media = frozenset({TEXT, IMAGE})  # about the whole input, an image too
    option_tag = "Choice"
    repeats_allowed = True  # the same value under different parents ("Other")

    def multiple(self, attrs: dict[str, str]) -> bool:
        return True

    def json_schema(self, control: Control) -> dict[str, Any]:
        paths = [SEPARATOR.join(path) for path in selectable_paths(control)]
        return {"type": "array", "items": {"type": "string", "enum": paths}}

    def validator(self, control: Control) -> Validator:
        paths = {tuple(option_key(part) for part in path): list(path) for path in selectable_paths(control)}

        def validate(value: object, dropped: list[Dropped]) -> list[list[str]]:
            chosen: list[list[str]] = []
            for item in as_list(value):
                # "/" splits a path the model wrote as one string; a list is a path already split.
                parts = item if isinstance(item, list) else str(item).split("/")
                key = tuple(option_key(str(part)) for part in parts)
                if key in paths and paths[key] not in chosen:
                    chosen.append(paths[key])
                else:
                    drop(dropped, control, item, "not a path of the taxonomy")
            return chosen

        return validate

    def prompt_vars(self, control: Control) -> dict[str, Any]:
        return {"paths": [SEPARATOR.join(path) for path in selectable_paths(control)]}

    def region_values(self, control: Control, answer: list[list[str]]) -> list[Value]:
        return [{"taxonomy": answer}] if answer else []

    def answer_from_values(self, control: Control, values: list[Value]) -> Any:
        return [label for value in values for label in _path_label(value)]

    def typical_answer(self, control: Control, text: str) -> Any:
        paths = selectable_paths(control)
        return [SEPARATOR.join(max(paths, key=len))] if paths else []

    def long_text(self, control: Control) -> str:
        return UNION

    def combine(self, control: Control, answers: list[Any]) -> Combined:
        return union(answers)

    def report(self, control: Control) -> SetReport:
        return SetReport(control.name, control.kind, labels_of=_path_label, multiple=True)

"""The typed parts of a parsed label config: object tags, options, controls, what was skipped.

Kept apart from the parser (`config.py`) because the control specs (`controls/`) are built on these
types and the parser is built on the specs: the table of controls decides how a tag is parsed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from xml.etree.ElementTree import canonicalize

from .objects import IMAGE, TEXT, object_kind


@dataclass(frozen=True)
class ObjectTag:
    """A data tag such as <Text name="text" value="$text"/>."""

    name: str
    tag: str  # lower-case tag name: "text", "hypertext", "paragraphs", "image", ...
    value: str  # the raw value attribute, e.g. "$text"
    value_type: str | None = None
    attrs: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def data_key(self) -> str | None:
        """The task.data key this object reads, or None for a literal value."""
        return self.value[1:] if self.value.startswith("$") and len(self.value) > 1 else None

    @property
    def medium(self) -> str | None:
        """How this backend reads it (objects.py): TEXT, IMAGE, or None when it does not (a list of
        images in `valueList` is not read either)."""
        if any(key.lower() == "valuelist" for key in self.attrs):
            return None
        return object_kind(self.tag).medium

    @property
    def is_text(self) -> bool:
        return self.medium == TEXT

    @property
    def is_image(self) -> bool:
        return self.medium == IMAGE


@dataclass(frozen=True)
class Option:
    """A <Choice> or <Label>; Taxonomy options nest through `children`."""

    value: str
    alias: str | None = None
    hint: str | None = None
    children: tuple[Option, ...] = ()

    @property
    def result_value(self) -> str:
        """What Label Studio stores in results: the alias when one is set."""
        return self.alias or self.value


@dataclass(frozen=True)
class Control:
    name: str
    kind: str  # the lower-case tag, which is also Label Studio's result "type": "choices", "rectanglelabels"
    to_name: tuple[str, ...]
    options: tuple[Option, ...] = ()
    multiple: bool = False
    attrs: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    # The options are read from each task (`value="$field"`, or a Chat's messages): `options` is empty in the
    # parsed config and filled per task by `core/task_options.py`.
    task_options: bool = False
    # A control asked about each item of its object (a perRegion control on <Chat>: each message): the kind of
    # the control as written (choices, rating...), while `kind` is the spec that asks it per item.
    per_item: str = ""
    # The items it is asked about in this task (filled per task, with `task_options`).
    items: tuple[Option, ...] = ()
    # False when this backend does not read its object (an <Audio>) and it is answered from the options its task
    # gives alone (a Choices of ASR hypotheses).
    shown: bool = True

    @property
    def hint(self) -> str | None:
        return self.attrs.get("hint") or self.attrs.get("placeholder") or None

    @property
    def result_type(self) -> str:
        return self.kind


@dataclass(frozen=True)
class SkippedControl:
    name: str
    tag: str
    reason: str


@dataclass(frozen=True)
class LabelConfig:
    xml: str
    objects: dict[str, ObjectTag] = field(hash=False, compare=False)
    controls: tuple[Control, ...]
    skipped: tuple[SkippedControl, ...] = ()
    warnings: tuple[str, ...] = ()  # what was tolerated as Label Studio tolerates it (a repeated value)
    # Objects no control labels that the model reads too, when a control judges against them (the query
    # a Ranker orders by, the prompt two answers of a Pairwise reply to).
    context: tuple[str, ...] = ()
    # Set on a config resolved for one task (`core/task_options.py`): why that task cannot be asked.
    problems: tuple[str, ...] = ()

    @property
    def fingerprint(self) -> str:
        """A hash of the config's canonical XML: Label Studio strips a trailing newline and editors
        re-indent, neither of which changes the config, so neither may change `model_version`."""
        return hashlib.sha256(canonical_xml(self.xml).encode("utf-8")).hexdigest()

    def object_for(self, control: Control) -> ObjectTag:
        return self.objects[control.to_name[0]]

    def control(self, name: str) -> Control | None:
        return next((c for c in self.controls if c.name == name), None)

    @property
    def needs_vision(self) -> bool:
        return any(self.object_for(control).is_image for control in self.controls)


@lru_cache(maxsize=256)
def canonical_xml(xml: str) -> str:
    """C14N 2.0 with whitespace-only text dropped and attributes sorted; call only on XML that
    `parse_label_config` accepted (it refuses DTDs and entities first)."""
    return canonicalize(xml, strip_text=True)


def taxonomy_paths(
    options: tuple[Option, ...], leafs_only: bool, prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    """Every selectable path from the root, e.g. ("Europe", "France")."""
    paths: list[tuple[str, ...]] = []
    for option in options:
        path = (*prefix, option.value)
        if option.children:
            if not leafs_only:
                paths.append(path)
            paths.extend(taxonomy_paths(option.children, leafs_only, path))
        else:
            paths.append(path)
    return paths

"""Label Studio label config XML -> a typed, immutable schema of object and control tags.

Parsing goes through defusedxml (no DTDs, no entities, no external references) with size and
depth limits, because the config arrives in request bodies. Controls this version cannot
predict are listed in `LabelConfig.skipped` with the reason instead of failing the project.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from xml.etree.ElementTree import Element, canonicalize

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from ..errors import LabelConfigError

MAX_CONFIG_CHARS = 1_000_000
MAX_DEPTH = 64
MAX_ATTRIBUTE_CHARS = 10_000

TEXT_OBJECTS = {"text", "hypertext", "paragraphs"}
KNOWN_OBJECTS = TEXT_OBJECTS | {"image", "audio", "video", "timeseries", "table", "pdf", "list", "ranker"}


class ControlKind(str, enum.Enum):
    CHOICES = "choices"
    LABELS = "labels"
    TEXTAREA = "textarea"
    RATING = "rating"
    NUMBER = "number"
    TAXONOMY = "taxonomy"
    DATETIME = "datetime"
    RECTANGLES = "rectanglelabels"
    KEYPOINTS = "keypointlabels"

    @property
    def tag(self) -> str:
        """The tag as Label Studio's docs write it (the parser takes any case)."""
        return _TAG_SPELLING.get(self.value, self.value.capitalize())


_TAG_SPELLING = {"textarea": "TextArea", "datetime": "DateTime", "rectanglelabels": "RectangleLabels",
                 "keypointlabels": "KeyPointLabels"}


# Which controls each kind of object can carry here.
TEXT_KINDS = frozenset({ControlKind.CHOICES, ControlKind.LABELS, ControlKind.TEXTAREA, ControlKind.RATING,
                        ControlKind.NUMBER, ControlKind.TAXONOMY, ControlKind.DATETIME})
IMAGE_KINDS = frozenset({ControlKind.CHOICES, ControlKind.TEXTAREA, ControlKind.RECTANGLES, ControlKind.KEYPOINTS})


# Tags we know of but do not predict (yet): reported, never crashed on.
KNOWN_UNSUPPORTED_CONTROLS = {
    "rectangle", "keypoint", "polygonlabels", "polygon",
    "brushlabels", "brush", "ellipselabels", "ellipse", "hypertextlabels", "paragraphlabels",
    "timeserieslabels", "relations", "relation", "pairwise", "ranker", "magicwand",
    "videorectangle", "timelinelabels", "bitmasklabels", "vectorlabels",
}


@dataclass(frozen=True)
class ObjectTag:
    """A data tag such as <Text name="text" value="$text"/>."""

    name: str
    tag: str  # lower-case tag name: "text", "hypertext", "paragraphs", "image", ...
    value: str  # the raw value attribute, e.g. "$text"
    value_type: str | None = None

    @property
    def data_key(self) -> str | None:
        """The task.data key this object reads, or None for a literal value."""
        return self.value[1:] if self.value.startswith("$") and len(self.value) > 1 else None

    @property
    def is_text(self) -> bool:
        return self.tag in TEXT_OBJECTS

    @property
    def is_image(self) -> bool:
        return self.tag == "image"


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
    kind: ControlKind
    to_name: tuple[str, ...]
    options: tuple[Option, ...] = ()
    multiple: bool = False
    attrs: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def hint(self) -> str | None:
        return self.attrs.get("hint") or self.attrs.get("placeholder") or None

    @property
    def result_type(self) -> str:
        return self.kind.value


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


def _attr(element: Element, name: str, default: str | None = None) -> str | None:
    # Label Studio accepts both toName and toname; attribute names are matched case-insensitively.
    for key, value in element.attrib.items():
        if key.lower() == name.lower():
            return value
    return default


def _walk(element: Element, depth: int = 0) -> Iterator[tuple[Element, int]]:
    if depth > MAX_DEPTH:
        raise LabelConfigError(f"label config is nested deeper than {MAX_DEPTH} levels")
    yield element, depth
    for child in element:
        yield from _walk(child, depth + 1)


def _options(element: Element, child_tag: str) -> tuple[Option, ...]:
    options = []
    for child in element:
        tag = child.tag.lower() if isinstance(child.tag, str) else ""
        if tag == child_tag:
            value = _attr(child, "value")
            if value is None or not value.strip():
                raise LabelConfigError(f"a <{child.tag}> inside <{element.tag}> has no value attribute")
            options.append(Option(value=value, alias=_attr(child, "alias"), hint=_attr(child, "hint"),
                                  children=_options(child, child_tag)))
        else:
            # Options may be grouped in nested <View>s (or headers) for layout.
            options.extend(_options(child, child_tag))
    return tuple(options)


def _flat_values(options: tuple[Option, ...]) -> Iterator[str]:
    for option in options:
        yield option.value
        yield from _flat_values(option.children)


def _parse_control(element: Element, tag: str, name: str, to_name: tuple[str, ...]) -> Control | SkippedControl:
    attrs = {k: v for k, v in element.attrib.items()}
    if _attr(element, "perRegion", "false").lower() == "true":
        return SkippedControl(name, tag, "perRegion controls describe regions; not predicted")
    if _attr(element, "visibleWhen"):
        return SkippedControl(name, tag, "visibleWhen-conditional controls are not predicted")
    if tag == "choices":
        if (_attr(element, "value") or "").startswith("$"):
            return SkippedControl(name, tag, "choices taken from task data ($value) are not supported")
        options = _options(element, "choice")
        if not options:
            raise LabelConfigError(f"<Choices name=\"{name}\"> has no <Choice> values")
        multiple = (_attr(element, "choice") or "single").lower() == "multiple"
        return Control(name, ControlKind.CHOICES, to_name, options, multiple, attrs)
    if tag == "labels":
        options = _options(element, "label")
        if not options:
            raise LabelConfigError(f"<Labels name=\"{name}\"> has no <Label> values")
        return Control(name, ControlKind.LABELS, to_name, options, True, attrs)
    if tag == "textarea":
        return Control(name, ControlKind.TEXTAREA, to_name, (), False, attrs)
    if tag == "rating":
        return Control(name, ControlKind.RATING, to_name, (), False, attrs)
    if tag == "number":
        return Control(name, ControlKind.NUMBER, to_name, (), False, attrs)
    if tag == "datetime":
        return Control(name, ControlKind.DATETIME, to_name, (), False, attrs)
    if tag in ("rectanglelabels", "keypointlabels"):
        options = _options(element, "label")
        if not options:
            raise LabelConfigError(f"<{element.tag} name=\"{name}\"> has no <Label> values")
        kind = ControlKind.RECTANGLES if tag == "rectanglelabels" else ControlKind.KEYPOINTS
        return Control(name, kind, to_name, options, True, attrs)
    if tag == "taxonomy":
        options = _options(element, "choice")
        if not options:
            raise LabelConfigError(f"<Taxonomy name=\"{name}\"> has no <Choice> values")
        return Control(name, ControlKind.TAXONOMY, to_name, options, True, attrs)
    return SkippedControl(name, tag, "this control type is not supported yet")


def _check_duplicates(control: Control) -> None:
    # Taxonomy may repeat a value under different parents ("Other"); flat lists may not.
    if control.kind is ControlKind.TAXONOMY:
        return
    seen: set[str] = set()
    for value in _flat_values(control.options):
        if value in seen:
            raise LabelConfigError(f"control \"{control.name}\" lists the value \"{value}\" twice")
        seen.add(value)


@lru_cache(maxsize=256)
def parse_label_config(xml: str) -> LabelConfig:
    """Parse and resolve a label config; raise LabelConfigError with a message a user can act on."""
    if not isinstance(xml, str) or not xml.strip():
        raise LabelConfigError("label config is empty")
    if len(xml) > MAX_CONFIG_CHARS:
        raise LabelConfigError(f"label config is larger than {MAX_CONFIG_CHARS} characters")
    try:
        root = SafeET.fromstring(xml, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise LabelConfigError(f"label config uses forbidden XML features ({type(exc).__name__})") from None
    except SafeET.ParseError as exc:
        raise LabelConfigError(f"label config is not well-formed XML: {exc}") from None

    objects: dict[str, ObjectTag] = {}
    pending: list[tuple[Element, str, str]] = []
    for element, _depth in _walk(root):
        if not isinstance(element.tag, str):
            continue
        for key, value in element.attrib.items():
            if len(value) > MAX_ATTRIBUTE_CHARS:
                raise LabelConfigError(f"attribute {key} of <{element.tag}> is longer than {MAX_ATTRIBUTE_CHARS}")
        tag = element.tag.lower()
        name = _attr(element, "name")
        if tag in KNOWN_OBJECTS and name and _attr(element, "value") is not None:
            if name in objects:
                raise LabelConfigError(f"two object tags are named \"{name}\"")
            objects[name] = ObjectTag(name, tag, _attr(element, "value") or "", _attr(element, "valueType"))
        elif name and _attr(element, "toName") is not None:
            pending.append((element, tag, name))

    controls: list[Control] = []
    skipped: list[SkippedControl] = []
    names: set[str] = set()
    for element, tag, name in pending:
        if name in names or name in objects:
            raise LabelConfigError(f"two tags are named \"{name}\"; control names must be unique")
        names.add(name)
        to_name = tuple(part.strip() for part in (_attr(element, "toName") or "").split(",") if part.strip())
        missing = [target for target in to_name if target not in objects]
        if not to_name or missing:
            raise LabelConfigError(
                f"control \"{name}\" has toName=\"{_attr(element, 'toName')}\" but no object tag "
                f"(Text, HyperText, Image, ...) is named {', '.join(missing) or '(empty)'}"
            )
        parsed = _parse_control(element, tag, name, to_name)
        if isinstance(parsed, Control):
            target = objects[to_name[0]]
            supported = TEXT_KINDS if target.is_text else IMAGE_KINDS if target.is_image else frozenset()
            if parsed.kind not in supported:
                skipped.append(SkippedControl(name, tag, f"<{element.tag}> on <{target.tag}> is not supported"))
                continue
            if target.data_key is None:
                skipped.append(SkippedControl(name, tag, f"object \"{target.name}\" has no $field value"))
                continue
            _check_duplicates(parsed)
            controls.append(parsed)
        else:
            skipped.append(parsed)
    if not controls and not skipped:
        raise LabelConfigError("label config has no control tags (Choices, Labels, TextArea, ...)")
    return LabelConfig(xml=xml, objects=objects, controls=tuple(controls), skipped=tuple(skipped))


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

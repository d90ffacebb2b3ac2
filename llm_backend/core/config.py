"""Label Studio label config XML -> a typed, immutable schema of object and control tags.

Parsing goes through defusedxml (no DTDs, no entities, no external references) with size and
depth limits, because the config arrives in request bodies. Controls this version cannot
predict are listed in `LabelConfig.skipped` with the reason instead of failing the project.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from functools import lru_cache
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from ..errors import LabelConfigError
from .config_types import Control, LabelConfig, ObjectTag, Option, SkippedControl, canonical_xml, taxonomy_paths
from .controls.base import ControlSpec
from .controls.registry import SPECS
from .objects import OBJECT_TAGS, object_kind

__all__ = ["Control", "LabelConfig", "ObjectTag", "Option", "SkippedControl", "canonical_xml", "parse_label_config",
           "taxonomy_paths"]

log = logging.getLogger(__name__)

MAX_CONFIG_CHARS = 1_000_000
# Named tags with a value that show no task data: never objects.
_LAYOUT_TAGS = frozenset({"view", "header", "style", "label", "choice", "bucket", "filter", "relation", "channel"})
MAX_DEPTH = 64
MAX_ATTRIBUTE_CHARS = 10_000


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


def _options(element: Element, child_tag: str, value_attr: str = "value") -> tuple[Option, ...]:
    options = []
    for child in element:
        tag = child.tag.lower() if isinstance(child.tag, str) else ""
        if tag == child_tag:
            value = _attr(child, value_attr)
            if value is None or not value.strip():
                raise LabelConfigError(f"a <{child.tag}> inside <{element.tag}> has no {value_attr} attribute")
            options.append(Option(value=value, alias=_attr(child, "alias"), hint=_attr(child, "hint"),
                                  children=_options(child, child_tag, value_attr)))
        else:
            # Options may be grouped in nested <View>s (or headers) for layout.
            options.extend(_options(child, child_tag, value_attr))
    return tuple(options)


def _visibility(element: Element, parents: dict[Element, Element]) -> tuple[list[str], str]:
    """The visibleWhen of the element and of every View around it, and the nearest whenRole: Label
    Studio shows a control only when all of them hold."""
    whens: list[str] = []
    role: str | None = None
    node: Element | None = element
    while node is not None:
        if when := (_attr(node, "visibleWhen") or "").strip():
            whens.append(when)
        role = role if role is not None else _attr(node, "whenRole")
        node = parents.get(node)
    return whens, role or ""


def _parse_per_item(element: Element, tag: str, name: str, to_name: tuple[str, ...], target: ObjectTag,
                    parents: dict[Element, Element]) -> Control | SkippedControl:
    """A perRegion control: asked about each item when a spec asks about its object's items one by one (a
    Chat's messages, when one of `whenRole` is selected); else skipped."""
    per_item = next((spec for spec in SPECS.values() if target.tag in spec.per_item_of), None)
    if per_item is None:
        return SkippedControl(name, tag, "perRegion controls describe regions; not predicted")
    whens, role = _visibility(element, parents)
    if any(when != "region-selected" for when in whens):  # shown only after some choice: not predicted
        return SkippedControl(name, tag, "visibleWhen-conditional controls are not predicted")
    parsed = _parse_control(element, tag, name, to_name)
    if isinstance(parsed, SkippedControl):
        return parsed
    if parsed.task_options or type(SPECS[parsed.kind]).region_values is ControlSpec.region_values:
        return SkippedControl(name, tag, f"<{element.tag}> on each item of <{target.tag}> is not supported")
    attrs = {**parsed.attrs, "whenRole": role} if role else parsed.attrs
    return dataclasses.replace(parsed, kind=per_item.kind, per_item=parsed.kind, task_options=True, attrs=attrs)


def _parse_control(element: Element, tag: str, name: str, to_name: tuple[str, ...]) -> Control | SkippedControl:
    attrs = {k: v for k, v in element.attrib.items()}
    spec = SPECS.get(tag)
    if spec is None:
        return SkippedControl(name, tag, "this control type is not supported yet")
    reason = spec.skip_reason(attrs)
    if reason is not None:
        return SkippedControl(name, tag, reason)
    if spec.option_tag is not None and (_attr(element, "value") or "").startswith("$"):
        # Options taken from each task's data: read per task (core/task_options.py).
        return Control(name, spec.kind, to_name, (), spec.multiple(attrs), attrs, task_options=True)
    options: tuple[Option, ...] = ()
    if spec.option_tag is not None:
        options = _options(element, spec.option_tag.lower(), spec.option_attr)
        if not options and spec.options_required:
            # Label Studio accepts it (the annotator would have nothing to pick); the rest is predicted.
            return SkippedControl(name, tag, f"<{element.tag}> has no <{spec.option_tag}> values to choose from")
    return Control(name, spec.kind, to_name, options, spec.multiple(attrs), attrs)


def _unique(control: Control, warnings: list[str]) -> Control:
    """The control with each repeated option value kept once (the first), as Label Studio shows it."""
    if SPECS[control.kind].repeats_allowed:
        return control
    seen: set[str] = set()
    kept: list[Option] = []
    for option in control.options:
        if option.value in seen:
            warnings.append(f"control \"{control.name}\" lists the value \"{option.value}\" twice; it is used once")
            continue
        seen.add(option.value)
        kept.append(option)
    return control if len(kept) == len(control.options) else dataclasses.replace(control, options=tuple(kept))


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
        # An object: a known object tag, or any named tag with a value and no toName (a tag newer than
        # this table), so a control on it is skipped as not read rather than refused as pointing nowhere.
        is_object = tag in OBJECT_TAGS or (_attr(element, "toName") is None and tag not in _LAYOUT_TAGS)
        value = _attr(element, "value")
        if value is None and _attr(element, "valueList") is not None:
            value = ""  # several images in one object (a multi-page document): shown, not read here
        if is_object and name and value is not None:
            if name in objects:
                raise LabelConfigError(f"two object tags are named \"{name}\"")
            objects[name] = ObjectTag(name, tag, value, _attr(element, "valueType"), dict(element.attrib))
            if _attr(element, "toName") == name:  # its own control too (a Chat whose messages are the annotation)
                pending.append((element, tag, name))
        elif name and _attr(element, "toName") is not None:
            pending.append((element, tag, name))

    parents = {child: parent for parent in root.iter() for child in parent}
    controls: list[Control] = []
    skipped: list[SkippedControl] = []
    warnings: list[str] = []
    names: set[str] = set()
    control_names = {name for _element, _tag, name in pending}
    for element, tag, name in pending:
        if name in names or (name in objects and _attr(element, "toName") != name):
            raise LabelConfigError(f"two tags are named \"{name}\"; control names must be unique")
        names.add(name)
        to_name = tuple(part.strip() for part in (_attr(element, "toName") or "").split(",") if part.strip())
        missing = [target for target in to_name if target not in objects]
        if missing and all(target in control_names for target in missing):
            # A helper such as <Filter> points at a control, not at task data: nothing to predict.
            skipped.append(SkippedControl(name, tag, f"points at the control {', '.join(missing)}, not at an object"))
            continue
        if not to_name or missing:
            raise LabelConfigError(
                f"control \"{name}\" has toName=\"{_attr(element, 'toName')}\" but no object tag "
                f"(Text, HyperText, Image, ...) is named {', '.join(missing) or '(empty)'}"
            )
        if _attr(element, "perRegion", "false").lower() == "true":
            parsed = _parse_per_item(element, tag, name, to_name, objects[to_name[0]], parents)
        elif _attr(element, "visibleWhen"):
            parsed = SkippedControl(name, tag, "visibleWhen-conditional controls are not predicted")
        else:
            parsed = _parse_control(element, tag, name, to_name)
        if isinstance(parsed, Control):
            target = objects[to_name[0]]
            unread = next((objects[n] for n in to_name if objects[n].medium is None), None)
            if unread is not None and parsed.task_options and SPECS[parsed.kind].options_suffice:
                # Its options are text the task gives (ASR hypotheses of an <Audio>): chosen from them alone.
                controls.append(_unique(dataclasses.replace(parsed, shown=False), warnings))
                continue
            if unread is not None:
                shown = object_kind(unread.tag).tag + (" valueList" if unread.value == "" else "")
                skipped.append(SkippedControl(name, tag, f"<{shown}> is not read by this backend"))
                continue
            if not SPECS[parsed.kind].accepts(target):
                skipped.append(SkippedControl(name, tag, f"<{element.tag}> on <{target.tag}> is not supported"))
                continue
            if target.data_key is None:
                skipped.append(SkippedControl(name, tag, f"object \"{target.name}\" has no $field value"))
                continue
            controls.append(_unique(parsed, warnings))
        else:
            skipped.append(parsed)
    if not controls and not skipped:
        shown = ", ".join(dict.fromkeys(f"<{object_kind(obj.tag).tag}>" for obj in objects.values()))
        raise LabelConfigError("label config has no control tags (Choices, Labels, TextArea, ...)"
                               + (f": nothing labels its {shown}" if shown else ""))
    targets = {name for control in controls for name in control.to_name}
    context = tuple(name for name, obj in objects.items() if name not in targets and obj.is_text and obj.data_key
                    and any(SPECS[control.kind].reads_context for control in controls))
    for warning in warnings:
        log.warning("label config: %s", warning)
    return LabelConfig(xml=xml, objects=objects, controls=tuple(controls), skipped=tuple(skipped), context=context,
                       warnings=tuple(warnings))


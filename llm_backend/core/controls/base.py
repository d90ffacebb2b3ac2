"""What a control family provides, and the small helpers the families share.

A `ControlSpec` owns everything about one family of Label Studio controls: the fragment of the
answer's JSON schema the model is asked for, how an answer value is validated, the variables its
prompt template sees, the result regions built from a validated value, the answer value an
annotation corresponds to (for few-shot examples) and the report that measures agreement with
annotations. It also says how its tag is parsed (`tag`, `option_tag`, the objects it reads).
`registry.py` lists every spec; nothing outside `core/controls/` branches on a control's kind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from ..align import AlignOptions, Span
from ..config_types import Control, ObjectTag, Option
from ..html_text import readable_html
from ..objects import TEXT
from ..reply_tokens import CharRange, ReplyTokens
from .combine import MAJORITY, Combined, majority
from .demo_rules import schema_answer
from .scoring import SAMPLE_SCORERS, TOKEN_SCORERS

Value = dict[str, Any]  # a region's "value" object, e.g. {"choices": ["Positive"]}


@dataclass(frozen=True)
class Dropped:
    """An item of an answer that was left out (an unknown label among valid ones), and why."""

    control: str
    value: str
    reason: str


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


# `answer_from_regions` returns this when an annotation cannot be written as a valid answer value
# (a single choice left empty): such an annotation is not usable as a few-shot example.
MISSING: Final = _Missing()

Validator = Callable[[object, list[Dropped]], Any]


def option_key(value: str) -> str:
    """How a label the model wrote is compared with the config's: case, width, quotes and a trailing
    full stop do not change which label it meant."""
    value = unicodedata.normalize("NFKC", value).strip().strip("\"'`“”‘’.,;:").strip()
    return value.casefold()


def option_lookup(options: tuple[Option, ...]) -> dict[str, str]:
    """{option_key(value or alias): the value Label Studio stores (the alias when one is set)}."""
    table: dict[str, str] = {}
    for option in options:
        table.setdefault(option_key(option.value), option.result_value)
        if option.alias:
            table.setdefault(option_key(option.alias), option.result_value)
    return table


def as_list(value: object) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def allowed_values(control: Control) -> str:
    return ", ".join(option.value for option in control.options)


def options_in_data(value: object, field_name: str) -> tuple[Option, ...]:
    """Options Label Studio takes from a task (`<Choices value="$field">`): a list of {"value", "alias"?,
    "hint"?, "html"?, "children"?} objects, or of plain strings; an option shown as HTML is described
    to the model by its visible text. Raises ValueError naming the expected shape."""
    if not isinstance(value, list) or not value:
        raise ValueError(f"task data field \"{field_name}\" must be a non-empty list of options "
                         "({\"value\": ...} objects), as Label Studio reads it")
    options: list[Option] = []
    for item in value:
        if isinstance(item, (str, int, float)) and not isinstance(item, bool):
            item = {"value": str(item)}
        if not isinstance(item, dict) or not str(item.get("value", "")).strip():
            raise ValueError(f"an option in task data field \"{field_name}\" has no \"value\"")
        shown = readable_html(str(item["html"])).strip() if item.get("html") else ""
        hint = item.get("hint") or shown or None
        options.append(Option(str(item["value"]), item.get("alias") or None, str(hint) if hint else None,
                              options_in_data(item["children"], field_name) if item.get("children") else ()))
    return tuple(options)


def drop(dropped: list[Dropped], control: Control, value: object, reason: str) -> None:
    dropped.append(Dropped(control.name, str(value)[:200], reason))


def middle_option(control: Control) -> str:
    """The option of median length: what a typical answer's value costs in tokens."""
    values = sorted((option.value for option in control.options), key=len)
    return values[len(values) // 2] if values else ""


def attr(attrs: dict[str, str], name: str, default: str = "") -> str:
    """An attribute of the control's tag; Label Studio matches attribute names case-insensitively."""
    return next((value for key, value in attrs.items() if key.lower() == name.lower()), default)


def is_true(control: Control, attribute: str) -> bool:
    return control.attrs.get(attribute, "false").strip().lower() == "true"


@dataclass(frozen=True)
class Reconciled:
    """One answer from a control's answers in several orders (see `ControlSpec.reorderings`): the value
    kept, the highest score its regions may carry (None: no limit), and what happened, for the log."""

    value: Any
    score_cap: float | None
    note: str


@dataclass(frozen=True)
class RegionInputs:
    """What region building may need beyond the answer: the texts spans point into, the pixel size of
    each image that coordinates refer to, and how quotes are aligned."""

    texts: dict[str, str] = field(default_factory=dict)
    image_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    align: AlignOptions = field(default_factory=AlignOptions)
    # The task's value of objects whose regions point into its structure (HyperText's markup: XPaths;
    # Paragraphs' utterances: index and offset), by object name.
    markup: dict[str, Any] = field(default_factory=dict)
    # True for a long text's part: spans stay at offsets in the text (labels under the control's result type),
    # and are placed in the object's structure (`ControlSpec.place`) once the parts are merged.
    text_only: bool = False


@dataclass
class RegionReport:
    """Regions of one answer, and what could not become a region."""

    regions: list[dict[str, Any]] = field(default_factory=list)
    unaligned: list[Span] = field(default_factory=list)
    match_kinds: dict[str, int] = field(default_factory=dict)
    # Items of a valid answer that could not become a region, by reason (counted in
    # llm_backend_dropped_total{reason=...}): "empty_shape", "unplaced_span", "span_outside_utterances".
    left_out: dict[str, int] = field(default_factory=dict)

    def leave_out(self, reason: str) -> None:
        self.left_out[reason] = self.left_out.get(reason, 0) + 1


def region_id(control: Control, index: int, value: Value) -> str:
    # Deterministic, so the same answer gives byte-identical predictions (cache re-runs, tests).
    raw = json.dumps([control.name, index, value], sort_keys=True, ensure_ascii=False)
    return hashlib.sha1(raw.encode("utf-8")).hexdigest()[:10]


def make_region(control: Control, index: int, value: Value, score: float | None = None) -> dict[str, Any]:
    region: dict[str, Any] = {
        "id": region_id(control, index, value),
        "from_name": control.name,
        "to_name": control.to_name[0],
        "type": control.result_type,
        "value": value,
    }
    if score is not None:
        region["score"] = score
    return region


def item_score(scores: list[float | None], index: int) -> float | None:
    return scores[index] if 0 <= index < len(scores) else None


class ControlSpec:
    """The base of every family; subclasses override what their controls need.

    The class attributes say how the config parser reads the tag: `tag` as Label Studio's docs
    spell it (its lower case is the control's kind and its result "type"), `option_tag` the child
    tag of its options when it has some (`option_attr` the attribute that holds an option's value),
    `media` the kinds of object it can label as a whole (TEXT: any object read as text, IMAGE), and
    `object_tags` the object tags it can label besides (a span control lists the tags whose text
    its offsets point into).

    `score_style` names how its decisions are scored (scoring.py): "value" (the value itself),
    "items" (each list item's "label") or "text" (free text: mean per-token confidence); a family
    with another notion of its decisions overrides `token_scores` and `sample_scores` instead.
    """

    tag: ClassVar[str] = ""
    option_tag: ClassVar[str | None] = None
    option_attr: ClassVar[str] = "value"
    options_required: ClassVar[bool] = True  # with an option_tag: a control without options is not usable
    media: ClassVar[frozenset[str]] = frozenset({TEXT})
    object_tags: ClassVar[frozenset[str]] = frozenset()
    repeats_allowed: ClassVar[bool] = False  # an option value may appear twice (under different parents)
    reads_context: ClassVar[bool] = False  # judged against the task's other inputs (a query): shown them too
    score_style: ClassVar[str] = "value"
    # With options taken from the task, a choice among them can be made from their text alone, so a control on an
    # object this backend does not read (ASR hypotheses of an <Audio>) is still predicted.
    options_suffice: ClassVar[bool] = False
    # Object tags whose items (a Chat's messages) this spec asks perRegion controls about, one by one.
    per_item_of: ClassVar[frozenset[str]] = frozenset()

    @property
    def kind(self) -> str:
        return self.tag.lower()

    @property
    def listed_as(self) -> str:
        """How `doctor` names it among the controls this backend predicts."""
        return self.tag

    def multiple(self, attrs: dict[str, str]) -> bool:
        """Whether a control with these attributes takes several values."""
        return False

    def for_task(self, control: Control, objects: dict[str, ObjectTag], data: dict[str, Any]) -> Control | None:
        """The control as one task shows it (`control.task_options`): its options read from the task (a
        repeated value used once); None when the task gives it nothing to ask. Raises ValueError."""
        options = self.options_from_task(control, objects, data)
        kept = {option.value: option for option in reversed(options)}  # the first of a repeated value
        return dataclasses.replace(control, options=tuple(kept[value] for value in dict.fromkeys(
            option.value for option in options)))

    def options_from_task(self, control: Control, objects: dict[str, ObjectTag], data: dict[str, Any]
                          ) -> tuple[Option, ...]:
        """The options of a control that takes them from each task (`control.task_options`): by default
        Label Studio's dynamic options, the list in the field its `value="$field"` names."""
        field_name = attr(control.attrs, "value").lstrip("$")
        return options_in_data(data.get(field_name), field_name)

    def skip_reason(self, attrs: dict[str, str]) -> str | None:
        """Why a control with these attributes is not predicted, or None when it is."""
        return None

    def accepts(self, obj: ObjectTag) -> bool:
        """Whether this control can label that object here (by its medium or its tag)."""
        return obj.medium in self.media or obj.tag in self.object_tags

    def json_schema(self, control: Control) -> dict[str, Any]:
        raise NotImplementedError

    def validator(self, control: Control) -> Validator:
        """A function (value, dropped) -> the validated value; raises ValueError with a message for the model."""
        raise NotImplementedError

    def template_vars(self, control: Control) -> dict[str, Any]:
        """Every variable `controls/<kind>.j2` sees: the common ones, then this family's (`prompt_vars`).
        The common ones are set for every control, so one edited template may serve several kinds."""
        context: dict[str, Any] = {
            "name": control.name,
            "kind": control.kind,
            "to_name": control.to_name[0],
            "multiple": control.multiple,
            "hint": control.hint,
            "options": [{"value": o.value, "alias": o.alias, "hint": o.hint} for o in control.options],
            "attrs": dict(control.attrs),
            "min": None, "max": None, "step": None, "paths": [], "format": None,
            "shown": control.shown,  # False: its object is not in the prompt (answered from its options)
        }
        context.update(self.prompt_vars(control))
        return context

    def typed_text(self, value: Value) -> list[str]:
        """Text an annotator typed into a region of this control (Label Studio's interactive mode sends
        it as context): free-text controls return it, and it becomes an instruction for the model."""
        return []

    def prompt_vars(self, control: Control) -> dict[str, Any]:
        """Variables for `controls/<kind>.j2` beyond the common ones (name, options, hint...)."""
        return {}

    def region_values(self, control: Control, answer: Any) -> list[Value]:
        """The `value` objects of the regions a validated answer becomes (simple controls)."""
        raise NotImplementedError

    def add_regions(self, control: Control, answer: Any, inputs: RegionInputs, scores: list[float | None],
                    report: RegionReport) -> None:
        """Append this control's regions to `report`; one decision, so the first score is its score."""
        for index, value in enumerate(self.region_values(control, answer)):
            report.regions.append(make_region(control, index, value, scores[0] if scores else None))

    def answer_from_regions(self, control: Control, regions: list[dict[str, Any]]) -> Any:
        """An annotation's regions (this control's) as the answer value the model would give, or MISSING."""
        return self.answer_from_values(control, [region.get("value") or {} for region in regions])

    def answer_from_values(self, control: Control, values: list[Value]) -> Any:
        raise NotImplementedError

    def typical_answer(self, control: Control, text: str) -> Any:
        """A valid answer of typical size for a task with this text: how many answer tokens to expect
        before any model has answered (`llm-backend plan`)."""
        raise NotImplementedError

    def report(self, control: Control) -> Any:
        """A fresh agreement report (see core/agreement/) for evaluating this control."""
        raise NotImplementedError

    def demo_answer(self, control: Control, inputs: RegionInputs) -> Any:
        """The demo model's answer value (LLM_MODEL=demo): simple, deterministic rules applied to this
        control's JSON schema and its object's text (see demo_rules.py). Override it only when the
        schema alone cannot say what is valid."""
        return schema_answer(self.json_schema(control), inputs.texts.get(control.to_name[0], ""), control.name)

    def reorderings(self, control: Control) -> list[dict[str, str]]:
        """Other orders to ask this control in, each as {object name: the object whose input it shows}
        (Pairwise: the two texts swapped). The engine asks the control once more per order."""
        return []

    def reconcile(self, control: Control, first: Any, again: list[Any]) -> Reconciled:
        """One answer from the first one and those given in `reorderings`' orders (same order)."""
        return Reconciled(first, None, "")

    def token_scores(self, control: Control, reply: ReplyTokens, span: CharRange) -> list[float | None]:
        """One score per decision from the reply's token log-probabilities; `span` is where this control's
        value lies in the raw reply (see core/scores.py)."""
        return TOKEN_SCORERS[self.score_style](reply, span)

    def sample_scores(self, control: Control, mine: Any, theirs: list[Any]) -> list[float | None]:
        """One score per decision: how many of the sampled answers' values (`None`: unreadable) agree with
        `mine` (CONFIDENCE=samples, engine/confidence.py)."""
        return SAMPLE_SCORERS[self.score_style](mine, theirs)

    def place(self, control: Control, spans: list[dict[str, Any]], inputs: RegionInputs, report: RegionReport
              ) -> None:
        """A long text's merged spans (text offsets) as this control's regions: as they are, unless its
        regions point into the object's structure (HyperText's XPaths, Paragraphs' utterances)."""
        report.regions.extend(spans)

    def span_label(self, control: Control, value: Value) -> str:
        """The label of a span region's value, for merging a long text's parts (long_text SPANS): Label
        Studio keeps it under the control's result type ("labels", "hypertextlabels")."""
        return str(value[control.result_type][0])

    def long_text(self, control: Control) -> str:
        """How the answers of a long text's parts become one (a strategy name of `combine.py`)."""
        return MAJORITY

    def combine(self, control: Control, answers: list[Any]) -> Combined:
        """One validated answer value from the values the parts gave (at least one)."""
        return majority(answers)

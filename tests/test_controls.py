"""The control registry: every kind has one spec that owns its schema, validation, prompt, regions,
few-shot answer and evaluation, and a round trip through all of them holds for every kind."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jsonschema
import pytest

from llm_backend.core.config import parse_label_config
from llm_backend.core.controls import MISSING, SPECS, RegionInputs, spec_for
from llm_backend.core.demo import demo_reply
from llm_backend.core.evaluate import evaluate
from llm_backend.core.html_text import readable_html
from llm_backend.core.objects import paragraph_lines, read_chat, read_list, read_paragraphs
from llm_backend.core.regions import build_regions
from llm_backend.core.schema import json_schema, validate_answer
from llm_backend.core.task_options import for_task
from llm_backend.engine.examples import result_to_answer
from llm_backend.engine.prompts import DEFAULT_PROMPTS_DIR

TEXT = "Ada Lovelace met Charles Babbage in London on 5 June 1833."
TEXT_OBJECT = '<Text name="t" value="$text"/>'
IMAGE_OBJECT = '<Image name="i" value="$image"/>'
OTHER = "Two people met."
HTML = "<h1>Ada Lovelace</h1><p>She met Charles <b>Babbage</b> in London.</p>"
DEMO_PAGE = [  # capitalised phrases of the page's visible text, placed in the page
    {"start": "/h1[1]/text()[1]", "startOffset": 0, "end": "/h1[1]/text()[1]", "endOffset": 12,
     "globalOffsets": {"start": 0, "end": 12}, "text": "Ada Lovelace", "hypertextlabels": ["Person"]},
    {"start": "/p[1]/text()[1]", "startOffset": 0, "end": "/p[1]/text()[1]", "endOffset": 3,
     "globalOffsets": {"start": 12, "end": 15}, "text": "She", "hypertextlabels": ["Person"]},
    {"start": "/p[1]/text()[1]", "startOffset": 8, "end": "/p[1]/b[1]/text()[1]", "endOffset": 7,
     "globalOffsets": {"start": 20, "end": 35}, "text": "Charles Babbage", "hypertextlabels": ["Person"]},
    {"start": "/p[1]/text()[2]", "startOffset": 4, "end": "/p[1]/text()[2]", "endOffset": 10,
     "globalOffsets": {"start": 39, "end": 45}, "text": "London", "hypertextlabels": ["City"]}]
CHAT = [{"role": "user", "content": "Who met Babbage?"}, {"role": "assistant", "content": TEXT}]
MESSAGE = {"chatmessage": {"role": "assistant", "content": TEXT}}  # how Label Studio stores a Chat message
DIALOG = [{"author": "Ada", "text": TEXT}, {"author": "Ben", "text": "Me too."}]
ITEMS = [{"id": 1, "title": "Engines", "body": "Babbage designed engines."}, {"id": 2, "body": "Lovelace wrote notes."},
         {"id": "x3", "title": "London"}]


@dataclass(frozen=True)
class Case:
    """One control "c" as a config uses it, an annotation of it as Label Studio stores it, and the
    regions the demo model's answer becomes (LLM_MODEL=demo)."""

    control: str
    regions: list[dict[str, Any]]
    demo: list[dict[str, Any]]
    objects: str = TEXT_OBJECT
    to_name: str = "t"


# One case per kind: a new control adds its case here, and every test below runs on it.
CASES: dict[str, Case] = {
    "choices": Case(
        '<Choices name="c" toName="t"><Choice value="Yes" alias="Y"/><Choice value="No"/></Choices>',
        [{"value": {"choices": ["Y"]}}],
        [{"choices": ["No"]}]),  # neither option is named in TEXT: chosen by the text's hash
    "labels": Case(
        '<Labels name="c" toName="t"><Label value="Person"/><Label value="City"/></Labels>',
        [{"value": {"start": 0, "end": 12, "text": "Ada Lovelace", "labels": ["Person"]}},
         {"value": {"start": 36, "end": 42, "text": "London", "labels": ["City"]}}],
        [{"start": 0, "end": 12, "text": "Ada Lovelace", "labels": ["Person"]},
         {"start": 17, "end": 32, "text": "Charles Babbage", "labels": ["Person"]},
         {"start": 36, "end": 42, "text": "London", "labels": ["City"]},
         {"start": 48, "end": 52, "text": "June", "labels": ["City"]}]),  # capitalised phrases
    "textarea": Case('<TextArea name="c" toName="t"/>', [{"value": {"text": ["Two people met."]}}], [{"text": [TEXT]}]),
    "rating": Case('<Rating name="c" toName="t" maxRating="5"/>', [{"value": {"rating": 4}}],
                   [{"rating": 5}]),  # the first number in TEXT within 1..5
    "number": Case('<Number name="c" toName="t" min="0" max="3000"/>', [{"value": {"number": 1833}}],
                   [{"number": 5}]),
    "datetime": Case('<DateTime name="c" toName="t" only="date"/>', [{"value": {"datetime": "1833-06-05"}}],
                     [{"datetime": "2024-01-01"}]),  # TEXT has no ISO date
    "taxonomy": Case(
        '<Taxonomy name="c" toName="t"><Choice value="People"><Choice value="Scientists"/></Choice></Taxonomy>',
        [{"value": {"taxonomy": [["People", "Scientists"]]}}],
        [{"taxonomy": [["People", "Scientists"]]}]),
    "rectanglelabels": Case(
        '<RectangleLabels name="c" toName="i"><Label value="Face"/></RectangleLabels>',
        [{"original_width": 200, "original_height": 100,
          "value": {"x": 10, "y": 20, "width": 25, "height": 50, "rotation": 0, "rectanglelabels": ["Face"]}}],
        [{"x": 25.0, "y": 25.0, "width": 50.0, "height": 50.0, "rotation": 0, "rectanglelabels": ["Face"]}],
        IMAGE_OBJECT, "i"),
    "keypointlabels": Case(
        '<KeyPointLabels name="c" toName="i"><Label value="Eye"/></KeyPointLabels>',
        [{"original_width": 200, "original_height": 100,
          "value": {"x": 50, "y": 40, "width": 0.5, "keypointlabels": ["Eye"]}}],
        [{"x": 25.0, "y": 25.0, "width": 0.5, "keypointlabels": ["Eye"]}],
        IMAGE_OBJECT, "i"),
    "pairwise": Case(
        '<Pairwise name="c" toName="t,u"/>', [{"value": {"selected": "right"}}],
        [{"selected": "left"}],  # the longer text
        TEXT_OBJECT + '<Text name="u" value="$other"/>'),
    "hypertextlabels": Case(
        '<HyperTextLabels name="c" toName="h"><Label value="Person"/><Label value="City"/></HyperTextLabels>',
        [{"value": {"start": "/h1[1]/text()[1]", "startOffset": 0, "end": "/h1[1]/text()[1]", "endOffset": 12,
                    "globalOffsets": {"start": 0, "end": 12}, "text": "Ada Lovelace", "hypertextlabels": ["Person"]}},
         {"value": {"start": "/p[1]/text()[1]", "startOffset": 8, "end": "/p[1]/b[1]/text()[1]", "endOffset": 7,
                    "globalOffsets": {"start": 20, "end": 35}, "text": "Charles Babbage",
                    "hypertextlabels": ["Person"]}}],
        DEMO_PAGE,
        '<HyperText name="h" value="$html"/>', "h"),
    "ranker": Case(
        '<Ranker name="c" toName="l"/>', [{"value": {"ranker": {"c": ["2", "x3", "1"]}}}],
        [{"ranker": {"c": ["1", "2", "x3"]}}],  # the list's own order
        TEXT_OBJECT + '<List name="l" value="$items"/>', "l"),
    "paragraphlabels": Case(
        '<ParagraphLabels name="c" toName="p"><Label value="Person"/><Label value="Reply"/></ParagraphLabels>',
        [{"value": {"start": "0", "end": "0", "startOffset": 0, "endOffset": 12, "text": "Ada Lovelace",
                    "paragraphlabels": ["Person"]}},
         {"value": {"start": "1", "end": "1", "startOffset": 0, "endOffset": 6, "text": "Me too",
                    "paragraphlabels": ["Reply"]}}],
        [{"start": "0", "end": "0", "startOffset": 0, "endOffset": 57, "text": TEXT[:-1], "paragraphlabels": ["Reply"]},
         {"start": "1", "end": "1", "startOffset": 0, "endOffset": 6, "text": "Me too", "paragraphlabels": ["Person"]}],
        '<Paragraphs name="p" value="$dialog"/>', "p"),
    "chatmessage": Case(  # a perRegion control on a Chat: asked about each message of its role
        '<Choices name="c" toName="m" perRegion="true" whenRole="assistant"><Choice value="Good"/><Choice value="Bad"/>'
        '</Choices>',
        [{"id": "m2", "from_name": "m", "type": "chatmessage", "value": MESSAGE},
         {"id": "m2", "type": "choices", "value": {**MESSAGE, "choices": ["Bad"]}}],
        [MESSAGE, {**MESSAGE, "choices": ["Bad"]}],  # chosen by the message's hash
        '<Chat name="m" value="$chat"/>', "m"),
    "chat": Case(  # a Chat that is its own control: the conversation is written
        '<Chat name="c" value="$convo" toName="c" messageroles="user,assistant" minMessages="2"/>',
        [{"value": {"chatmessage": {"role": "user", "content": "Who met Babbage?"}}},
         {"value": {"chatmessage": {"role": "assistant", "content": "Ada Lovelace."}}}],
        [{"chatmessage": {"role": "user", "content": f"{TEXT[:-1]} (1)"}},
         {"chatmessage": {"role": "assistant", "content": f"{TEXT[:-1]} (2)"}}],
        TEXT_OBJECT, "c"),
}
KINDS = list(CASES)
DATA = {"text": TEXT, "other": OTHER, "items": ITEMS, "html": HTML, "image": "x.png", "dialog": DIALOG, "chat": CHAT,
        "convo": []}
INPUTS = RegionInputs(texts={"t": TEXT, "u": OTHER, "l": read_list(ITEMS, {}), "h": readable_html(HTML),
                             "p": read_paragraphs(DIALOG, {}), "m": read_chat(CHAT, {}), "c": ""},
                      image_sizes={"i": (200, 100)}, markup={"h": HTML, "p": paragraph_lines(DIALOG, {})})


def config_for(kind: str) -> Any:
    """The case's config as a task of DATA shows it (a per-message control is asked about its messages)."""
    case = CASES[kind]
    return for_task(parse_label_config(f"<View>{case.objects}{case.control}</View>"), {"data": DATA})


def annotation(kind: str) -> list[dict[str, Any]]:
    case = CASES[kind]
    return [{"from_name": "c", "to_name": case.to_name, "type": kind, **region} for region in case.regions]


def test_every_kind_has_exactly_one_spec_and_a_template() -> None:
    for kind, spec in SPECS.items():
        assert spec.kind == kind == spec.tag.lower() and spec_for(kind) is spec
        assert (DEFAULT_PROMPTS_DIR / "controls" / f"{kind}.j2").is_file(), kind
    assert set(CASES) == set(SPECS)  # this file covers every kind too


def test_an_unknown_kind_is_an_error_not_a_guess() -> None:
    with pytest.raises(LookupError, match="no ControlSpec"):
        spec_for("polygonlabels")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", KINDS)
def test_an_annotation_round_trips_through_every_part_of_the_spec(kind: str) -> None:
    config = config_for(kind)
    gold = annotation(kind)
    # Few-shot: the annotation as the answer the model would give, which the schema and validation accept.
    answer = result_to_answer(config, gold)
    assert answer is not None
    jsonschema.validate(answer, json_schema(config))
    values, dropped = validate_answer(config, answer)
    assert dropped == []
    # Regions from that answer are the annotation again, and evaluation calls them identical.
    regions = build_regions(config, values, INPUTS).regions
    assert [r["value"] for r in regions] == [{**g["value"], **({"rotation": 0} if kind == "rectanglelabels"
                                                                else {})} for g in gold]
    task = {"id": 1, "data": DATA, "annotations": [{"result": gold}]}
    report = evaluate(config, [task], {"1": regions})
    [control_report] = report.controls
    assert control_report.kind == kind and control_report.headline == 1.0
    assert report.worst == []


@pytest.mark.parametrize("kind", KINDS)
def test_the_typical_answer_used_to_plan_answer_tokens_is_a_valid_answer(kind: str) -> None:
    config = config_for(kind)
    [control] = config.controls
    answer = {"c": spec_for(kind).typical_answer(control, TEXT * 10)}
    jsonschema.validate(answer, json_schema(config))
    values, dropped = validate_answer(config, answer)
    assert dropped == [] and values["c"] not in (None, [], "")


def test_datetime_annotations_become_valid_few_shot_answers() -> None:
    # Was: {"c": []}, which validate_answer rejects, so DateTime projects got invalid examples.
    config = config_for("datetime")
    answer = result_to_answer(config, annotation("datetime"))
    assert answer == {"c": "1833-06-05"}
    assert validate_answer(config, answer)[0] == {"c": "1833-06-05"}


@pytest.mark.parametrize("kind", ["rectanglelabels", "keypointlabels"])
def test_shape_annotations_become_pixel_answers(kind: str) -> None:
    answer = result_to_answer(config_for(kind), annotation(kind))
    expected = ({"label": "Face", "x_min": 20.0, "y_min": 20.0, "x_max": 70.0, "y_max": 70.0}
                if kind == "rectanglelabels" else {"label": "Eye", "x": 100.0, "y": 40.0})
    assert answer == {"c": [expected]}


def test_an_annotation_that_cannot_be_an_answer_is_not_an_example() -> None:
    empty_single_choice = result_to_answer(config_for("choices"), [])
    no_size = [{**annotation("rectanglelabels")[0], "original_width": None}]
    assert empty_single_choice is None and result_to_answer(config_for("rectanglelabels"), no_size) is None
    assert spec_for("rating").answer_from_values(config_for("rating").controls[0], []) is MISSING


def test_a_wrong_datetime_is_scored_as_wrong() -> None:
    # Was: DateTime scored as a Number report, whose headline stayed None ("nothing to compare").
    config = config_for("datetime")
    task = {"id": 1, "data": {"text": TEXT}, "annotations": [{"result": annotation("datetime")}]}
    wrong = [{"from_name": "c", "to_name": "t", "type": "datetime", "value": {"datetime": "1834-01-01"}}]
    report = evaluate(config, [task], {"1": wrong})
    [datetime] = report.controls
    assert (datetime.kind, datetime.headline_name, datetime.headline) == ("datetime", "accuracy", 0.0)
    assert report.accuracy == 0.0 and report.worst[0].controls == {"c": ("1833-06-05", "1834-01-01")}


@pytest.mark.parametrize("kind", KINDS)
def test_the_demo_model_answers_every_kind_validly_and_deterministically(kind: str) -> None:
    """LLM_MODEL=demo: a spec's demo answer passes its schema and validation and gives regions. A new kind
    fails here until its case's `demo` regions are what its demo answer gives."""
    config = config_for(kind)
    inputs = INPUTS
    reply = demo_reply(config, inputs)
    answer = json.loads(reply)
    jsonschema.validate(answer, json_schema(config))
    values, dropped = validate_answer(config, answer)
    assert dropped == []
    regions = build_regions(config, values, inputs).regions
    assert [region["value"] for region in regions] == CASES[kind].demo
    assert demo_reply(config, inputs) == reply


def test_demo_rules_pick_what_the_text_names_and_numbers_within_bounds() -> None:
    config = parse_label_config('<View><Text name="t" value="$text"/><Choices name="c" toName="t">'
                                '<Choice value="Positive"/><Choice value="Negative"/></Choices>'
                                '<Number name="n" toName="t" min="1900" max="2100"/>'
                                '<DateTime name="d" toName="t" only="date"/></View>')
    text = "On 2023-07-14 the 3 reviewers of the 1998 edition were negative. Too long."
    answer = json.loads(demo_reply(config, RegionInputs(texts={"t": text})))
    assert answer == {"c": "Negative", "n": 1998, "d": "2023-07-14"}
    empty = json.loads(demo_reply(config, RegionInputs(texts={"t": ""})))
    assert validate_answer(config, empty)[1] == [] and empty["d"] == "2024-01-01"

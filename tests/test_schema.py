"""The answer contract: JSON schema for the model, Pydantic validation for its reply."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from llm_backend.core.answer import parse_answer
from llm_backend.core.config import parse_label_config
from llm_backend.core.controls import EntityAnswer
from llm_backend.core.reading import read_json
from llm_backend.core.schema import json_schema
from llm_backend.errors import AnswerError
from tests.conftest import ALL_CONTROLS_CONFIG, CHOICES_CONFIG

ALL = parse_label_config(ALL_CONTROLS_CONFIG)
GOOD = {
    "sentiment": "Positive", "topics": ["Tech", "Politics"],
    "ner": [{"text": "Ada", "label": "Person"}], "summary": ["A note."], "quality": 4, "year": 1999,
    "category": ["News / World"],
}


def _strict_violations(schema: dict[str, Any], path: str = "$") -> list[str]:
    """OpenAI strict structured outputs: objects close and require every property; no oneOf."""
    problems = []
    if "oneOf" in schema:
        problems.append(f"{path}: oneOf")
    if schema.get("type") == "object":
        if schema.get("additionalProperties") is not False:
            problems.append(f"{path}: additionalProperties must be false")
        if sorted(schema.get("required", [])) != sorted(schema.get("properties", {})):
            problems.append(f"{path}: every property must be required")
        for name, sub in schema.get("properties", {}).items():
            problems += _strict_violations(sub, f"{path}.{name}")
    if schema.get("type") == "array":
        problems += _strict_violations(schema["items"], f"{path}[]")
    return problems


@pytest.mark.parametrize("xml", [CHOICES_CONFIG, ALL_CONTROLS_CONFIG], ids=["choices", "all-controls"])
def test_schema_is_valid_and_strict(xml: str) -> None:
    schema = json_schema(parse_label_config(xml))
    jsonschema.Draft202012Validator.check_schema(schema)
    assert _strict_violations(schema) == []


def test_good_answer_matches_schema_and_validates() -> None:
    jsonschema.validate(GOOD, json_schema(ALL))
    answer = parse_answer(ALL, json.dumps(GOOD))
    assert answer.values == {
        "sentiment": "Positive", "topics": ["Tech", "POL"], "ner": [EntityAnswer("Ada", "Person")],
        "summary": ["A note."], "quality": 4, "year": 1999, "category": [["News", "World"]],
    }
    assert answer.dropped == []


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ('```json\n{"a": 1}\n```', {"a": 1}),
        ('Here is the answer:\n```\n{"a": [1, 2]}\n```\nHope it helps', {"a": [1, 2]}),
        ('Sure! {"a": "x {y}"} as requested.', {"a": "x {y}"}),
        ('{bad} then {"a": 2}', {"a": 2}),
    ],
    ids=["bare", "fenced", "fenced-prose", "prose", "skip-invalid-brace"],
)
def test_read_json(content: str, expected: dict[str, Any]) -> None:
    assert read_json(content).value == expected


@pytest.mark.parametrize("content", ["", "no json here", "[1, 2]", "```\nplain text\n```"],
                         ids=["empty", "prose", "list", "fence"])
def test_read_json_rejects(content: str) -> None:
    with pytest.raises(AnswerError):
        read_json(content)


@pytest.mark.parametrize(
    ("patch", "expected", "dropped"),
    [
        ({"sentiment": "positive"}, {"sentiment": "Positive"}, 0),
        ({"sentiment": " NEGATIVE. "}, {"sentiment": "Negative"}, 0),
        ({"sentiment": ["Neutral"]}, {"sentiment": "Neutral"}, 0),
        ({"topics": ["pol", "Cooking", "tech", "Tech"]}, {"topics": ["POL", "Tech"]}, 1),
        ({"topics": "Sports"}, {"topics": ["Sports"]}, 0),
        ({"ner": [{"text": "Ada", "label": "person"}, {"text": "Mars", "label": "Planet"}, {"label": "Person"}]},
         {"ner": [EntityAnswer("Ada", "Person")]}, 2),
        ({"summary": "Just a string"}, {"summary": ["Just a string"]}, 0),
        ({"quality": "5"}, {"quality": 5}, 0),
        ({"year": 1999.4}, {"year": 1999}, 0),
        ({"category": ["news/local", "Opinion", "Sports / Nope"]}, {"category": [["News", "Local"], ["Opinion"]]}, 1),
    ],
    ids=["case", "padding", "single-as-list", "multi-drops-invalid", "multi-bare", "ner-drops-invalid", "textarea-str",
         "rating-str", "number-step", "taxonomy"],
)
def test_lenient_where_intent_is_clear(patch: dict[str, Any], expected: dict[str, Any], dropped: int) -> None:
    answer = parse_answer(ALL, json.dumps({**GOOD, **patch}))
    for key, value in expected.items():
        assert answer.values[key] == value
    assert len(answer.dropped) == dropped


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"sentiment": "Great"}, "sentiment.*not one of the allowed choices"),
        ({"quality": 9}, "quality.*from 1 to 5"),
        ({"quality": 2.5}, "quality.*whole number"),
        ({"year": 1800}, "year.*at least 1900 and at most 2100"),
        ({"year": "soon"}, "year.*number"),
        ({"summary": [1, 2]}, "summary.*strings"),
        ({"ner": "Ada"}, "ner.*list"),
    ],
    ids=["invalid-single", "rating-range", "rating-fraction", "number-range", "number-text", "textarea-type",
         "ner-type"],
)
def test_strict_where_it_is_not(patch: dict[str, Any], message: str) -> None:
    with pytest.raises(AnswerError, match=message):
        parse_answer(ALL, json.dumps({**GOOD, **patch}))


def test_missing_property_is_an_error_and_extra_ones_are_ignored() -> None:
    missing = {k: v for k, v in GOOD.items() if k != "ner"}
    with pytest.raises(AnswerError, match=r"ner.*Field required"):
        parse_answer(ALL, json.dumps(missing))
    answer = parse_answer(ALL, json.dumps({**GOOD, "injected": "Malicious", "sentiment_2": "x"}))
    assert set(answer.values) == {c.name for c in ALL.controls}


def test_control_names_that_are_not_identifiers() -> None:
    config = parse_label_config(
        '<View><Text name="t" value="$t"/><Choices name="my-label class" toName="t"><Choice value="A"/>'
        '</Choices><Choices name="model_config" toName="t"><Choice value="B"/></Choices></View>'
    )
    answer = parse_answer(config, '{"my-label class": "a", "model_config": "b"}')
    assert answer.values == {"my-label class": "A", "model_config": "B"}

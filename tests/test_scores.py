"""Scores from token log-probabilities (crafted by the test server), and the documented fallback."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest

from llm_backend.core.config import parse_label_config
from llm_backend.core.scores import control_scores, token_offsets
from testkit.llm_server import FakeLLMServer, Reply
from tests.conftest import CHOICES_CONFIG, fixture_json

NER_CONFIG = fixture_json("setup.json")["schema"]


def tokens(content: str, low: dict[str, float]) -> list[dict[str, Any]]:
    """Split JSON text into word-ish tokens; tokens listed in `low` get that logprob, others -0.01."""
    pieces = re.findall(r'\w+|\s+|[^\w\s]+', content)
    assert "".join(pieces) == content
    return [{"token": p, "logprob": low.get(p, -0.01), "bytes": None, "top_logprobs": []} for p in pieces]


def _scores(result: dict[str, Any]) -> dict[str, Any]:
    """{entity text, or control name for other regions: region score}."""
    return {(r["value"]["text"] if r["type"] == "labels" else r["from_name"]): r.get("score") for r in result["result"]}


def test_token_offsets_refuse_tokens_that_do_not_spell_the_content() -> None:
    assert token_offsets([{"token": "{", "logprob": -1.0}], "{}") is None
    assert token_offsets([{"token": "{}", "logprob": -1.0}], "{}") == [(0, 2, -1.0)]


def test_choice_score_is_the_probability_of_the_chosen_label(make_client: Any, llm: FakeLLMServer) -> None:
    content = '{"sentiment": "Negative"}'
    llm.set_default(Reply(content=content, logprobs=tokens(content, {"Negative": -0.5})))
    body = {"label_config": CHOICES_CONFIG, "tasks": [{"data": {"text": "meh"}}]}
    [result] = make_client().post("/predict", json=body).get_json()["results"]
    assert result["result"][0]["score"] == pytest.approx(math.exp(-0.5), abs=1e-4)
    assert result["score"] == pytest.approx(math.exp(-0.5), abs=1e-4)
    assert llm.requests[0]["logprobs"] is True


def test_entity_scores_follow_their_own_label_tokens(make_client: Any, llm: FakeLLMServer) -> None:
    answer = {"sentiment": "Positive",
              "ner": [{"text": "Nobody", "label": "Alien"}, {"text": "John", "label": "Person"},
                      {"text": "Acme Corp", "label": "Organization"}],
              "summary": ["fine"]}
    content = json.dumps(answer)
    llm.set_default(Reply(content=content, logprobs=tokens(content, {"Organization": -1.2, "Positive": -0.1})))
    body = {"label_config": NER_CONFIG, "tasks": [{"data": {"text": "John works at Acme Corp."}}]}
    [result] = make_client().post("/predict", json=body).get_json()["results"]
    by_text = _scores(result)
    # The dropped first entity ("Alien") must not shift the scores of the others.
    assert by_text["John"] == pytest.approx(math.exp(-0.01), abs=1e-4)
    assert by_text["Acme Corp"] == pytest.approx(math.exp(-1.2), abs=1e-4)
    assert by_text["sentiment"] == pytest.approx(math.exp(-0.1), abs=1e-4)
    assert result["score"] == pytest.approx(math.exp(-1.2), abs=1e-4)  # the least certain decision


def test_without_logprobs_spans_score_by_alignment_and_choices_have_none(make_client: Any,
                                                                         llm: FakeLLMServer) -> None:
    llm.set_default(Reply(json={"sentiment": "Positive", "ner": [{"text": "Jonh Smith", "label": "Person"},
                                                                  {"text": "Acme", "label": "Organization"}],
                                "summary": []}))
    body = {"label_config": NER_CONFIG, "tasks": [{"data": {"text": "John Smith founded Acme in 1990."}}]}
    [result] = make_client(llm_logprobs="off").post("/predict", json=body).get_json()["results"]
    assert "logprobs" not in llm.requests[0]
    scores = _scores(result)
    assert scores["sentiment"] is None
    assert scores["Acme"] == 1.0
    assert 0.8 < scores["John Smith"] < 1.0  # a fuzzy match scores its similarity
    assert result["score"] == scores["John Smith"]


def test_no_score_at_all_when_nothing_supports_one(make_client: Any, llm: FakeLLMServer) -> None:
    llm.set_default(Reply(json={"sentiment": "Positive"}))
    body = {"label_config": CHOICES_CONFIG, "tasks": [{"data": {"text": "x"}}]}
    [result] = make_client(llm_logprobs="off").post("/predict", json=body).get_json()["results"]
    assert "score" not in result and "score" not in result["result"][0]


def test_control_scores_on_every_shape() -> None:
    from tests.conftest import ALL_CONTROLS_CONFIG

    config = parse_label_config(ALL_CONTROLS_CONFIG)
    content = json.dumps({"sentiment": "Positive", "topics": ["Tech", "Sports"], "ner": [],
                          "summary": ["short text"], "quality": 4, "year": 1999, "category": ["Opinion"]})
    scores = control_scores(config, content, tokens(content, {"Sports": -2.0, "4": -0.3, "1999": -0.7}))
    assert scores["topics"] == [pytest.approx(math.exp(-2.0), abs=1e-4)]
    assert scores["quality"] == [pytest.approx(math.exp(-0.3), abs=1e-4)]
    assert scores["year"] == [pytest.approx(math.exp(-0.7), abs=1e-4)]
    assert scores["ner"] == []
    assert scores["summary"][0] == pytest.approx(math.exp(-0.01), abs=1e-4)

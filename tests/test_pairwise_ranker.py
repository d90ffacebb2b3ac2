"""Pairwise (asked in both orders) and Ranker over a List, through /predict and the test LLM server."""

from __future__ import annotations

from typing import Any

from llm_backend.core.config import parse_label_config
from llm_backend.core.objects import list_item_ids, read_list
from testkit.llm_server import FakeLLMServer, Reply

PAIRWISE = ('<View><Text name="prompt" value="$prompt"/><Text name="a" value="$answer1"/>'
            '<Text name="b" value="$answer2"/><Pairwise name="better" toName="a,b"/></View>')
TASK = {"id": 7, "data": {"prompt": "What is the capital of France?", "answer1": "ALPHA: Paris.",
                          "answer2": "BETA: Lyon, I think."}}


def _predict(client: Any, config: str, task: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/predict", json={"label_config": config, "tasks": [task]})
    assert response.status_code == 200, response.get_data(as_text=True)
    [item] = response.get_json()["results"]
    return item


def test_pairwise_asks_both_orders_and_keeps_an_answer_they_agree_on(make_client: Any, llm: FakeLLMServer) -> None:
    # A consistent judge: ALPHA is better wherever it is shown.
    llm.add_rule("<a>\nALPHA", Reply(json={"better": "left"}))
    llm.add_rule("<a>\nBETA", Reply(json={"better": "right"}))
    item = _predict(make_client(), PAIRWISE, TASK)
    assert llm.calls == 2
    first, second = (request["messages"][-1]["content"] for request in llm.requests)
    assert "<a>\nALPHA: Paris.\n</a>" in first and "<a>\nBETA: Lyon, I think.\n</a>" in second
    assert "What is the capital of France?" in first and "What is the capital of France?" in second  # context
    [region] = item["result"]
    assert (region["from_name"], region["to_name"], region["type"]) == ("better", "a", "pairwise")
    assert region["value"] == {"selected": "left"} and "score" not in region  # no logprobs, no cap


def test_pairwise_that_flips_with_the_order_is_returned_with_a_low_score(make_client: Any,
                                                                          llm: FakeLLMServer) -> None:
    llm.set_default(Reply(json={"better": "left"}))  # position bias: always the first one shown
    item = _predict(make_client(), PAIRWISE, TASK)
    assert llm.calls == 2
    [region] = item["result"]
    assert region["value"] == {"selected": "left"} and region["score"] == 0.5 and item["score"] == 0.5


def test_pairwise_beside_other_controls_asks_only_the_pairwise_again(make_client: Any, llm: FakeLLMServer) -> None:
    config = PAIRWISE.replace("</View>", '<Choices name="topic" toName="prompt"><Choice value="Geography"/>'
                                          '<Choice value="Other"/></Choices></View>')
    llm.add_rule("<a>\nALPHA", Reply(json={"better": "left", "topic": "Geography"}))
    llm.add_rule("<a>\nBETA", Reply(json={"better": "right"}))
    item = _predict(make_client(), config, TASK)
    second = llm.requests[1]["messages"][-1]["content"]
    assert '"topic"' not in second and '"better"' in second
    assert {r["from_name"]: r["value"] for r in item["result"]} == {"better": {"selected": "left"},
                                                                    "topic": {"choices": ["Geography"]}}
    # The same task again is answered from the cache, both orders.
    again = _predict(make_client(), config, TASK)
    assert llm.calls == 2 and again["result"] == item["result"]


def test_pairwise_needs_two_objects() -> None:
    config = parse_label_config('<View><Text name="a" value="$a"/><Pairwise name="p" toName="a"/>'
                                '<Choices name="c" toName="a"><Choice value="X"/></Choices></View>')
    assert [c.name for c in config.controls] == ["c"]
    assert "two different objects" in config.skipped[0].reason


RANKER = ('<View><Text name="query" value="$query"/><List name="answers" value="$items" title="Results"/>'
          '<Ranker name="rank" toName="answers"/></View>')
ITEMS = [{"id": 1, "title": "Opossums", "body": "Marsupials\nof North America."},
         {"id": "b2", "title": "Pest control", "body": "They eat ticks."}, {"id": 3, "body": "Unrelated."}]


def test_a_list_is_read_as_one_line_per_item_with_its_id() -> None:
    text = read_list(ITEMS, {})
    assert text == "[1] Opossums: Marsupials of North America.\n[b2] Pest control: They eat ticks.\n[3] Unrelated."
    assert list_item_ids(text) == ["1", "b2", "3"]


def test_ranker_orders_the_items_and_keeps_the_ones_the_model_left_out(make_client: Any,
                                                                       llm: FakeLLMServer) -> None:
    llm.set_default(Reply(json={"rank": ["b2", "[1]", "nonexistent"]}))
    task = {"id": 1, "data": {"query": "Which animals control pests?", "items": ITEMS}}
    item = _predict(make_client(), RANKER, task)
    prompt = llm.requests[0]["messages"][-1]["content"]
    assert "Which animals control pests?" in prompt and "[b2] Pest control: They eat ticks." in prompt
    [region] = item["result"]
    assert (region["from_name"], region["to_name"], region["type"]) == ("rank", "answers", "ranker")
    assert region["value"] == {"ranker": {"rank": ["b2", "1", "3"]}}


def test_ranker_with_buckets_places_items_in_them(make_client: Any, llm: FakeLLMServer) -> None:
    config = RANKER.replace('<Ranker name="rank" toName="answers"/>',
                            '<Ranker name="rank" toName="answers"><Bucket name="relevant" title="Relevant"/>'
                            '<Bucket name="biased" title="Biased"/></Ranker>')
    llm.set_default(Reply(json={"rank": {"relevant": ["b2", "1"], "biased": ["1", "3"]}}))
    item = _predict(make_client(), config, {"id": 1, "data": {"query": "pests", "items": ITEMS}})
    assert '"relevant"' in llm.requests[0]["messages"][-1]["content"]
    [region] = item["result"]
    assert region["value"] == {"ranker": {"relevant": ["b2", "1"], "biased": ["3"]}}  # an item in one bucket only

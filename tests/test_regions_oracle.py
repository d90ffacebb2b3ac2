"""Regions checked by an independent oracle: label_studio_sdk's LabelInterface.validate_prediction.

The SDK is heavy (pandas, opencv), so it runs in the Label Studio virtualenv that the real-LS
tests install anyway, fed our predictions as JSON on stdin.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from testkit.llm_server import FakeLLMServer, Reply
from tests.conftest import ALL_CONTROLS_CONFIG, CHOICES_CONFIG, fixture_json

pytestmark = pytest.mark.label_studio

ORACLE = """
import json, sys
from label_studio_sdk.label_interface import LabelInterface
cases = json.load(sys.stdin)
out = []
for case in cases:
    interface = LabelInterface(case["config"])
    out.append(interface.validate_prediction({"result": case["result"], "model_version": "x"}, return_errors=True))
print(json.dumps(out, default=str))
"""

TEXT = "Ada Lovelace wrote the first program in London in 1843. Politics aside, ada lovelace was a pioneer."
CASES = [
    (CHOICES_CONFIG, {"sentiment": "positive"}),
    (fixture_json("setup.json")["schema"],
     {"sentiment": "Neutral", "ner": [{"text": "Ada Lovelace", "label": "Person"}], "summary": ["A note"]}),
    (ALL_CONTROLS_CONFIG, {
        "sentiment": "Positive", "topics": ["Tech", "politics"],
        "ner": [{"text": "Ada Lovelace", "label": "Person"}, {"text": "London", "label": "Location"},
                {"text": "Ada Lovelace", "label": "Person"}, {"text": "Charles Babbage", "label": "Person"}],
        "summary": ["Ada Lovelace wrote the first program."], "quality": 5, "year": 1999,
        "category": ["News / World", "Opinion"],
    }),
]


def _oracle(cases: list[dict[str, Any]], label_studio_executable: Path) -> list[Any]:
    python = label_studio_executable.parent / "python"
    out = subprocess.run([str(python), "-c", ORACLE], input=json.dumps(cases), capture_output=True, text=True,
                         timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_sdk_oracle_accepts_our_regions(make_client: Any, llm: FakeLLMServer, label_studio_executable: Path
                                        ) -> None:
    client = make_client()
    cases = []
    for index, (config, answer) in enumerate(CASES):
        llm.add_rule(f"case {index}:", Reply(json=answer))
        body = {"label_config": config, "tasks": [{"id": 1, "data": {"text": f"case {index}: {TEXT}"}}]}
        [item] = client.post("/predict", json=body).get_json()["results"]
        assert item["result"], item
        for region in item["result"]:
            if region["type"] == "labels":
                start, end = region["value"]["start"], region["value"]["end"]
                assert f"case {index}: {TEXT}"[start:end] == region["value"]["text"]
        cases.append({"config": config, "result": item["result"]})
    assert _oracle(cases, label_studio_executable) == [[], [], []]
    types = {region["type"] for region in cases[2]["result"]}
    assert types == {"choices", "labels", "textarea", "rating", "number", "taxonomy"}


def test_sdk_oracle_is_not_a_rubber_stamp(label_studio_executable: Path) -> None:
    bad = [{"id": "x", "from_name": "sentiment", "to_name": "text", "type": "choices",
            "value": {"choices": ["NotALabel"]}}]
    [errors] = _oracle([{"config": CHOICES_CONFIG, "result": bad}], label_studio_executable)
    assert errors


def test_sdk_oracle_accepts_image_and_datetime_regions(make_client: Any, llm: FakeLLMServer,
                                                        label_studio_executable: Path) -> None:
    from tests.test_images import IMAGE_CONFIG, MULTI_CONFIG, data_url

    client = make_client(llm_model="openai/gpt-4o-mini")
    llm.set_default(Reply(json={"boxes": [{"label": "Car", "x_min": 20, "y_min": 10, "x_max": 120, "y_max": 60}],
                                "points": [{"label": "Eye", "x": 50, "y": 25}], "scene": "Street",
                                "caption": ["A car."]}))
    [image] = client.post("/predict", json={"label_config": IMAGE_CONFIG,
                                            "tasks": [{"data": {"image": data_url(200, 100)}}]}).get_json()["results"]
    llm.set_default(Reply(json={"topic": "Tech", "tone": "Calm", "summary": ["x"], "when": "2024-03-05"}))
    task = {"title": "t", "html": "<p>b</p>", "dialogue": [{"author": "A", "text": "hi"}]}
    [multi] = client.post("/predict", json={"label_config": MULTI_CONFIG, "tasks": [{"data": task}]}
                          ).get_json()["results"]
    assert {r["type"] for r in image["result"]} == {"rectanglelabels", "keypointlabels", "choices", "textarea"}
    assert _oracle([{"config": IMAGE_CONFIG, "result": image["result"]},
                    {"config": MULTI_CONFIG, "result": multi["result"]}], label_studio_executable) == [[], []]


def test_sdk_oracle_accepts_pairwise_and_ranker_regions(make_client: Any, llm: FakeLLMServer,
                                                        label_studio_executable: Path) -> None:
    from tests.test_pairwise_ranker import ITEMS, PAIRWISE, RANKER, TASK

    client = make_client()
    llm.add_rule("<a>\nALPHA", Reply(json={"better": "left"}))
    llm.add_rule("<a>\nBETA", Reply(json={"better": "right"}))
    llm.add_rule("q2", Reply(json={"rank": {"good": ["3"], "bad": []}}))
    llm.add_rule("[b2]", Reply(json={"rank": ["b2", "1"]}))
    buckets = RANKER.replace('<Ranker name="rank" toName="answers"/>',
                             '<Ranker name="rank" toName="answers"><Bucket name="good"/><Bucket name="bad"/></Ranker>')
    cases = []
    for config, task in ((PAIRWISE, TASK), (RANKER, {"data": {"query": "q", "items": ITEMS}}),
                         (buckets, {"data": {"query": "q2", "items": ITEMS}})):
        [item] = client.post("/predict", json={"label_config": config, "tasks": [task]}).get_json()["results"]
        assert item["result"], item
        cases.append({"config": config, "result": item["result"]})
    assert [case["result"][0]["type"] for case in cases] == ["pairwise", "ranker", "ranker"]
    assert _oracle(cases, label_studio_executable) == [[], [], []]

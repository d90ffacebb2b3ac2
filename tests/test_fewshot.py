"""Few-shot memory from annotation webhooks, snapshots on "Train", and the Train evaluation."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from llm_backend.web.app import services_of
from testkit.llm_server import FakeLLMServer, Reply
from tests.conftest import CHOICES_CONFIG, fixture_json

WEBHOOK = fixture_json("webhook-annotation-created.json")
NER_CONFIG = WEBHOOK["project"]["label_config"]


def _annotation(task_id: int, text: str, label: str, annotation_id: int | None = None,
                config: str = CHOICES_CONFIG, project: int = 3) -> dict[str, Any]:
    return {
        "action": "ANNOTATION_CREATED",
        "project": {"id": project, "label_config": config},
        "task": {"id": task_id, "data": {"text": text}},
        "annotation": {"id": annotation_id or task_id + 100, "was_cancelled": False,
                       "result": [{"from_name": "sentiment", "to_name": "text", "type": "choices",
                                   "value": {"choices": [label]}}]},
    }


def _app(make_client: Any, **overrides: Any) -> Any:
    client = make_client(**overrides)
    return client, services_of(client.application)


def _send(client: Any, backend: Any, *bodies: dict[str, Any]) -> None:
    for body in bodies:
        assert client.post("/webhook", json=body).status_code == 200
    backend.events.wait()


def test_real_webhook_body_is_stored_as_an_example(make_client: Any) -> None:
    client, backend = _app(make_client)
    _send(client, backend, WEBHOOK)
    [example] = backend.examples.examples("1")
    assert example.task_id == "1" and example.annotation_id == "1"
    assert example.text == "John works at Acme Corp and loves it."
    assert example.answer == {"sentiment": "Positive", "ner": [{"text": "John", "label": "Person"}], "summary": []}


REVIEWS = [(1, "The battery life of this phone is amazing", "Positive"),
           (2, "The phone battery died after a day, terrible", "Negative"),
           (3, "Delivery was on time", "Neutral"),
           (4, "Customer support never answered my emails", "Negative"),
           (5, "Great camera and a great screen", "Positive")]


def test_prompt_carries_the_nearest_examples_within_k_and_budget(make_client: Any, llm: FakeLLMServer) -> None:
    llm.set_default(Reply(json={"sentiment": "Positive"}))
    client, backend = _app(make_client, fewshot_k=2)
    _send(client, backend, *(_annotation(i, text, label) for i, text, label in REVIEWS))
    setup = {"schema": CHOICES_CONFIG, "project": "3.1"}
    before = client.post("/setup", json=setup).get_json()["model_version"]
    _send(client, backend, {"action": "START_TRAINING", "project": {"id": 3, "label_config": CHOICES_CONFIG}})
    after = client.post("/setup", json=setup).get_json()["model_version"]
    assert after != before

    body = {"label_config": CHOICES_CONFIG, "project": "3.1",
            "tasks": [{"id": 99, "data": {"text": "How long does the phone battery last?"}}]}
    llm.reset()
    llm.set_default(Reply(json={"sentiment": "Positive"}))
    [result] = client.post("/predict", json=body).get_json()["results"]
    assert result["model_version"] == after
    prompt = llm.requests[-1]["messages"][-1]["content"]
    assert prompt.count("Example ") == 2
    first = prompt.index("Example 1:")
    assert prompt.index("battery", first) < prompt.index("Example 2:")  # most similar first
    assert '{"sentiment": "Positive"}' in prompt and '{"sentiment": "Negative"}' in prompt
    assert "Delivery was on time" not in prompt

    small = make_client(fewshot_k=5, fewshot_max_tokens=40, cache_dir=backend.settings.cache_dir)
    llm.reset()
    llm.set_default(Reply(json={"sentiment": "Positive"}))
    small.post("/predict", json=body)
    assert llm.requests[-1]["messages"][-1]["content"].count("Example ") == 1


def test_a_task_is_never_its_own_example(make_client: Any, llm: FakeLLMServer) -> None:
    llm.set_default(Reply(json={"sentiment": "Positive"}))
    client, backend = _app(make_client, fewshot_k=5)
    _send(client, backend, *(_annotation(i, text, label) for i, text, label in REVIEWS),
          {"action": "START_TRAINING", "project": {"id": 3}})
    body = {"label_config": CHOICES_CONFIG, "project": "3", "tasks": [{"id": 3, "data": {"text": REVIEWS[2][1]}}]}
    client.post("/predict", json=body)
    prompt = llm.requests[-1]["messages"][-1]["content"]
    assert prompt.count("Example ") == 4
    assert prompt.count("Delivery was on time") == 1  # the task itself, not an example


def test_deleted_annotations_leave_the_next_snapshot(make_client: Any, llm: FakeLLMServer) -> None:
    llm.set_default(Reply(json={"sentiment": "Positive"}))
    client, backend = _app(make_client, fewshot_k=5)
    train = {"action": "START_TRAINING", "project": {"id": 3}}
    _send(client, backend, *(_annotation(i, text, label) for i, text, label in REVIEWS), train)
    _send(client, backend, {"action": "ANNOTATIONS_DELETED", "project": {"id": 3}, "annotations": [{"id": 104}]},
          train)
    body = {"label_config": CHOICES_CONFIG, "project": "3", "tasks": [{"id": 50, "data": {"text": "support"}}]}
    client.post("/predict", json=body)
    prompt = llm.requests[-1]["messages"][-1]["content"]
    assert "Customer support never answered" not in prompt and prompt.count("Example ") == 4
    versions = client.get("/versions").get_json()
    assert [s["examples"] for s in versions["snapshots"]["3"]] == [5, 4]


def test_snapshot_after_a_count_of_new_annotations(make_client: Any) -> None:
    client, backend = _app(make_client, fewshot_snapshot_every=3)
    setup = {"schema": CHOICES_CONFIG, "project": "3.1"}
    versions = [client.post("/setup", json=setup).get_json()["model_version"]]
    for i, text, label in REVIEWS:
        _send(client, backend, _annotation(i, text, label))
        versions.append(client.post("/setup", json=setup).get_json()["model_version"])
    # New versions only when a snapshot is taken: after the 3rd annotation (and not before or after).
    assert versions[0] == versions[1] == versions[2] != versions[3] == versions[4] == versions[5]


def test_cancelled_annotation_is_not_an_example(make_client: Any) -> None:
    client, backend = _app(make_client)
    body = copy.deepcopy(WEBHOOK)
    body["annotation"]["was_cancelled"] = True
    _send(client, backend, body)
    assert backend.examples.examples("1") == ()


def test_train_reports_accuracy_with_and_without_examples(make_client: Any, llm: FakeLLMServer) -> None:
    # The test model is right only when it has seen examples: learning visibly helps.
    def model(body: dict[str, Any]) -> Reply:
        prompt = body["messages"][-1]["content"]
        if "Examples annotated by the team" not in prompt:
            return Reply(json={"sentiment": "Neutral"})
        for _i, text, label in REVIEWS:
            if f"<text>\n{text}\n</text>" in prompt:
                return Reply(json={"sentiment": label})
        return Reply(json={"sentiment": "Neutral"})

    llm.set_default(model)
    client, backend = _app(make_client, fewshot_k=2)
    client.post("/setup", json={"schema": CHOICES_CONFIG, "project": "3.1"})
    _send(client, backend, *(_annotation(i, text, label) for i, text, label in REVIEWS),
          {"action": "START_TRAINING", "project": {"id": 3, "label_config": CHOICES_CONFIG}})
    report = client.get("/evaluation?project=3").get_json()
    assert report["examples"] == 5
    assert report["with_examples"]["accuracy"] == 1.0
    assert report["without_examples"]["accuracy"] == 0.2  # only "Delivery was on time" is Neutral
    assert "with few-shot examples" in report["summary"]


@pytest.mark.redis
def test_examples_and_snapshots_in_redis(make_client: Any, llm: FakeLLMServer, redis_url: str) -> None:
    llm.set_default(Reply(json={"sentiment": "Positive"}))
    client, backend = _app(make_client, cache_url=redis_url, fewshot_k=3)
    _send(client, backend, *(_annotation(i, text, label) for i, text, label in REVIEWS[:3]),
          {"action": "START_TRAINING", "project": {"id": 3}})
    other, _ = _app(make_client, cache_url=redis_url, fewshot_k=3)  # another replica
    body = {"label_config": CHOICES_CONFIG, "project": "3", "tasks": [{"id": 9, "data": {"text": "battery"}}]}
    other.post("/predict", json=body)
    assert llm.requests[-1]["messages"][-1]["content"].count("Example ") == 3

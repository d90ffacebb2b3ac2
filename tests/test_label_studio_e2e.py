"""End to end with a real Label Studio 1.23.2: connect the backend, "Retrieve predictions", and
check what Label Studio stored. The model is the test LLM server, reached by LiteLLM over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from testkit.llm_server import FakeLLMServer, Reply
from tests.conftest import CHOICES_CONFIG, BackendProcess, fixture_json

pytestmark = pytest.mark.label_studio

NER_CONFIG = fixture_json("setup.json")["schema"]
REVIEWS = [
    ("I love this phone, the battery lasts forever.", "Positive"),
    ("Terrible service, never again.", "Negative"),
    ("It arrived on Tuesday.", "Neutral"),
    ("Best purchase of the year!", "Positive"),
    ("The screen cracked after a week.", "Negative"),
]


def test_choices_project_gets_a_valid_prediction_for_every_task(
    label_studio: Any, start_backend: Callable[..., BackendProcess], llm: FakeLLMServer
) -> None:
    for text, label in REVIEWS:
        llm.add_rule(text, Reply(json={"sentiment": label}))
    backend = start_backend()
    project = label_studio.create_project("sentiment e2e", CHOICES_CONFIG)
    task_ids = label_studio.import_tasks(project, [{"text": text} for text, _ in REVIEWS])
    ml = label_studio.connect_ml_backend(project, backend.url)
    version = label_studio.get_ml_backend(ml)["model_version"]
    label_studio.retrieve_predictions(project, task_ids)

    predictions = {p["task"]: p for p in label_studio.predictions(project)}
    assert sorted(predictions) == sorted(task_ids)
    for task_id, (_text, label) in zip(task_ids, REVIEWS, strict=True):
        prediction = predictions[task_id]
        assert prediction["model_version"] == version
        assert prediction["result"] == [{
            "id": prediction["result"][0]["id"], "from_name": "sentiment", "to_name": "text", "type": "choices",
            "value": {"choices": [label]},
        }]
    # All selected tasks arrived in one /predict: one model call each, no more.
    assert llm.calls == len(REVIEWS)


def test_failed_tasks_are_not_stored_and_are_asked_again(
    label_studio: Any, start_backend: Callable[..., BackendProcess], llm: FakeLLMServer
) -> None:
    llm.add_rule("flaky", [Reply(json={"sentiment": "Wonderful"})] * 2 + [Reply(json={"sentiment": "Positive"})])
    llm.add_rule("steady", Reply(json={"sentiment": "Neutral"}))
    backend = start_backend()
    project = label_studio.create_project("retry e2e", CHOICES_CONFIG)
    task_ids = label_studio.import_tasks(project, [{"text": "steady one"}, {"text": "flaky one"}])
    label_studio.connect_ml_backend(project, backend.url)

    label_studio.retrieve_predictions(project, task_ids)
    stored = label_studio.predictions(project)
    assert [p["task"] for p in stored] == [task_ids[0]]  # the invalid answer was not stored as a prediction

    label_studio.retrieve_predictions(project, task_ids)
    stored = {p["task"]: p["result"][0]["value"] for p in label_studio.predictions(project)}
    assert stored == {task_ids[0]: {"choices": ["Neutral"]}, task_ids[1]: {"choices": ["Positive"]}}
    assert llm.calls == 4  # steady once; flaky: invalid, failed repair, then a valid answer


def test_ner_textarea_project_offsets_match_the_text(
    label_studio: Any, start_backend: Callable[..., BackendProcess], llm: FakeLLMServer
) -> None:
    text = "Yesterday john smith met Ada Lovelace at ACME Corp. John Smith left early."
    llm.add_rule("Yesterday", Reply(json={
        "sentiment": "Neutral",
        "ner": [{"text": "John Smith", "label": "Person"}, {"text": "Ada  Lovelace", "label": "Person"},
                {"text": "Acme Corp", "label": "Organization"}, {"text": "John Smith", "label": "Person"},
                {"text": "Grace Hopper", "label": "Person"}, {"text": "ACME", "label": "Planet"}],
        "summary": ["Two people met at a company."],
    }))
    backend = start_backend()
    project = label_studio.create_project("ner e2e", NER_CONFIG)
    task_ids = label_studio.import_tasks(project, [{"text": text}])
    label_studio.connect_ml_backend(project, backend.url)
    label_studio.retrieve_predictions(project, task_ids)
    [prediction] = label_studio.predictions(project)
    spans = sorted((r["value"]["start"], r["value"]["end"], r["value"]["text"], r["value"]["labels"][0])
                   for r in prediction["result"] if r["type"] == "labels")
    assert spans == [(10, 20, "john smith", "Person"), (25, 37, "Ada Lovelace", "Person"),
                     (41, 50, "ACME Corp", "Organization"), (52, 62, "John Smith", "Person")]
    for start, end, quoted, _ in spans:
        assert text[start:end] == quoted
    textarea = [r for r in prediction["result"] if r["type"] == "textarea"]
    assert textarea[0]["value"] == {"text": ["Two people met at a company."]}


def test_annotations_and_train_make_the_prompts_learn(
    label_studio: Any, start_backend: Callable[..., BackendProcess], llm: FakeLLMServer
) -> None:
    import time

    import requests

    llm.set_default(Reply(json={"sentiment": "Neutral"}))
    backend = start_backend(FEWSHOT_K="2")
    project = label_studio.create_project("fewshot e2e", CHOICES_CONFIG)
    texts = [text for text, _ in REVIEWS]
    task_ids = label_studio.import_tasks(project, [{"text": text} for text in texts])
    ml = label_studio.connect_ml_backend(project, backend.url)
    version_before = label_studio.get_ml_backend(ml)["model_version"]
    for task_id, (_text, label) in list(zip(task_ids, REVIEWS, strict=True))[:2]:
        label_studio.create_annotation(task_id, [{"from_name": "sentiment", "to_name": "text", "type": "choices",
                                                  "value": {"choices": [label]}}])
    label_studio.request("POST", f"/api/ml/{ml}/train", json={})

    deadline = time.monotonic() + 30
    snapshots: list[Any] = []
    while time.monotonic() < deadline and not snapshots:
        snapshots = requests.get(f"{backend.url}/versions", timeout=5).json()["snapshots"].get(str(project), [])
        time.sleep(0.2)
    assert snapshots and snapshots[-1]["examples"] == 2
    assert label_studio.get_ml_backend(ml)["model_version"] != version_before

    label_studio.retrieve_predictions(project, task_ids[2:])
    # Train also evaluated the prompts on the 2 annotated tasks (with and without examples): 4 calls.
    prompts = [r["messages"][-1]["content"] for r in llm.requests
               if any(f"<text>\n{text}\n</text>" in r["messages"][-1]["content"] for text in texts[2:])]
    assert len(prompts) == 3 and len(llm.requests) == 7
    for prompt in prompts:
        assert "Examples annotated by the team" in prompt
        assert f"<input>\n{texts[0]}\n</input>" in prompt and f"<input>\n{texts[1]}\n</input>" in prompt


def test_image_project_fetches_the_upload_with_label_studio_auth(
    label_studio: Any, start_backend: Callable[..., BackendProcess], llm: FakeLLMServer
) -> None:
    import base64

    from tests.test_images import IMAGE_CONFIG, png

    llm.set_default(Reply(json={"boxes": [{"label": "Car", "x_min": 30, "y_min": 20, "x_max": 90, "y_max": 60}],
                                "points": [], "scene": "Street", "caption": ["A red image."]}))
    image = png(120, 80)
    project = label_studio.create_project("image e2e", IMAGE_CONFIG)
    label_studio.request("POST", f"/api/projects/{project}/import", files={"file": ("red.png", image, "image/png")})
    [task] = label_studio.list_tasks(project)
    assert task["data"]["image"].startswith("/data/upload/")
    backend = start_backend(LLM_MODEL="openai/gpt-4o-mini", LABEL_STUDIO_URL=label_studio.url,
                            LABEL_STUDIO_API_KEY=label_studio.token)
    label_studio.connect_ml_backend(project, backend.url)
    label_studio.retrieve_predictions(project, [task["id"]])
    [prediction] = label_studio.predictions(project)
    box = next(r for r in prediction["result"] if r["type"] == "rectanglelabels")
    assert box["value"] == {"x": 25.0, "y": 25.0, "width": 50.0, "height": 50.0, "rotation": 0,
                            "rectanglelabels": ["Car"]}
    assert (box["original_width"], box["original_height"]) == (120, 80)
    sent = llm.requests[0]["messages"][-1]["content"][1]["image_url"]["url"]
    assert sent == "data:image/png;base64," + base64.b64encode(image).decode()


def test_interactive_annotation_uses_the_annotators_text(
    label_studio: Any, start_backend: Callable[..., BackendProcess], llm: FakeLLMServer
) -> None:
    llm.add_rule("only the people", Reply(json={"sentiment": "Neutral",
                                                "ner": [{"text": "John", "label": "Person"}], "summary": []}))
    backend = start_backend()
    project = label_studio.create_project("interactive e2e", NER_CONFIG)
    [task] = label_studio.import_tasks(project, [{"text": "John works at Acme Corp and loves it."}])
    ml = label_studio.connect_ml_backend(project, backend.url, is_interactive=True)
    context = {"result": [{"from_name": "summary", "to_name": "text", "type": "textarea",
                           "value": {"text": ["Label only the people"]}}]}
    answer = label_studio.interactive_annotating(ml, task, context)
    regions = answer["data"]["result"]
    assert [(r["value"]["start"], r["value"]["end"]) for r in regions if r["type"] == "labels"] == [(0, 4)]
    assert "Additional instruction from the annotator for this item: Label only the people" in \
        llm.requests[0]["messages"][-1]["content"]

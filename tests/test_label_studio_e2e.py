"""End to end with a real Label Studio 1.23.2: connect the backend, "Retrieve predictions", and
check what Label Studio stored. The model is the test LLM server, reached by LiteLLM over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from testkit.app_server import AppServer
from testkit.documents import Planted, gazetteer_for, planted_document
from testkit.llm_server import FakeLLMServer, Reply
from tests.conftest import ALL_CONTROLS_CONFIG, CHOICES_CONFIG, REPO, cli, fixture_json

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
    label_studio: Any, start_app: Callable[..., AppServer], llm: FakeLLMServer
) -> None:
    for text, label in REVIEWS:
        llm.add_rule(text, Reply(json={"sentiment": label}))
    backend = start_app()
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
    label_studio: Any, start_app: Callable[..., AppServer], llm: FakeLLMServer
) -> None:
    llm.add_rule("flaky", [Reply(json={"sentiment": "Wonderful"})] * 2 + [Reply(json={"sentiment": "Positive"})])
    llm.add_rule("steady", Reply(json={"sentiment": "Neutral"}))
    backend = start_app()
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
    label_studio: Any, start_app: Callable[..., AppServer], llm: FakeLLMServer
) -> None:
    text = "Yesterday john smith met Ada Lovelace at ACME Corp. John Smith left early."
    llm.add_rule("Yesterday", Reply(json={
        "sentiment": "Neutral",
        "ner": [{"text": "John Smith", "label": "Person"}, {"text": "Ada  Lovelace", "label": "Person"},
                {"text": "Acme Corp", "label": "Organization"}, {"text": "John Smith", "label": "Person"},
                {"text": "Grace Hopper", "label": "Person"}, {"text": "ACME", "label": "Planet"}],
        "summary": ["Two people met at a company."],
    }))
    backend = start_app()
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
    label_studio: Any, start_app: Callable[..., AppServer], llm: FakeLLMServer
) -> None:
    import time

    import requests

    llm.set_default(Reply(json={"sentiment": "Neutral"}))
    backend = start_app(FEWSHOT_K="2")
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
    label_studio: Any, start_app: Callable[..., AppServer], llm: FakeLLMServer
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
    backend = start_app(LLM_MODEL="openai/gpt-4o-mini", LABEL_STUDIO_URL=label_studio.url,
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
    label_studio: Any, start_app: Callable[..., AppServer], llm: FakeLLMServer
) -> None:
    llm.add_rule("only the people", Reply(json={"sentiment": "Neutral",
                                                "ner": [{"text": "John", "label": "Person"}], "summary": []}))
    backend = start_app()
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


# ------------------------------------------------------------------ the first hour (issue 20)

DEMO_TEXT_CONFIG = ALL_CONTROLS_CONFIG.replace("</View>",
                                               '  <DateTime name="when" toName="text" only="date"/>\n</View>')


def test_the_demo_model_fills_text_and_image_projects_without_any_model(
    label_studio: Any, start_app: Callable[..., AppServer], llm: FakeLLMServer, tmp_path: Path
) -> None:
    """`make demo`: no key, no model server; every control of a text and an image project gets a valid
    prediction, stamped with a demo model_version; offline `predict` agrees on that version."""
    from tests.test_images import IMAGE_CONFIG, png

    backend = start_app(LLM_MODEL="demo", LLM_API_KEY="", LLM_API_BASE="", LABEL_STUDIO_URL=label_studio.url,
                            LABEL_STUDIO_API_KEY=label_studio.token)
    text_project = label_studio.create_project("demo text", DEMO_TEXT_CONFIG)
    texts = ["Ada Lovelace met Charles Babbage in London on 1833-06-05. A positive meeting.",
             "the 1998 report from Geneva was negative about Tech."]
    text_tasks = label_studio.import_tasks(text_project, [{"text": text} for text in texts])
    image_project = label_studio.create_project("demo image", IMAGE_CONFIG)
    label_studio.request("POST", f"/api/projects/{image_project}/import",
                         files={"file": ("red.png", png(120, 80), "image/png")})
    image_tasks = [task["id"] for task in label_studio.list_tasks(image_project)]

    for project, tasks, controls in ((text_project, text_tasks, {"sentiment", "topics", "ner", "summary",
                                                                   "quality", "year", "category", "when"}),
                                     (image_project, image_tasks, {"boxes", "points", "scene", "caption"})):
        ml = label_studio.connect_ml_backend(project, backend.url)
        version = label_studio.get_ml_backend(ml)["model_version"]
        assert version.startswith("demo-")
        label_studio.retrieve_predictions(project, tasks)
        stored = label_studio.predictions(project)
        assert sorted(p["task"] for p in stored) == sorted(tasks)
        for prediction in stored:
            assert prediction["model_version"] == version
            assert {region["from_name"] for region in prediction["result"]} == controls
    first = {p["task"]: p["result"] for p in label_studio.predictions(text_project)}[text_tasks[0]]
    values = {r["from_name"]: r["value"] for r in first if r["type"] != "labels"}
    assert values["sentiment"] == {"choices": ["Positive"]} and values["when"] == {"datetime": "1833-06-05"}
    assert sorted(r["value"]["text"] for r in first if r["type"] == "labels") == \
        ["Ada Lovelace", "Charles Babbage", "London"]
    [box] = [r for p in label_studio.predictions(image_project) for r in p["result"] if r["type"] == "rectanglelabels"]
    assert (box["value"]["x"], box["value"]["width"], box["original_width"]) == (25.0, 50.0, 120)
    assert llm.calls == 0

    # The config Label Studio stores (and sends to /setup) has no trailing newline; a file usually has one.
    config = tmp_path / "label_config.xml"
    config.write_text(DEMO_TEXT_CONFIG + "\n")
    (tmp_path / "tasks.json").write_text(json.dumps([{"data": {"text": texts[0]}}]))
    out = cli(["predict", "--config", str(config), "--tasks", str(tmp_path / "tasks.json"), "--out",
               str(tmp_path / "out.json"), "--project", str(text_project)],
              {"LLM_MODEL": "demo", "LLM_API_KEY": "", "LLM_API_BASE": "", "CACHE_DIR": str(tmp_path / "cache"),
               "PROMPTS_DIR": str(tmp_path / "prompts")})
    assert out.exit_code == 0, out.stderr
    stored_version = label_studio.predictions(text_project)[0]["model_version"]
    assert f"model_version {stored_version}" in out.stdout
    assert json.loads((tmp_path / "out.json").read_text())[0]["predictions"][0]["result"] == first


def test_a_refused_setup_shows_in_label_studio_as_a_bare_400_and_in_our_log_with_its_reason(
    label_studio: Any, start_app: Callable[..., AppServer]
) -> None:
    from testkit.label_studio import LabelStudioError

    backend = start_app()
    polygons = ('<View><Image name="i" value="$image"/><PolygonLabels name="p" toName="i"><Label value="Car"/>'
                "</PolygonLabels></View>")
    cases = [(label_studio.create_project("bad extra params", CHOICES_CONFIG), '{"model": "gpt-5"}',
              "POST /setup -> 400 bad_request: extra_params.model 'gpt-5' is not a model this backend knows; "
              "known models: openai/test-model (from LLM_MODEL and LLM_CASCADE)"),
             (label_studio.create_project("nothing to predict", polygons), None,
              "POST /setup -> 400 bad_request: label config has no control this backend can predict "
              "(p <polygonlabels>: ")]
    for project, extra_params, logged in cases:
        with pytest.raises(LabelStudioError) as refused:
            label_studio.connect_ml_backend(project, backend.url, extra_params=extra_params)
        # What the user sees in Label Studio: no reason, a pointer to our log.
        [shown] = refused.value.json()["validation_errors"]["non_field_errors"]
        assert shown.startswith(f"Successfully connected to {backend.url} but it doesn't look like a valid ML "
                                f"backend. Reason: 400 Client Error: BAD REQUEST for url: {backend.url}/setup")
        assert "Check the ML backend server console logs" in shown and "gpt-5" not in shown
        assert any(" WARNING llm_backend.web.app " in line and logged in line for line in backend.log().splitlines())


def test_the_readmes_rest_commands_connect_and_store_predictions(
    label_studio: Any, start_app: Callable[..., AppServer]
) -> None:
    """The README's curl block for Connect Model and Retrieve Predictions, run as written against a real
    Label Studio (only the placeholders of its first line and the backend's URL differ)."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("<!-- rest-connect", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    placeholders, commands = block.split("\n", 1)
    assert placeholders.startswith("export LABEL_STUDIO_URL=http://localhost:8080 LABEL_STUDIO_API_KEY=")
    assert "Authorization: Token" not in commands  # a new organization refuses Legacy Tokens (401)
    backend = start_app(LLM_MODEL="demo")
    project = label_studio.create_project("readme curl", CHOICES_CONFIG)
    tasks = label_studio.import_tasks(project, [{"text": "good"}, {"text": "bad"}])
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", commands.replace("http://localhost:9090", backend.url)],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "LABEL_STUDIO_URL": label_studio.url,
                              "LABEL_STUDIO_API_KEY": label_studio.create_personal_access_token(),
                              "PROJECT": str(project)})
    assert out.returncode == 0, out.stderr
    assert '"state":"CO"' in out.stdout and '"detail":"Retrieved 2 predictions"' in out.stdout
    stored = label_studio.predictions(project)
    assert sorted(p["task"] for p in stored) == sorted(tasks)
    assert all(p["model_version"].startswith("demo-") and p["result"] for p in stored)

LONG_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text"><Choice value="Positive"/><Choice value="Negative"/></Choices>
  <Labels name="ner" toName="text">
    <Label value="Person"/><Label value="Organization"/><Label value="Location"/>
  </Labels>
</View>"""


def test_a_long_document_gets_every_entity_at_its_exact_offset(
    label_studio: Any, start_app: Callable[..., AppServer], llm: FakeLLMServer
) -> None:
    # 300,000 characters, far over an 8,192-token window; the entities sit in the last 15,000.
    body, _ = planted_document(seed=41, chars=285_000, entities=0)
    tail, tail_planted = planted_document(seed=42, chars=15_000, entities=25)
    text = body + tail
    planted = [Planted(p.start + len(body), p.end + len(body), p.label, p.text) for p in tail_planted]
    assert len(text) >= 300_000 and planted[0].start > 280_000
    llm.context_tokens = 8192
    llm.set_gazetteer(gazetteer_for(planted, cut_edges=True))
    backend = start_app(LLM_CONTEXT_TOKENS="8192")
    project = label_studio.create_project("long document e2e", LONG_CONFIG)
    [task_id] = label_studio.import_tasks(project, [{"text": text}])
    label_studio.connect_ml_backend(project, backend.url)
    label_studio.retrieve_predictions(project, [task_id])

    [prediction] = label_studio.predictions(project)
    stored = label_studio.get_task(task_id)["data"]["text"]
    assert stored == text
    spans = []
    for region in prediction["result"]:
        if region["type"] == "labels":
            value = region["value"]
            assert value["text"] == stored[value["start"] : value["end"]]
            spans.append((value["start"], value["end"], value["labels"][0]))
    assert sorted(spans) == sorted((p.start, p.end, p.label) for p in planted)
    [choice] = [r for r in prediction["result"] if r["type"] == "choices"]
    assert choice["value"] == {"choices": ["Positive"]}
    assert llm.count(400) == 0 and llm.count(200) >= 15  # every part fitted; the text took many of them



def test_local_model_replies_partial_answers_and_refusals_as_label_studio_stores_them(
    label_studio: Any, start_app: Callable[..., AppServer], llm: FakeLLMServer
) -> None:
    texts = ["Ada Lovelace wrote to ACME Corp.", "Grace Hopper joined ACME Corp.", "Please summarise this memo."]
    entities = [{"text": "ACME Corp", "label": "Organization"}]
    # A local model: thinking before a fenced answer whose sentiment is outside the config, twice.
    llm.add_rule("Ada Lovelace", Reply(json={"sentiment": "Mixed", "ner": [{"text": "Ada Lovelace", "label": "Person"},
                                                                           *entities], "summary": ["A letter."]},
                                       style="think+fence"))
    llm.add_rule("Grace Hopper", Reply(json={"sentiment": "Positive", "ner": entities, "summary": ["News."]},
                                       style="reasoning_only"))
    llm.add_rule("memo", Reply(style="refusal"))
    backend = start_app()
    project = label_studio.create_project("local model e2e", NER_CONFIG)
    task_ids = label_studio.import_tasks(project, [{"text": text} for text in texts])
    label_studio.connect_ml_backend(project, backend.url)
    label_studio.retrieve_predictions(project, task_ids)

    stored = {p["task"]: p for p in label_studio.predictions(project)}
    assert sorted(stored) == task_ids[:2]  # the refusal stored nothing: Label Studio will ask again
    partial = sorted((r["from_name"], r["value"].get("text")) for r in stored[task_ids[0]]["result"])
    assert partial == [("ner", "ACME Corp"), ("ner", "Ada Lovelace"), ("summary", ["A letter."])]
    assert {r["from_name"] for r in stored[task_ids[1]]["result"]} == {"sentiment", "ner", "summary"}
    calls = llm.calls
    assert calls == 2 + 1 + 1  # the partial one: answer + repair; the refusal: once, no repair round

    label_studio.retrieve_predictions(project, task_ids)
    assert llm.calls == calls + 1  # only the refused task is asked again; the others are stored

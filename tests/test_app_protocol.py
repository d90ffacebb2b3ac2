"""The ML backend protocol, replaying the bodies Label Studio 1.23.2 really sent, over real HTTP to
the test LLM server (LiteLLM -> api_base)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from llm_backend.engine.prompts import DEFAULT_PROMPTS_DIR
from testkit.llm_server import FakeLLMServer, Reply
from tests.conftest import CHOICES_CONFIG, REPO, fixture_json

BATCH = fixture_json("predict-batch.json")
ANSWERS = {
    "John works at Acme": {"sentiment": "Positive", "ner": [{"text": "John", "label": "Person"},
                                                             {"text": "Acme Corp", "label": "Organization"}],
                           "summary": ["John likes his job."]},
    "Mary hates": {"sentiment": "negative", "ner": [{"text": "Mary", "label": "Person"}],
                   "summary": ["Mary dislikes the weather."]},
}


def _script(llm: FakeLLMServer) -> None:
    for needle, answer in ANSWERS.items():
        llm.add_rule(needle, Reply(json=answer))


def test_health_is_fast_and_does_not_import_litellm() -> None:
    code = (
        "import sys, time; from llm_backend.web.app import create_app; from llm_backend.settings import Settings;"
        "t=time.monotonic(); c=create_app(Settings(cache_enabled=False)).test_client();"
        f"r=c.get('/health'); s=c.post('/setup', json={{'schema': {CHOICES_CONFIG!r}, 'project': '1.2'}});"
        "print(r.status_code, s.status_code, 'litellm' in sys.modules, round(time.monotonic()-t, 2))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    status, setup_status, imported, _seconds = out.stdout.split()
    assert (status, setup_status, imported) == ("200", "200", "False"), out.stderr


def test_health(make_client: Any) -> None:
    body = make_client().get("/health").get_json()
    assert body["status"] == "UP"
    assert body["model"] == "openai/test-model"


def test_setup_returns_the_model_version_stamped_on_predictions(make_client: Any, llm: FakeLLMServer) -> None:
    _script(llm)
    client = make_client()
    setup = client.post("/setup", json=fixture_json("setup.json"))
    assert setup.status_code == 200
    version = setup.get_json()["model_version"]
    assert version.startswith("test-model-")
    predicted = client.post("/predict", json=BATCH).get_json()
    assert [item["model_version"] for item in predicted["results"]] == [version, version]
    assert client.post("/setup", json=fixture_json("setup.json")).get_json()["model_version"] == version


def test_batch_replay_gives_valid_regions_in_task_order(make_client: Any, llm: FakeLLMServer) -> None:
    _script(llm)
    results = make_client().post("/predict", json=BATCH).get_json()["results"]
    assert len(results) == 2
    first = {(r["from_name"], r["type"]): r["value"] for r in results[0]["result"]}
    assert first[("sentiment", "choices")] == {"choices": ["Positive"]}
    assert first[("summary", "textarea")] == {"text": ["John likes his job."]}
    spans = sorted((r["value"]["start"], r["value"]["end"], r["value"]["text"], r["value"]["labels"][0])
                   for r in results[0]["result"] if r["type"] == "labels")
    assert spans == [(0, 4, "John", "Person"), (14, 23, "Acme Corp", "Organization")]
    second = {r["from_name"]: r["value"] for r in results[1]["result"] if r["type"] != "labels"}
    assert second["sentiment"] == {"choices": ["Negative"]}  # "negative" mapped to the config's value
    for item in results:
        for region in item["result"]:
            assert region["to_name"] == "text" and region["id"]
    # One call per task, each asking for the schema as response_format.
    assert llm.calls == 2
    sent = llm.requests[0]
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["schema"]["required"] == ["sentiment", "ner", "summary"]
    assert sent["temperature"] == 0


def test_interactive_context_becomes_an_instruction(make_client: Any, llm: FakeLLMServer) -> None:
    _script(llm)
    body = fixture_json("predict-interactive.json")
    result = make_client().post("/predict", json=body).get_json()["results"]
    assert len(result) == 1 and "result" in result[0]
    user_message = llm.requests[0]["messages"][-1]["content"]
    assert "Additional instruction from the annotator for this item: hello" in user_message


def test_webhook_answers_at_once(make_client: Any) -> None:
    response = make_client().post("/webhook", json=fixture_json("webhook-annotation-created.json"))
    assert response.status_code == 200
    assert response.get_json()["action"] == "ANNOTATION_CREATED"


def test_versions_lists_the_current_version(make_client: Any) -> None:
    client = make_client()
    version = client.post("/setup", json=fixture_json("setup.json")).get_json()["model_version"]
    assert client.get("/versions").get_json()["versions"] == [version]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "must be a JSON object"),
        (json.dumps({"label_config": CHOICES_CONFIG}).encode(), 400, "\"tasks\" must be a list"),
        (json.dumps({"tasks": "x", "label_config": CHOICES_CONFIG}).encode(), 400, "\"tasks\" must be a list"),
        (json.dumps({"tasks": []}).encode(), 400, "label_config"),
        (json.dumps({"tasks": [], "label_config": "<View><Oops"}).encode(), 400, "not well-formed"),
    ],
    ids=["malformed", "not-object", "no-tasks", "tasks-not-list", "no-config", "bad-config"],
)
def test_bad_predict_requests_get_a_clear_4xx(make_client: Any, body: bytes, status: int, message: str) -> None:
    client = make_client()
    response = client.post("/predict", data=body, content_type="application/json")
    assert response.status_code == status
    assert message in response.get_json()["error"]["message"]
    assert client.get("/health").status_code == 200


def test_bad_setup_config(make_client: Any) -> None:
    response = make_client().post("/setup", json={"schema": "<View/>", "project": "3.1"})
    assert response.status_code == 400
    assert "no control" in response.get_json()["error"]["message"]


@pytest.mark.parametrize(("body", "logged"), [
    ({"schema": CHOICES_CONFIG, "project": "3.1", "extra_params": '{"model": "gpt-5"}'},
     "POST /setup -> 400 bad_request: extra_params.model 'gpt-5' is not a model this backend knows; known models: "
     "openai/test-model (from LLM_MODEL and LLM_CASCADE)"),
    ({"schema": '<View><Image name="i" value="$image"/><PolygonLabels name="p" toName="i"><Label value="Car"/>'
               "</PolygonLabels></View>", "project": "3.1"},
     "POST /setup -> 400 bad_request: label config has no control this backend can predict (p <polygonlabels>: "),
    ({"schema": "<View><Text name='t' value='$t'/><Choices", "project": "3.1"},
     "POST /setup -> 400 invalid_label_config: "),
], ids=["unknown-model", "nothing-predictable", "broken-xml"])
def test_a_refused_setup_is_logged_with_its_reason(make_client: Any, caplog: pytest.LogCaptureFixture,
                                                   body: dict[str, Any], logged: str) -> None:
    """Label Studio 1.23.2 shows a refused /setup only as "400 Client Error: BAD REQUEST ... Check the ML
    backend server console logs": the reason must be in that log, at WARNING."""
    caplog.set_level(logging.WARNING, logger="llm_backend")
    response = make_client().post("/setup", json=body)
    assert response.status_code == 400
    [record] = [r for r in caplog.records if r.name == "llm_backend.web.app"]
    assert record.levelname == "WARNING" and record.getMessage().startswith(logged)
    assert record.getMessage().endswith(response.get_json()["error"]["message"])


def test_one_bad_task_does_not_fail_the_batch(make_client: Any, llm: FakeLLMServer) -> None:
    llm.add_rule("fine", Reply(json={"sentiment": "Neutral"}))
    body = {"label_config": CHOICES_CONFIG, "project": "1.1", "tasks": [
        {"id": 1, "data": {"text": "fine"}},
        {"id": 2, "data": {"body": "no text field"}},
        "not a task",
        {"id": 4, "data": {"text": "also fine"}},
    ]}
    results = make_client().post("/predict", json=body).get_json()["results"]
    assert len(results) == 4
    assert results[0]["result"][0]["value"] == {"choices": ["Neutral"]}
    assert "result" not in results[1] and "no field \"text\"" in results[1]["error"]
    assert "result" not in results[2] and "JSON object" in results[2]["error"]
    assert results[3]["result"][0]["value"] == {"choices": ["Neutral"]}


@pytest.mark.parametrize(
    ("replies", "ok", "calls"),
    [
        ([Reply(content='```json\n{"sentiment": "Positive"}\n```')], True, 1),
        ([Reply(content='I think it is: {"sentiment": "positive"} because...')], True, 1),
        ([Reply(json={"sentiment": "Amazing"}), Reply(json={"sentiment": "Positive"})], True, 2),
        ([Reply(json={"mood": "Positive"}), Reply(json={"sentiment": "Neutral"})], True, 2),
        ([Reply(content='{"sentiment": "Posi')] * 2, False, 2),
        ([Reply(json={"sentiment": "Amazing"})] * 2, False, 2),
    ],
    ids=["fenced", "prose", "repair-invalid-label", "repair-missing-property", "malformed-twice", "invalid-twice"],
)
def test_answers_are_repaired_once_then_fail_without_result(
    make_client: Any, llm: FakeLLMServer, replies: list[Reply], ok: bool, calls: int
) -> None:
    llm.add_rule("judge me", replies)
    body = {"label_config": CHOICES_CONFIG, "tasks": [{"id": 1, "data": {"text": "judge me"}}]}
    result = make_client().post("/predict", json=body).get_json()["results"][0]
    assert ("result" in result) is ok
    assert llm.calls == calls
    if calls == 2:
        repair = llm.requests[1]["messages"]
        assert repair[-2]["role"] == "assistant"
        assert "could not be used" in repair[-1]["content"]
    if not ok:
        assert "invalid answer after one repair" in result["error"]


def test_task_data_is_not_rendered_as_a_template(make_client: Any, llm: FakeLLMServer) -> None:
    llm.set_default(Reply(json={"sentiment": "Neutral"}))
    body = {"label_config": CHOICES_CONFIG, "tasks": [{"id": 1, "data": {"text": "{{ 7*7 }} {% raw %}"}}]}
    assert "result" in make_client().post("/predict", json=body).get_json()["results"][0]
    user = llm.requests[0]["messages"][-1]["content"]
    assert "{{ 7*7 }} {% raw %}" in user and "49" not in user


def test_edited_template_changes_prompt_and_model_version(
    make_client: Any, llm: FakeLLMServer, tmp_path: Path
) -> None:
    prompts = tmp_path / "prompts"
    shutil.copytree(DEFAULT_PROMPTS_DIR, prompts)
    client = make_client(prompts_dir=prompts)
    setup = {"schema": CHOICES_CONFIG, "project": "7.123"}
    before = client.post("/setup", json=setup).get_json()["model_version"]
    user = prompts / "user.j2"
    user.write_text(user.read_text() + "\nHOUSE RULE: be brief.\n")
    os.utime(user, ns=(user.stat().st_atime_ns, user.stat().st_mtime_ns + 1_000_000_000))
    after = client.post("/setup", json=setup).get_json()["model_version"]
    assert after != before
    llm.set_default(Reply(json={"sentiment": "Neutral"}))
    body = {"label_config": CHOICES_CONFIG, "project": "7.123", "tasks": [{"id": 1, "data": {"text": "hi"}}]}
    result = client.post("/predict", json=body).get_json()
    assert result["results"][0]["model_version"] == after
    assert "HOUSE RULE: be brief." in llm.requests[0]["messages"][-1]["content"]


def test_project_templates_override_defaults(make_client: Any, llm: FakeLLMServer, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    shutil.copytree(DEFAULT_PROMPTS_DIR, prompts)
    (prompts / "projects" / "9").mkdir(parents=True)
    (prompts / "projects" / "9" / "system.j2").write_text("Project nine system prompt.")
    client = make_client(prompts_dir=prompts)
    v9 = client.post("/setup", json={"schema": CHOICES_CONFIG, "project": "9.1"}).get_json()["model_version"]
    v8 = client.post("/setup", json={"schema": CHOICES_CONFIG, "project": "8.1"}).get_json()["model_version"]
    assert v9 != v8
    llm.set_default(Reply(json={"sentiment": "Neutral"}))
    client.post("/predict", json={"label_config": CHOICES_CONFIG, "project": "9.1",
                                  "tasks": [{"id": 1, "data": {"text": "x"}}]})
    assert llm.requests[0]["messages"][0]["content"] == "Project nine system prompt."


def test_broken_template_is_reported_with_file_and_line(make_client: Any, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    shutil.copytree(DEFAULT_PROMPTS_DIR, prompts)
    (prompts / "user.j2").write_text("line one\n{% for x in %}\n")
    from llm_backend.errors import PromptError

    with pytest.raises(PromptError, match=r"user\.j2:2"):
        make_client(prompts_dir=prompts)


def test_metrics_count_tasks(make_client: Any, llm: FakeLLMServer) -> None:
    _script(llm)
    client = make_client()
    client.post("/predict", json=BATCH)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'llm_backend_tasks_total{status="ok"} 2.0' in text
    assert "llm_backend_llm_calls_total 2.0" in text

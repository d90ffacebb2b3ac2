"""Providers differ: schema as response_format, JSON mode, or plain text with the schema in the prompt."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from llm_backend.engine.prompts import DEFAULT_PROMPTS_DIR
from testkit.llm_server import FakeLLMServer, Reply
from tests.conftest import ALL_CONTROLS_CONFIG, CHOICES_CONFIG


@pytest.mark.parametrize(
    ("mode", "response_format", "schema_in_prompt"),
    [("schema", "json_schema", False), ("json", "json_object", True), ("prompt", None, True)],
)
def test_output_modes(make_client: Any, llm: FakeLLMServer, mode: str, response_format: str | None,
                      schema_in_prompt: bool) -> None:
    llm.set_default(Reply(content='Here you go:\n```json\n{"sentiment": "Negative"}\n```'))
    body = {"label_config": CHOICES_CONFIG, "tasks": [{"id": 1, "data": {"text": "meh"}}]}
    [result] = make_client(llm_output_mode=mode).post("/predict", json=body).get_json()["results"]
    assert result["result"][0]["value"] == {"choices": ["Negative"]}
    sent = llm.requests[0]
    assert (sent.get("response_format") or {}).get("type") == response_format
    assert ('"enum": ["Positive", "Negative", "Neutral"]' in sent["messages"][0]["content"]) is schema_in_prompt


def test_hosted_vllm_model_gets_the_schema(make_client: Any, llm: FakeLLMServer) -> None:
    llm.set_default(Reply(json={"sentiment": "Positive"}))
    client = make_client(llm_model="hosted_vllm/qwen2.5-7b")
    body = {"label_config": CHOICES_CONFIG, "tasks": [{"id": 1, "data": {"text": "great"}}]}
    [result] = client.post("/predict", json=body).get_json()["results"]
    assert result["result"][0]["value"] == {"choices": ["Positive"]}
    assert result["model_version"].startswith("qwen2.5-7b-")
    assert llm.requests[0]["response_format"]["json_schema"]["schema"]["properties"]["sentiment"]["enum"] == [
        "Positive", "Negative", "Neutral"]


def test_every_control_through_the_server(make_client: Any, llm: FakeLLMServer) -> None:
    text = "Ada Lovelace met Charles Babbage in London."
    llm.set_default(Reply(json={
        "sentiment": "POSITIVE", "topics": ["tech", "Gardening"],
        "ner": [{"text": "Ada Lovelace", "label": "Person"}, {"text": "Charles Babbage", "label": "Person"},
                {"text": "London", "label": "City"}],
        "summary": "Two pioneers met.", "quality": 4, "year": 1933, "category": ["news / local"],
    }))
    body = {"label_config": ALL_CONTROLS_CONFIG, "tasks": [{"id": 1, "data": {"text": text}}]}
    client = make_client()
    [result] = client.post("/predict", json=body).get_json()["results"]
    values = {(r["from_name"], json.dumps(r["value"], sort_keys=True)) for r in result["result"]}
    assert values == {
        ("sentiment", '{"choices": ["Positive"]}'),
        ("topics", '{"choices": ["Tech"]}'),
        ("ner", '{"end": 12, "labels": ["Person"], "start": 0, "text": "Ada Lovelace"}'),
        ("ner", '{"end": 32, "labels": ["Person"], "start": 17, "text": "Charles Babbage"}'),
        ("summary", '{"text": ["Two pioneers met."]}'),
        ("quality", '{"rating": 4}'),
        ("year", '{"number": 1933}'),
        ("category", '{"taxonomy": [["News", "Local"]]}'),
    }
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'llm_backend_dropped_total{reason="invalid_value"} 2.0' in metrics


def test_batch_log_line_has_the_counts(make_client: Any, llm: FakeLLMServer, caplog: pytest.LogCaptureFixture) -> None:
    llm.set_default(Reply(json={"sentiment": "Positive"}))
    caplog.set_level(logging.INFO, logger="llm_backend")
    body = {"label_config": CHOICES_CONFIG, "tasks": [{"id": i, "data": {"text": f"t{i}"}} for i in range(3)]
            + [{"id": 9, "data": {}}]}
    make_client().post("/predict", json=body)
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("predict: 4 tasks"))
    assert "ok=3 cached=0 failed=1 timed_out=0 llm_calls=3 retries=0" in line
    assert "tokens=" in line and "cost=" in line


def test_runtime_template_error_names_file_and_line(make_client: Any, llm: FakeLLMServer, tmp_path: Path) -> None:
    import shutil

    prompts = tmp_path / "prompts"
    shutil.copytree(DEFAULT_PROMPTS_DIR, prompts)
    (prompts / "user.j2").write_text("ok\n{{ task.data.text.__class__.__mro__ }}\n")
    body = {"label_config": CHOICES_CONFIG, "tasks": [{"id": 1, "data": {"text": "x"}}]}
    [result] = make_client(prompts_dir=prompts).post("/predict", json=body).get_json()["results"]
    assert "result" not in result
    assert "user.j2:2" in result["error"] and "unsafe" in result["error"]
    assert llm.calls == 0


def test_prompts_init_writes_an_editable_project_copy(tmp_path: Path) -> None:
    config = tmp_path / "config.xml"
    config.write_text(CHOICES_CONFIG)
    prompts = tmp_path / "prompts"
    env = {"PROMPTS_DIR": str(prompts), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "llm_backend", "prompts", "init", "--config", str(config),
                          "--project", "12"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert (prompts / "projects" / "12" / "user.j2").is_file()
    assert (prompts / "projects" / "12" / "controls" / "choices.j2").is_file()
    assert '"Positive"' in out.stdout and "--- model_version:" in out.stdout
    bad = tmp_path / "bad.xml"
    bad.write_text("<View><Choices")
    out = subprocess.run([sys.executable, "-m", "llm_backend", "prompts", "init", "--config", str(bad)],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert out.returncode == 1 and "bad.xml" in out.stderr and "not well-formed" in out.stderr

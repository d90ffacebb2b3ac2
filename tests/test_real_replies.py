"""Replies as real models send them, through the real server, in `schema` and `json` output modes.

The test LLM server answers the right answer dressed the way local and hosted models dress it
(`testkit/reply_styles.py`: reasoning blocks, fences, prose, trailing commas, single quotes, the
answer in `reasoning_content`...). Every recoverable shape must give exactly the right regions with
one model call and no repair round; every unrecoverable one (cut off, refused, empty) a per-task
error that names its cause, without paying for a repair round; nothing invalid ever comes back
inside a `result`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from testkit.llm_server import FakeLLMServer, Reply
from tests.conftest import cli

CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single">
    <Choice value="Positive"/><Choice value="Negative"/><Choice value="Neutral"/>
  </Choices>
  <Labels name="ner" toName="text">
    <Label value="Person"/><Label value="Location"/>
  </Labels>
  <TextArea name="summary" toName="text"/>
</View>"""
TEXT = "Ada Lovelace met Charles Babbage in London."
SUMMARY = "Two pioneers met.\nIn London."
ANSWER: dict[str, Any] = {
    "sentiment": "Positive",
    "ner": [{"text": "Ada Lovelace", "label": "Person"}, {"text": "London", "label": "Location"}],
    "summary": SUMMARY,
}
EXPECTED = {
    ("sentiment", json.dumps({"choices": ["Positive"]})),
    ("ner", json.dumps({"end": 12, "labels": ["Person"], "start": 0, "text": "Ada Lovelace"})),
    ("ner", json.dumps({"end": 42, "labels": ["Location"], "start": 36, "text": "London"})),
    ("summary", json.dumps({"text": [SUMMARY]})),
}
MODES = ["schema", "json"]
FORMAT_TYPE = {"schema": "json_schema", "json": "json_object", "prompt": None}

# reply shape -> the reply. Every one of them carries the right answer.
RECOVERABLE: dict[str, Reply] = {
    "think block with a draft object": Reply(json=ANSWER, style="think"),
    "think block opened by the chat template": Reply(json=ANSWER, style="think_no_open"),
    "reasoning tag": Reply(json=ANSWER, style="reasoning_tag"),
    "json fence": Reply(json=ANSWER, style="fence"),
    "prose with braces around the JSON": Reply(json=ANSWER, style="prose"),
    "extra keys": Reply(json=ANSWER, style="extra_keys"),
    "reasoning_content beside the content": Reply(json=ANSWER, style="reasoning_beside"),
    "label as 'positive.'": Reply(json={**ANSWER, "sentiment": "positive."}),
    "trailing commas": Reply(json=ANSWER, style="trailing_commas"),
    "single quotes": Reply(json=ANSWER, style="single_quotes"),
    "Python literals True/None": Reply(content=repr({**ANSWER, "certain": True, "caveat": None})),
    "comments": Reply(json=ANSWER, style="comments"),
    "unescaped newline in a string": Reply(json=ANSWER, style="raw_newlines"),
    "answer only in reasoning_content (LM Studio, llama.cpp)": Reply(json=ANSWER, style="reasoning_only"),
    "answer only in vLLM's reasoning, content null": Reply(json=ANSWER, style="reasoning_only_vllm"),
    "think block, then trailing commas": Reply(json=ANSWER, style="think+trailing_commas"),
    "prose, then single quotes": Reply(json=ANSWER, style="prose+single_quotes"),
    "fence around commented JSON": Reply(json=ANSWER, style="fence+comments"),
}


def _body(tasks: int = 1) -> dict[str, Any]:
    return {"label_config": CONFIG, "project": "15.1",
            "tasks": [{"id": i + 1, "data": {"text": TEXT}} for i in range(tasks)]}


def _regions(result: dict[str, Any]) -> set[tuple[str, str]]:
    return {(region["from_name"], json.dumps(region["value"], sort_keys=True)) for region in result["result"]}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", list(RECOVERABLE))
def test_recoverable_reply_shapes_give_exactly_the_right_regions(
        make_client: Any, llm: FakeLLMServer, shape: str, mode: str) -> None:
    llm.set_default(RECOVERABLE[shape])
    [result] = make_client(llm_output_mode=mode).post("/predict", json=_body()).get_json()["results"]
    assert _regions(result) == EXPECTED
    assert "error" not in result
    assert llm.calls == 1  # read as it came: no repair round, no retry
    assert (llm.requests[0].get("response_format") or {}).get("type") == FORMAT_TYPE[mode]


@pytest.mark.parametrize(
    ("reply", "repairs"),
    [
        (Reply(json=ANSWER, style="think_no_open"), "reasoning_block"),
        (Reply(json=ANSWER, style="fence"), "code_fence"),
        (Reply(json=ANSWER, style="prose+trailing_commas"), "prose, json_repair"),
        (Reply(json=ANSWER, style="reasoning_only"), "reasoning_content, prose"),
    ],
    ids=["think", "fence", "prose-commas", "reasoning-content"],
)
def test_the_repair_needed_is_on_the_tasks_log_line_and_in_the_metrics(
        make_client: Any, llm: FakeLLMServer, caplog: pytest.LogCaptureFixture, reply: Reply, repairs: str) -> None:
    llm.set_default(reply)
    caplog.set_level(logging.INFO, logger="llm_backend")
    client = make_client()
    [result] = client.post("/predict", json=_body()).get_json()["results"]
    assert _regions(result) == EXPECTED
    assert f"task 1 answered: reply read with repairs: {repairs}" in caplog.messages
    metrics = client.get("/metrics").get_data(as_text=True)
    for repair in repairs.split(", "):
        assert f'llm_backend_reply_repairs_total{{repair="{repair}"}} 1.0' in metrics


@pytest.mark.parametrize("mode", MODES)
def test_cut_off_without_a_token_limit_names_llm_max_tokens_and_pays_no_repair(
        make_client: Any, llm: FakeLLMServer, mode: str) -> None:
    llm.set_default(Reply(json=ANSWER, style="cut_off"))
    client = make_client(llm_output_mode=mode)
    [result] = client.post("/predict", json=_body()).get_json()["results"]
    assert "result" not in result
    assert result["error"].startswith("the answer was cut off at the model server's own token limit after ")
    assert 'finish_reason "length"' in result["error"] and "set LLM_MAX_TOKENS" in result["error"]
    assert llm.calls == 1
    assert 'llm_backend_reply_problems_total{problem="cut_off"} 1.0' in client.get("/metrics").get_data(as_text=True)


@pytest.mark.parametrize("mode", MODES)
def test_cut_off_at_llm_max_tokens_is_asked_once_with_twice_the_budget(
        make_client: Any, llm: FakeLLMServer, mode: str) -> None:
    llm.set_default(Reply(json=ANSWER, style="cut_off"))
    client = make_client(llm_output_mode=mode, llm_max_tokens=300)
    [failed] = client.post("/predict", json=_body()).get_json()["results"]
    assert "result" not in failed
    assert failed["error"].startswith('the answer was cut off at the token limit (finish_reason "length") twice, '
                                      "at max_tokens=300 and again at 600; raise LLM_MAX_TOKENS")
    assert [r["max_tokens"] for r in llm.requests] == [300, 600]

    llm.reset()
    llm.add_rule(TEXT, [Reply(json=ANSWER, style="cut_off"), Reply(json=ANSWER, style="fence")])
    [result] = client.post("/predict", json=_body()).get_json()["results"]
    assert _regions(result) == EXPECTED
    assert [r["max_tokens"] for r in llm.requests] == [300, 600]
    # Cached under the request Label Studio's next call makes: a re-run is free.
    assert client.post("/predict", json=_body()).get_json()["results"] == [result]
    assert llm.calls == 2


def test_a_reasoning_model_cut_off_while_thinking_says_so(make_client: Any, llm: FakeLLMServer) -> None:
    llm.set_default(Reply(json=ANSWER, style="cut_off_thinking"))
    [result] = make_client().post("/predict", json=_body()).get_json()["results"]
    assert "result" not in result
    assert "it was still thinking: the reasoning took the whole budget" in result["error"]
    assert llm.calls == 1


@pytest.mark.parametrize("mode", MODES)
def test_a_refusal_is_quoted_without_a_repair_round(make_client: Any, llm: FakeLLMServer, mode: str) -> None:
    llm.set_default(Reply(json=ANSWER, style="refusal"))
    [result] = make_client(llm_output_mode=mode).post("/predict", json=_body()).get_json()["results"]
    assert result == {"model_version": result["model_version"],
                      "error": "the model refused to answer: \"I'm sorry, but I can't help with that request.\""}
    assert llm.calls == 1


@pytest.mark.parametrize("mode", MODES)
def test_a_content_filter_stop_is_named(make_client: Any, llm: FakeLLMServer, mode: str) -> None:
    llm.set_default(Reply(json=ANSWER, style="content_filter"))
    [result] = make_client(llm_output_mode=mode).post("/predict", json=_body()).get_json()["results"]
    assert "result" not in result
    assert result["error"] == "the provider's content filter stopped the answer (finish_reason \"content_filter\")"
    assert llm.calls == 1


@pytest.mark.parametrize("mode", MODES)
def test_an_empty_reply_is_asked_once_more_then_named(make_client: Any, llm: FakeLLMServer, mode: str) -> None:
    llm.set_default(Reply(json=ANSWER, style="empty"))
    client = make_client(llm_output_mode=mode)
    [result] = client.post("/predict", json=_body()).get_json()["results"]
    assert "result" not in result
    assert result["error"].startswith("the model returned an empty reply twice (no content, no refusal, "
                                      'finish_reason "stop")')
    assert "LLM_OUTPUT_MODE" in result["error"]
    assert llm.calls == 2

    llm.reset()
    llm.add_rule(TEXT, [Reply(json=ANSWER, style="empty"), Reply(json=ANSWER)])
    [result] = client.post("/predict", json=_body()).get_json()["results"]
    assert _regions(result) == EXPECTED and llm.calls == 2


@pytest.mark.parametrize("mode", MODES)
def test_one_invalid_control_is_dropped_and_the_others_kept(make_client: Any, llm: FakeLLMServer, mode: str) -> None:
    llm.set_default(Reply(json={**ANSWER, "sentiment": "Mixed"}, style="think"))
    client = make_client(llm_output_mode=mode)
    [result] = client.post("/predict", json=_body()).get_json()["results"]
    assert _regions(result) == {region for region in EXPECTED if region[0] != "sentiment"}
    assert result["error"] == ("sentiment left out: property \"sentiment\": 'Mixed' is not one of the allowed "
                               "choices: Positive, Negative, Neutral")
    assert llm.calls == 2  # the answer and one repair round, which kept "Mixed"
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "llm_backend_partial_answers_total 1.0" in metrics
    assert 'llm_backend_dropped_total{reason="invalid_control"} 1.0' in metrics
    # The partial answer was returned, so it is cached: the same result again, for free.
    assert client.post("/predict", json=_body()).get_json()["results"] == [result]
    assert llm.calls == 2


def test_a_task_with_no_valid_control_still_comes_back_without_result(make_client: Any, llm: FakeLLMServer,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    llm.set_default(Reply(json={"sentiment": "Mixed", "ner": "Ada", "summary": 7}))
    caplog.set_level(logging.INFO, logger="llm_backend")
    [result] = make_client().post("/predict", json=_body()).get_json()["results"]
    assert "result" not in result
    assert result["error"].startswith("invalid answer after one repair: the JSON object is not valid: ")
    assert llm.calls == 2
    assert any(line.startswith("predict") and "failed=1" in line for line in caplog.messages)


def test_the_repair_round_keeps_what_the_repaired_reply_got_right(make_client: Any, llm: FakeLLMServer,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="llm_backend")
    llm.add_rule(TEXT, [Reply(content="I think it is positive."), Reply(json={**ANSWER, "ner": "everyone"})])
    [result] = make_client().post("/predict", json=_body()).get_json()["results"]
    assert _regions(result) == {region for region in EXPECTED if region[0] != "ner"}
    assert result["error"].startswith('ner left out: property "ner": ')
    assert any(line.startswith("task 1 answered in part: ner left out") for line in caplog.messages)


@pytest.mark.parametrize("mode", ["schema", "json", "prompt"])
@pytest.mark.parametrize("style", ["think", "reasoning_beside", "reasoning_only"])
def test_reasoning_models_work_in_all_three_output_modes(make_client: Any, llm: FakeLLMServer, mode: str,
                                                        style: str) -> None:
    llm.set_default(Reply(json=ANSWER, style=style))
    client = make_client(llm_output_mode=mode, llm_model="openai/o3-mini")
    [result] = client.post("/predict", json=_body()).get_json()["results"]
    assert _regions(result) == EXPECTED
    sent = llm.requests[0]
    # LiteLLM's drop_params leaves out what o-series models refuse.
    assert "temperature" not in sent and "logprobs" not in sent
    assert (sent.get("response_format") or {}).get("type") == FORMAT_TYPE[mode]


def test_a_parameter_the_server_refuses_is_dropped_for_that_model(make_client: Any, llm: FakeLLMServer,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    def answer(body: dict[str, Any]) -> Reply:
        if "temperature" in body:
            return Reply(status=400, error_message="Unsupported value: 'temperature' does not support 0 with this "
                                                   "model. Only the default (1) value is supported.")
        return Reply(json=ANSWER)

    llm.set_default(answer)
    client = make_client(llm_model="openai/my-reasoning-deployment", llm_concurrency=1)
    results = client.post("/predict", json={**_body(3), "tasks": [
        {"id": i, "data": {"text": f"{TEXT} ({i})"}} for i in range(3)]}).get_json()["results"]
    assert all("result" in result for result in results)
    assert ["temperature" in request for request in llm.requests] == [True, False, False, False]
    assert any("openai/my-reasoning-deployment refused temperature" in line and "leaving it out" in line
               for line in caplog.messages)


def test_vllm_reasoning_field(make_client: Any, llm: FakeLLMServer) -> None:
    llm.set_default(Reply(json=ANSWER, style="reasoning_only_vllm"))
    [result] = make_client(llm_model="hosted_vllm/Qwen/Qwen3-8B").post("/predict", json=_body()).get_json()["results"]
    assert _regions(result) == EXPECTED and llm.calls == 1


@pytest.mark.parametrize(("mode", "sent_format"), [("schema", "schema"), ("json", "json"), ("prompt", None)])
def test_ollama_chat_uses_its_structured_format(make_client: Any, llm: FakeLLMServer, mode: str,
                                               sent_format: str | None) -> None:
    llm.set_default(Reply(json=ANSWER, style="think"))
    client = make_client(llm_model="ollama_chat/qwen3:8b", llm_api_base=llm.url, llm_output_mode=mode)
    [result] = client.post("/predict", json=_body()).get_json()["results"]
    assert _regions(result) == EXPECTED
    [sent] = llm.requests
    assert sent["_path"] == "/api/chat" and sent["model"] == "qwen3:8b"
    if sent_format == "schema":
        assert sent["format"]["properties"]["sentiment"]["enum"] == ["Positive", "Negative", "Neutral"]
    else:
        assert sent.get("format") == sent_format


def test_doctor_probes_each_output_mode_and_recommends_the_setting(llm: FakeLLMServer, tmp_path: Path) -> None:
    answer = {"sentiment": "Positive", "entities": [{"text": "Ada Lovelace", "label": "Person"}]}

    def local_model(body: dict[str, Any]) -> Reply:
        kind = (body.get("response_format") or {}).get("type")
        if kind == "json_schema":  # a server too old for structured outputs
            return Reply(status=400, error_message="response_format type json_schema is not supported")
        if kind == "json_object":
            return Reply(json=answer, style="fence")
        return Reply(json=answer, style="think_no_open+prose")

    llm.set_default(local_model)
    env = {"LLM_MODEL": "openai/local-model", "LLM_API_BASE": llm.base_url, "LLM_API_KEY": "sk-x",
           "PROMPTS_DIR": str(tmp_path / "prompts"), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    out = cli(["doctor"], env)
    assert out.exit_code == 1, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("[FAIL] output mode schema: not followed: BadRequestError (HTTP 400)")
               for line in lines)
    assert "[PASS] output mode json: followed, but reading the reply took repairs: code_fence" in lines
    assert "[PASS] output mode prompt: followed, but reading the reply took repairs: reasoning_block, prose" in lines
    assert "[FAIL] LLM_OUTPUT_MODE: the model does not follow LLM_OUTPUT_MODE=schema" in lines
    assert ("       fix: set LLM_OUTPUT_MODE=json (followed, but reading the reply took repairs: code_fence)"
            in lines)
    # A real probe: the predictor's own prompt for a small config, in each mode.
    probes = [r for r in llm.requests if r["messages"][-1]["content"] != "Reply with the single word: yes"]
    assert [(r.get("response_format") or {}).get("type") for r in probes] == ["json_schema", "json_object", None]
    assert all("Ada Lovelace loved her years in London" in r["messages"][-1]["content"] for r in probes)


def test_a_server_that_refuses_json_mode_is_named_with_the_setting(make_client: Any, llm: FakeLLMServer) -> None:
    # LM Studio's answer to response_format json_object, as its users report it.
    llm.set_default(Reply(status=400, error_message="'response_format.type' must be 'json_schema' or 'text'"))
    [result] = make_client(llm_output_mode="json").post("/predict", json=_body()).get_json()["results"]
    assert "result" not in result
    assert "'response_format.type' must be 'json_schema' or 'text'" in result["error"]
    assert result["error"].endswith("(the model server refused the response_format of this LLM_OUTPUT_MODE; "
                                    "`llm-backend doctor` tells which output mode it follows)")
    assert llm.calls == 1

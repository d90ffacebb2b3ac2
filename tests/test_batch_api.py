"""`--batch-api`: whole runs through the provider's batch API (the test server's, reached by LiteLLM over HTTP)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from llm_backend.cli.main import main
from llm_backend.engine.provider_batch_store import open_batch_store
from testkit.llm_server import FakeLLMServer, Reply
from tests.conftest import interrupt_when, map_price
from tests.test_cascade import SMALL, scripted
from tests.test_offline_predict import cli_env

CHOICES = """<View><Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single">
    <Choice value="Positive"/><Choice value="Negative"/><Choice value="Neutral"/></Choices></View>"""
PRICE = map_price("gpt-4o-mini")  # USD per token, regular and in a batch


def run_cli(args: list[str], env: dict[str, str]) -> Result:
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


def write_inputs(tmp_path: Path, texts: list[str], config: str = CHOICES) -> tuple[Path, Path]:
    (tmp_path / "config.xml").write_text(config)
    (tmp_path / "tasks.jsonl").write_text("".join(json.dumps({"text": text}) + "\n" for text in texts))
    return tmp_path / "config.xml", tmp_path / "tasks.jsonl"


def predict_args(config: Path, tasks: Path, out: Path, *extra: str) -> list[str]:
    return ["predict", "--config", str(config), "--tasks", str(tasks), "--out", str(out), "--batch-api",
            "--poll-interval", "0.05", *extra]


def chosen(out: Path) -> list[str | None]:
    return [task["predictions"][0]["result"][0]["value"]["choices"][0] if task["predictions"] else None
            for task in json.loads(out.read_text())]


def test_a_batch_with_failed_and_invalid_lines_answers_every_task_and_asks_those_again_once(
    llm: FakeLLMServer, tmp_path: Path
) -> None:
    texts = [f"review {i} [b{i}]" for i in range(10)] + ["review 0 [b0]"]  # the last repeats the first
    config, tasks = write_inputs(tmp_path, texts)
    llm.set_default(Reply(json={"sentiment": "Positive"}))
    llm.add_rule("[b3]", Reply(status=500, error_message="overloaded"), times=1)  # the batch line fails
    llm.add_rule("[b5]", Reply(status=400, error_message="flagged"), times=1)
    llm.add_rule("[b7]", Reply(content="Positive, I think."), times=1)  # an answer that is not valid JSON
    llm.add_rule("[b9]", Reply(json={"sentiment": "Negative"}))
    env = cli_env(llm, tmp_path, LLM_MODEL="openai/gpt-4o-mini")
    out = tmp_path / "out.json"

    result = run_cli(predict_args(config, tasks, out), env)
    assert result.exit_code == 0, result.output
    [batch] = llm.batch_api.batches.values()
    assert batch.status == "completed" and len(batch.lines) == 10  # one line per distinct request
    assert sorted(line.status for line in batch.lines) == [200] * 8 + [400, 500]
    body = batch.lines[0].body
    assert body["model"] == "gpt-4o-mini" and body["response_format"]["type"] == "json_schema"
    assert body["temperature"] == 0 and body["logprobs"] is True
    # Only the failed and the invalid lines went through the normal path, once each.
    asked = [marker for request in llm.requests for marker in ("[b3]", "[b5]", "[b7]")
             if marker in json.dumps(request["messages"])]
    assert sorted(asked) == ["[b3]", "[b5]", "[b7]"] and llm.calls == 3
    assert chosen(out) == ["Positive"] * 9 + ["Negative", "Positive"]
    assert "11 tasks in" in result.output and "11 predicted (1 from the cache), 0 failed" in result.output
    assert "1 batch (1 created); 8 answers, 2 failed lines, 1 invalid answers" in result.output
    assert "8 tasks answered from the batch" in result.output  # 7 valid answers, and the repeat of one

    # The bill: the 8 answered lines at the batch price (the invalid one was paid for too), and what they saved.
    used = [line.usage for line in batch.lines if line.status == 200]
    prompt, completion = sum(u["prompt_tokens"] for u in used), sum(u["completion_tokens"] for u in used)
    batch_cost = prompt * PRICE["batch_input"] + completion * PRICE["batch_output"]
    regular = prompt * PRICE["input"] + completion * PRICE["output"]
    assert (f"batch cost ${batch_cost:.6f} for {prompt} prompt + {completion} completion tokens; "
            f"${regular:.6f} at regular prices, saved ${regular - batch_cost:.6f}") in result.output
    normal = llm.usage()
    assert f"tokens {prompt + normal['prompt_tokens']} prompt + {completion + normal['completion_tokens']} " \
        "completion" in result.output

    # Every answer is cached and the batch is closed: a re-run sends nothing.
    again = run_cli(predict_args(config, tasks, out), env)
    assert again.exit_code == 0, again.output
    assert llm.batch_api.created == 1 and llm.calls == 3
    assert "batch API: nothing to send" in again.output and "11 predicted (11 from the cache)" in again.output
    assert open_batch_store(tmp_path / "cache", None).open() == []


def test_a_batch_still_running_when_the_client_stops_is_polled_again_not_resubmitted(
    llm: FakeLLMServer, tmp_path: Path
) -> None:
    config, tasks = write_inputs(tmp_path, [f"comment {i}" for i in range(30)])
    llm.set_default(Reply(json={"sentiment": "Neutral"}))
    llm.batch_api.hold = True
    env = cli_env(llm, tmp_path, LLM_MODEL="openai/gpt-4o-mini")
    out = tmp_path / "out.json"
    args = [sys.executable, "-m", "llm_backend", *predict_args(config, tasks, out)]

    def polled_twice() -> bool:
        return any(batch.retrieved >= 2 for batch in list(llm.batch_api.batches.values()))

    returncode, stdout, stderr = interrupt_when(args, env, polled_twice)
    assert returncode == 130, stdout + stderr
    [batch_id] = llm.batch_api.batches
    assert f"batch {batch_id}: in_progress, 0/30 answered, 0 failed: still running at the provider" in stderr
    assert "run the same command to resume polling" in stderr and not out.exists()
    [record] = open_batch_store(tmp_path / "cache", None).open()
    assert record.id == batch_id and len(record.keys) == 30

    llm.batch_api.hold = False
    result = run_cli(predict_args(config, tasks, out), env)
    assert result.exit_code == 0, result.output
    assert f"resuming batch {batch_id}" in result.output
    assert llm.batch_api.created == 1 and llm.calls == 0  # the same batch, and no normal calls
    assert chosen(out) == ["Neutral"] * 30
    assert "1 batch (0 created, 1 resumed); 30 answers" in result.output


def test_an_expired_batch_leaves_the_rest_to_the_normal_path(llm: FakeLLMServer, tmp_path: Path) -> None:
    config, tasks = write_inputs(tmp_path, [f"note {i}" for i in range(6)])
    llm.set_default(Reply(json={"sentiment": "Negative"}))
    llm.batch_api.expire_after = 4
    out = tmp_path / "out.json"
    result = run_cli(predict_args(config, tasks, out), cli_env(llm, tmp_path))
    assert result.exit_code == 0, result.output
    assert "expired, 4/6 answered, 2 failed" in result.output
    assert llm.calls == 2 and chosen(out) == ["Negative"] * 6
    # openai/test-model has no price: the batch's cost is unknown, not $0.
    assert "batch cost unknown for" in result.output and "unknown at regular prices, saved unknown" in result.output
    assert "cost unknown (no price for this model)" in result.output


def test_with_a_cascade_the_batch_asks_the_first_model_and_escalations_go_on_normally(
    llm: FakeLLMServer, tmp_path: Path, make_settings: Callable[..., Any]
) -> None:
    from tests.test_cascade import CONFIG, ESCALATED, asked

    config, tasks = write_inputs(tmp_path, list(SMALL), CONFIG)
    llm.set_default(scripted)
    env = cli_env(llm, tmp_path, LLM_MODEL="openai/small", LLM_CASCADE="openai/small,openai/large",
                  CASCADE_MIN_SCORE="0.5")
    out = tmp_path / "out.json"
    result = run_cli(predict_args(config, tasks, out), env)
    assert result.exit_code == 0, result.output
    [batch] = llm.batch_api.batches.values()
    assert {line.body["model"] for line in batch.lines} == {"small"} and len(batch.lines) == 5
    assert asked(llm, "large") == sorted(ESCALATED)
    # "broken" never answers valid JSON: its batch answer is asked again normally (a call and a repair).
    assert asked(llm, "small") == ["broken: Erin met Frank.", "broken: Erin met Frank."]
    written = json.loads(out.read_text())
    versions = {task["predictions"][0]["model_version"] for task in written}
    assert len(versions) == 1 and next(iter(versions)).startswith("small-large-")
    by_text = {task["data"]["text"]: task["predictions"][0]["result"] for task in written}
    sentiment = {text: next(r["value"]["choices"][0] for r in regions if r["from_name"] == "sentiment")
                 for text, regions in by_text.items()}
    assert sentiment == {text: "Negative" if text in ESCALATED else "Positive" for text in SMALL}


def test_a_model_without_a_batch_api_is_refused_with_the_reason(llm: FakeLLMServer, tmp_path: Path) -> None:
    config, tasks = write_inputs(tmp_path, ["x"])
    result = run_cli(predict_args(config, tasks, tmp_path / "out.json"),
                     cli_env(llm, tmp_path, LLM_MODEL="ollama_chat/llama3.1"))
    assert result.exit_code == 2
    assert "ollama_chat/llama3.1 has no batch API: its provider (ollama_chat) is not one LiteLLM runs batches " \
           "for" in result.stderr
    assert "run without --batch-api" in result.stderr and llm.calls == 0


@pytest.mark.parametrize("status", [404, 401])
def test_a_server_that_refuses_the_files_api_stops_the_run_with_its_answer(
    llm: FakeLLMServer, tmp_path: Path, status: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from testkit import llm_batches

    def refuse(api: Any, filename: str, purpose: str, data: bytes) -> Any:
        raise llm_batches.BatchAPIError(status, "no files API here")

    monkeypatch.setattr(llm_batches.BatchAPI, "upload", refuse)
    config, tasks = write_inputs(tmp_path, ["x"])
    result = run_cli(predict_args(config, tasks, tmp_path / "out.json"), cli_env(llm, tmp_path))
    assert result.exit_code == 2
    assert f"uploading the batch file failed for openai/test-model at {llm.base_url}" in result.stderr
    assert f"(HTTP {status})" in result.stderr and "no files API here" in result.stderr
    assert llm.batch_api.created == 0 and llm.calls == 0


@pytest.mark.label_studio
def test_label_project_through_the_batch_api_survives_an_interruption_and_predicts_each_task_once(
    label_studio: Any, llm: FakeLLMServer, tmp_path: Path
) -> None:
    from tests.test_label_project_e2e import by_version, ls_env

    project = label_studio.create_project("batch api", CHOICES)
    task_ids = label_studio.import_tasks(project, [{"text": f"ticket {i} [lb{i}]"} for i in range(100)])
    llm.set_default(Reply(json={"sentiment": "Positive"}))
    llm.add_rule("[lb13]", Reply(status=500, error_message="overloaded"), times=1)  # one line fails in the batch
    llm.add_rule("[lb42]", Reply(json={"sentiment": "Negative"}))
    llm.batch_api.hold = True
    env = ls_env(llm, tmp_path, label_studio)
    args = [sys.executable, "-m", "llm_backend", "label-project", "--project", str(project), "--batch-api",
            "--poll-interval", "0.05", "--page-size", "30"]

    def created_and_polled() -> bool:
        return any(batch.retrieved >= 2 for batch in list(llm.batch_api.batches.values()))

    returncode, stdout, stderr = interrupt_when(args, env, created_and_polled)
    assert returncode == 130, stdout + stderr
    assert "still running at the provider" in stderr and label_studio.predictions(project) == []

    llm.batch_api.hold = False
    rerun = run_cli(args[3:], env)
    assert rerun.exit_code == 0, rerun.output
    assert llm.batch_api.created == 1  # one batch in total: the second run resumed it
    assert "resuming batch" in rerun.output and "imported 100 predictions" in rerun.output
    assert llm.calls == 1  # only the failed line, through the normal path
    [version] = by_version(label_studio, project)
    assert by_version(label_studio, project)[version] == {task_id: 1 for task_id in task_ids}
    values = {p["task"]: p["result"][0]["value"]["choices"] for p in label_studio.predictions(project)}
    assert values[task_ids[42]] == ["Negative"] and values[task_ids[13]] == ["Positive"]
    assert all(value == ["Positive"] for task_id, value in values.items() if task_id != task_ids[42])

    third = run_cli(args[3:], env)  # nothing left to do, and no batch created for nothing
    assert third.exit_code == 0 and "0 tasks had no prediction of it" in third.output
    assert llm.batch_api.created == 1 and llm.calls == 1


@pytest.mark.redis
def test_the_batch_store_keeps_open_batches_in_sqlite_or_redis(tmp_path: Path, redis_url: str) -> None:
    import time

    from llm_backend.engine.provider_batch_store import MAX_AGE, BatchRecord

    for store in (open_batch_store(tmp_path, None), open_batch_store(tmp_path, redis_url)):
        fresh = BatchRecord("batch_a", "gpt", "openai/gpt-4o-mini", None, ("k1", "k2"), time.time(), "12")
        stale = BatchRecord("batch_b", "gpt", "openai/gpt-4o-mini", None, ("k3",), time.time() - MAX_AGE - 60)
        store.add(fresh)
        store.add(stale)
        assert store.open() == [fresh]  # a batch older than the provider keeps its files is not resumed
        assert fresh.same_target("openai/gpt-4o-mini", "") and not fresh.same_target("openai/gpt-4o", None)
        store.close("batch_a")
        assert store.open() == []


def test_a_create_that_may_have_succeeded_is_not_retried(llm: FakeLLMServer, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from testkit import llm_batches

    attempts: list[object] = []

    def overloaded(api: Any, body: object) -> Any:
        attempts.append(body)
        raise llm_batches.BatchAPIError(503, "overloaded")

    monkeypatch.setattr(llm_batches.BatchAPI, "create", overloaded)
    config, tasks = write_inputs(tmp_path, ["x", "y"])
    result = run_cli(predict_args(config, tasks, tmp_path / "out.json"), cli_env(llm, tmp_path))
    assert result.exit_code == 2
    assert "creating the batch failed" in result.stderr and "(HTTP 503)" in result.stderr
    assert "the provider may have created the batch anyway" in result.stderr
    assert len(attempts) == 1 and len(llm.batch_api.files) == 1  # a 503 is retried elsewhere, never here


def test_a_text_longer_than_the_context_is_left_out_of_the_batch_and_asked_in_parts(
    llm: FakeLLMServer, tmp_path: Path
) -> None:
    from testkit.documents import planted_document

    long_text, _planted = planted_document(seed=51, chars=30_000, entities=0)
    config, tasks = write_inputs(tmp_path, ["short review [s1]", long_text, "short review [s2]"])
    llm.set_default(Reply(json={"sentiment": "Negative"}))
    llm.context_tokens = 2048
    # A model LiteLLM's map does not know, so LLM_CONTEXT_TOKENS is its window.
    env = cli_env(llm, tmp_path, LLM_MODEL="openai/test-model", LLM_CONTEXT_TOKENS="2048")
    out = tmp_path / "out.json"
    result = run_cli(predict_args(config, tasks, out), env)
    assert result.exit_code == 0, result.output
    [batch] = llm.batch_api.batches.values()
    assert len(batch.lines) == 2 and all("short review" in json.dumps(line.body) for line in batch.lines)
    parts = [r for r in llm.requests if "one part of a longer document" in r["messages"][-1]["content"]]
    assert len(parts) == llm.calls > 2 and llm.count(400) == 0  # the long text, in parts that fit, normally
    assert chosen(out) == ["Negative"] * 3


def test_batch_lines_cut_off_refused_or_in_a_think_block_are_judged_like_any_reply(
    llm: FakeLLMServer, tmp_path: Path
) -> None:
    config, tasks = write_inputs(tmp_path, ["memo [c1]", "memo [c2]", "memo [c3]", "memo [c4]"])
    llm.set_default(Reply(json={"sentiment": "Neutral"}))
    llm.add_rule("[c1]", Reply(json={"sentiment": "Positive"}, style="cut_off"), times=1)  # never read half
    llm.add_rule("[c2]", Reply(style="refusal"), times=1)
    llm.add_rule("[c3]", Reply(json={"sentiment": "Negative"}, style="think+trailing_commas"))  # read as it is
    env = cli_env(llm, tmp_path, LLM_MODEL="openai/gpt-4o-mini")
    out = tmp_path / "out.json"
    result = run_cli(predict_args(config, tasks, out), env)
    assert result.exit_code == 0, result.output
    assert "2 invalid answers" in result.output
    # The cut-off and the refused lines went through the normal path once each; the others were used.
    asked = sorted(marker for request in llm.requests for marker in ("[c1]", "[c2]", "[c3]", "[c4]")
                   if marker in json.dumps(request["messages"]))
    assert asked == ["[c1]", "[c2]"]
    assert chosen(out) == ["Neutral", "Neutral", "Negative", "Neutral"]

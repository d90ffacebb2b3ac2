"""What a new user meets in the first hour, asserted on each command's own output: a provider failure worded
as `serve` words it, with its fix (models/failures.py, core/causes.py), a re-run advised only where a re-run can
help, a failed `plan --sample` that fails, `eval` refusing a config that matches no annotation, task-file
errors that name the accepted formats, a taken port that names PORT, the demo model at $0 with no model call,
and `prompts init` previewing a real sentence."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from llm_backend.cli.main import main
from llm_backend.core.causes import classify_failure
from testkit.llm_server import FakeLLMServer, Reply
from tests.conftest import FIXTURES
from tests.test_offline_predict import cli_env

OFFLINE = FIXTURES / "offline"
SENTIMENT_XML = OFFLINE / "sentiment.xml"
TASKS = OFFLINE / "tasks.jsonl"
NO_KEY_MESSAGE = "LLM_MODEL=openai/gpt-4o-mini needs OPENAI_API_KEY, which is not set: set LLM_API_KEY or export " \
                 "OPENAI_API_KEY"
PROVIDER_MESSAGE = "LLM_MODEL=gpt-5o: LiteLLM knows no provider for 'gpt-5o'; write it as provider/model"
NO_RERUN = "running the command again will not help until the cause above is fixed"


def run(args: list[str], env: dict[str, str | None]) -> Result:
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


def keyless_env(llm: FakeLLMServer, tmp_path: Path, model: str = "openai/gpt-4o-mini") -> dict[str, str | None]:
    """A real provider's model with no key anywhere: LiteLLM fails before sending anything."""
    env: dict[str, str | None] = {**cli_env(llm, tmp_path), "LLM_MODEL": model, "LLM_API_KEY": "",
                                  "LLM_API_BASE": "", "OPENAI_API_KEY": None, "LLM_MAX_RETRIES": "0"}
    return env


def predict_args(tmp_path: Path, tasks: Path = TASKS) -> list[str]:
    return ["predict", "--config", str(SENTIMENT_XML), "--tasks", str(tasks), "--out", str(tmp_path / "out.json"),
            "--no-progress"]


def test_predict_names_the_missing_key_and_does_not_advise_a_rerun(llm: FakeLLMServer, tmp_path: Path) -> None:
    result = run(predict_args(tmp_path), keyless_env(llm, tmp_path))
    assert result.exit_code == 1
    assert NO_KEY_MESSAGE in result.output and "Missing credentials" not in result.output
    assert "cause: the model needs an API key that is not set; fix: set LLM_API_KEY" in result.output
    assert f"3 of 3 tasks failed; {NO_RERUN}" in result.output
    assert "run the same command again" not in result.output
    assert llm.calls == 0


def test_predict_asks_for_provider_slash_model(llm: FakeLLMServer, tmp_path: Path) -> None:
    result = run(predict_args(tmp_path), keyless_env(llm, tmp_path, model="gpt-5o"))
    assert result.exit_code == 1
    assert PROVIDER_MESSAGE in result.output and "LLM Provider NOT provided" not in result.output
    assert "cause: LiteLLM knows no provider for the model name" in result.output and NO_RERUN in result.output


def test_predict_advises_a_rerun_for_a_transient_cause_only(llm: FakeLLMServer, tmp_path: Path) -> None:
    llm.set_default(Reply(status=503, error_message="overloaded, try later"))
    result = run(predict_args(tmp_path), {**cli_env(llm, tmp_path), "LLM_MAX_RETRIES": "0"})
    assert result.exit_code == 1
    assert "cause: the model server kept failing or timing out" in result.output
    assert "3 of 3 tasks failed; run the same command again to retry them" in result.output


def test_doctor_words_provider_failures_as_serve_does(llm: FakeLLMServer, tmp_path: Path) -> None:
    missing = run(["doctor"], keyless_env(llm, tmp_path))
    assert missing.exit_code == 1
    assert f"[FAIL] model reachable: openai/gpt-4o-mini: {NO_KEY_MESSAGE}" in missing.output
    assert "fix: set LLM_API_KEY (or the variable the message names)" in missing.output
    unroutable = run(["doctor"], keyless_env(llm, tmp_path, model="gpt-5o"))
    assert f"[FAIL] model reachable: gpt-5o: {PROVIDER_MESSAGE}" in unroutable.output
    assert "fix: write LLM_MODEL as provider/model" in unroutable.output


def test_plan_with_every_sample_call_failing_fails(llm: FakeLLMServer, tmp_path: Path) -> None:
    args = ["plan", "--config", str(SENTIMENT_XML), "--tasks", str(TASKS), "--sample", "3"]
    result = run(args, keyless_env(llm, tmp_path))
    assert result.exit_code == 1
    assert "sample run FAILED: all 3 sample tasks failed, so nothing was measured" in result.output
    assert f"3 x {NO_KEY_MESSAGE}" in result.output and "accuracy 0" not in result.output
    assert "answers are cached" not in result.output


def test_plan_with_some_sample_tasks_failing_says_so_and_exits_1(llm: FakeLLMServer, tmp_path: Path) -> None:
    llm.set_default(Reply(json={"sentiment": "Positive"}))
    llm.add_rule("[t103]", Reply(status=400, error_message="this request is refused"))
    args = ["plan", "--config", str(SENTIMENT_XML), "--tasks", str(TASKS), "--sample", "3"]
    result = run(args, cli_env(llm, tmp_path))
    assert result.exit_code == 1
    assert "sample run: 1 of 3 tasks FAILED" in result.output and "this request is refused" in result.output
    assert json.loads(run([*args, "--json"], cli_env(llm, tmp_path)).output)["sample"]["failed"] == 1


def test_eval_refuses_a_config_whose_controls_match_no_annotation(llm: FakeLLMServer, tmp_path: Path) -> None:
    args = ["eval", "--config", str(OFFLINE / "ner.xml"), "--tasks", str(OFFLINE / "annotated_sentiment.json"),
            "--min-accuracy", "0.9"]
    result = run(args, cli_env(llm, tmp_path))
    assert result.exit_code == 2
    assert f"no control of {OFFLINE / 'ner.xml'} (" in result.output
    assert "(they use: sentiment)" in result.output and "from_name" in result.output
    assert llm.calls == 0  # refused before paying for anything


def test_a_task_file_that_is_not_json_names_the_accepted_formats(llm: FakeLLMServer, tmp_path: Path) -> None:
    csv = tmp_path / "tasks.csv"
    csv.write_text("text\nI love it\n")
    result = run(predict_args(tmp_path, csv), cli_env(llm, tmp_path))
    assert result.exit_code == 2
    assert f"{csv} line 1: not JSON (Expecting value, column 1); accepted: a JSON list of tasks" in result.output
    assert "JSONL (.jsonl, one task per line); CSV and TSV are not read" in result.output


def test_serve_on_a_taken_port_names_the_port_setting(llm: FakeLLMServer, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(["serve"], {**cli_env(llm, tmp_path), "HOST": "127.0.0.1", "PORT": str(port)})
    assert result.exit_code == 2
    assert f"port {port} on 127.0.0.1 is in use by another program: stop that program, or set PORT to a free " \
           f"port (e.g. PORT={port + 1} llm-backend serve, or --port {port + 1})" in result.output


def test_the_demo_model_costs_0_and_makes_no_model_call(llm: FakeLLMServer, tmp_path: Path) -> None:
    env = {**cli_env(llm, tmp_path), "LLM_MODEL": "demo"}
    plan = run(["plan", "--config", str(SENTIMENT_XML), "--tasks", str(TASKS)], env)
    assert plan.exit_code == 0, plan.output
    assert "demo (price: the demo model calls nothing)" in plan.output and "0 calls" in plan.output
    assert "cost $0; through the batch API (--batch-api, answers within 24 h) $0" in plan.output
    assert "time 0 s (set by the demo model answers in this process" in plan.output
    assert "unknown" not in plan.output
    predict = run(predict_args(tmp_path), env)
    assert predict.exit_code == 0, predict.output
    assert "LLM calls 0 (retries 0, repairs 0), tokens 0 prompt + 0 completion, cost $0\n" in predict.output
    assert llm.calls == 0


def test_prompts_init_previews_an_example_sentence(llm: FakeLLMServer, tmp_path: Path) -> None:
    result = run(["prompts", "init", "--config", str(SENTIMENT_XML)], cli_env(llm, tmp_path))
    assert result.exit_code == 0, result.output
    assert "--- the prompt for an example task" in result.output
    # The text the prompt shows is a sentence, not the field's name as a placeholder.
    assert "<text>\nThe new phone from Acme arrived in Berlin on Monday" in result.output
    assert "<text>\n<text>" not in result.output


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_the_worked_demo_predicts_every_example_task_as_the_readme_shows(tmp_path: Path, llm: FakeLLMServer) -> None:
    readme = (EXAMPLES.parent / "README.md").read_text()
    env = {**cli_env(llm, tmp_path), "LLM_MODEL": "demo"}
    outputs = {}
    for name in ("sentiment", "ner"):
        out = tmp_path / f"{name}_out.json"
        result = run(["predict", "--config", str(EXAMPLES / f"{name}.xml"), "--tasks",
                      str(EXAMPLES / f"{name}_tasks.json"), "--out", str(out), "--no-progress"], env)
        assert result.exit_code == 0, result.output
        assert f"wrote {out}: 3 tasks, 3 with a prediction" in result.output and "cost $0" in result.output
        outputs[name] = json.loads(out.read_text())
    texts = [task["data"]["text"] for tasks in outputs.values() for task in tasks]
    assert any("东" in text or "这" in text for text in texts) and any("東京" in text for text in texts)
    assert any("👩‍💻" in text for text in texts) and any("😀" in text for text in texts)
    spans = {}
    for task in outputs["ner"]:
        for region in task["predictions"][0]["result"]:
            value = region["value"]
            assert task["data"]["text"][value["start"]:value["end"]] == value["text"]
            spans[value["text"]] = (value["start"], value["end"])
    # The offsets the README quotes, as this run gave them.
    assert spans["Sony"] == (4, 8) and spans["Kenichiro Yoshida"] == (11, 28) and spans["Ada Lovelace"][0] == 4
    assert '"start": 4, "end": 8, "text": "Sony"' in readme and '"start": 11, "end": 28, "text": "Kenichiro Yoshida"' \
        in readme
    assert [task["predictions"][0]["result"][0]["value"]["choices"] for task in outputs["sentiment"]] == \
        [["Negative"], ["Negative"], ["Positive"]]  # as the README's curl output shows


@pytest.mark.parametrize(("code", "message", "key", "transient"), [
    ("llm_rejected", NO_KEY_MESSAGE, "missing_key", False),
    ("llm_rejected", "InternalServerError (HTTP 500): OpenAIException - Missing credentials. Please pass an "
                     "`api_key` (set LLM_API_KEY, or the provider's usual variable)", "missing_key", False),
    ("llm_rejected", PROVIDER_MESSAGE, "unknown_provider", False),
    ("llm_rejected", "BadRequestError (HTTP 400): litellm.BadRequestError: LLM Provider NOT provided. Pass in the "
                     "LLM provider you are trying to call. You passed model=gpt-5o", "unknown_provider", False),
    ("llm_rejected", "AuthenticationError (HTTP 401): invalid_api_key", "auth", False),
    ("llm_unavailable", "RateLimitError (HTTP 429): slow down", "rate_limited", True),
    ("llm_unavailable", "ServiceUnavailableError (HTTP 503): overloaded", "overloaded", True),
])
def test_setup_failures_have_their_own_causes_and_only_passing_ones_are_transient(
    code: str, message: str, key: str, transient: bool
) -> None:
    """Stored errors of older versions (LiteLLM's raw wording) land on the same causes as today's."""
    cause = classify_failure(code, message)
    assert (cause.key, cause.transient) == (key, transient)

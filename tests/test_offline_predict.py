"""`llm-backend predict`: task files in, Label Studio import format out, through the test LLM server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from llm_backend.cli.main import main
from llm_backend.core.config import parse_label_config
from llm_backend.offline.runs import predict_tasks
from llm_backend.services import build_services
from llm_backend.settings import Settings
from llm_backend.web.app import create_app
from testkit.llm_server import FakeLLMServer, Reply
from tests.conftest import FIXTURES
from tests.conftest import cli as run_cli

OFFLINE = FIXTURES / "offline"
SENTIMENT_XML = OFFLINE / "sentiment.xml"


def cli_env(llm: FakeLLMServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "LLM_MODEL": "openai/test-model",
        "LLM_API_BASE": llm.base_url,
        "LLM_API_KEY": "sk-test-not-a-secret",
        "LLM_TIMEOUT": "10",
        "LLM_RETRY_MAX_WAIT": "0.2",
        "CACHE_DIR": str(tmp_path / "cache"),
        "PROMPTS_DIR": str(tmp_path / "prompts"),
        "LABEL_STUDIO_URL": "",
        "LABEL_STUDIO_API_KEY": "",
        **extra,
    }


def sentiment_rules(llm: FakeLLMServer, answers: dict[str, str]) -> None:
    for marker, label in answers.items():
        llm.add_rule(marker, Reply(json={"sentiment": label}))


def model_version(make_settings: Callable[..., Settings], xml: Path, project: str | None = None) -> str:
    config = parse_label_config(xml.read_text())
    return build_services(make_settings()).predictor.model_version(config, project)


def choices_of(task: dict[str, Any]) -> list[str] | None:
    predictions = task["predictions"]
    return predictions[0]["result"][0]["value"]["choices"] if predictions else None


def test_predict_writes_import_format_and_a_rerun_costs_no_llm_call(
    llm: FakeLLMServer, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    sentiment_rules(llm, {"[t101]": "Positive", "[t103]": "Negative", "[t105]": "Neutral"})
    out = tmp_path / "out" / "predictions.json"
    env = cli_env(llm, tmp_path)
    args = ["predict", "--config", str(SENTIMENT_XML), "--tasks", str(OFFLINE / "tasks.jsonl"), "--out", str(out)]

    first = run_cli(args, env)
    assert first.exit_code == 0, first.output
    version = model_version(make_settings, SENTIMENT_XML)
    written = json.loads(out.read_text())
    region = {"from_name": "sentiment", "to_name": "text", "type": "choices"}
    assert [{k: v for k, v in task.items() if k != "predictions"} for task in written] == [
        {"data": {"text": "I love this phone [t101]"}},
        {"id": 7, "data": {"text": "Awful support [t103]"}},
        {"data": {"text": "It is a phone [t105]", "source": "web"}},  # a flat object is the task's data
    ]
    for task, label in zip(written, ["Positive", "Negative", "Neutral"], strict=True):
        [prediction] = task["predictions"]
        assert prediction["model_version"] == version
        [result] = prediction["result"]
        assert {k: result[k] for k in region} == region and result["value"] == {"choices": [label]}
    assert llm.calls == 3
    assert f"model_version {version}" in first.output
    assert "3 tasks" in first.output and "0 failed" in first.output

    second = run_cli(args, env)
    assert second.exit_code == 0, second.output
    assert llm.calls == 3  # resumed entirely from the cache
    assert "3 predicted (3 from the cache)" in second.output
    assert json.loads(out.read_text()) == written


def test_offline_predict_and_setup_agree_on_model_version_whatever_the_config_files_whitespace(
    llm: FakeLLMServer, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    """Was: a config file ending in a newline gave another model_version than Label Studio's /setup, which
    sends the config stripped, so Label Studio re-predicted every task `predict` had imported."""
    xml = SENTIMENT_XML.read_text().strip()
    config = tmp_path / "label_config.xml"
    config.write_bytes(("  " + xml.replace("\n", "\r\n  ") + "\r\n\n").encode())
    (tmp_path / "tasks.json").write_text(json.dumps([{"id": 1, "data": {"text": "fine"}}]))
    out = run_cli(["predict", "--config", str(config), "--tasks", str(tmp_path / "tasks.json"), "--out",
                   str(tmp_path / "out.json"), "--project", "5"], cli_env(llm, tmp_path))
    assert out.exit_code == 0, out.output
    offline = next(line.split()[1] for line in out.output.splitlines() if line.startswith("model_version "))
    client = create_app(make_settings()).test_client()
    setup = client.post("/setup", json={"project": "5.1733220000", "schema": xml}).get_json()
    assert setup == {"model_version": offline}
    assert json.loads((tmp_path / "out.json").read_text())[0]["predictions"][0]["model_version"] == offline


def test_predict_reads_a_label_studio_export_and_keeps_task_ids(
    llm: FakeLLMServer, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    llm.set_default(Reply(json={"sentiment": "Neutral"}))
    out = tmp_path / "predictions.json"
    result = run_cli(["predict", "--config", str(SENTIMENT_XML), "--tasks", str(OFFLINE / "annotated_sentiment.json"),
                      "--out", str(out), "--concurrency", "3"], cli_env(llm, tmp_path))
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    assert [task["id"] for task in written] == [101, 102, 103, 104, 105, 106, 107, 108]
    # Annotations and the export's old predictions are not carried into the import file.
    assert all(set(task) == {"id", "data", "predictions"} for task in written)
    assert {prediction["model_version"] for task in written for prediction in task["predictions"]} == {
        model_version(make_settings, SENTIMENT_XML)}
    assert [choices_of(task) for task in written] == [["Neutral"]] * 8
    assert llm.calls == 8


def test_failed_tasks_are_listed_and_only_they_are_retried(llm: FakeLLMServer, tmp_path: Path) -> None:
    sentiment_rules(llm, {"[t101]": "Positive", "[t105]": "Neutral"})
    llm.add_rule("[t103]", Reply(status=400, error_message="This request is not allowed"))
    out = tmp_path / "predictions.json"
    env = cli_env(llm, tmp_path)
    args = ["predict", "--config", str(SENTIMENT_XML), "--tasks", str(OFFLINE / "tasks.jsonl"), "--out", str(out)]

    first = run_cli(args, env)
    assert first.exit_code == 1
    assert [choices_of(task) for task in json.loads(out.read_text())] == [["Positive"], None, ["Neutral"]]
    assert "2 predicted (0 from the cache), 1 failed" in first.output
    assert "This request is not allowed" in first.output and "(tasks 7)" in first.output
    assert "1 of 3 tasks failed; running the command again will not help until the cause above is fixed" in first.stderr
    calls = llm.calls

    llm.reset()
    sentiment_rules(llm, {"[t103]": "Negative"})
    second = run_cli(args, env)
    assert second.exit_code == 0, second.output
    assert llm.calls == 1  # the two answered tasks came from the cache
    assert calls == 3
    assert [choices_of(task) for task in json.loads(out.read_text())] == [["Positive"], ["Negative"], ["Neutral"]]


def test_progress_bar_shows_failures_calls_and_cost(llm: FakeLLMServer, tmp_path: Path) -> None:
    llm.set_default(Reply(json={"sentiment": "Positive"}))
    result = run_cli(["predict", "--config", str(SENTIMENT_XML), "--tasks", str(OFFLINE / "tasks.jsonl"),
                      "--out", str(tmp_path / "p.json"), "--progress"], cli_env(llm, tmp_path))
    assert result.exit_code == 0, result.output
    assert "3/3" in result.stderr and "failed=0 calls=3 cost=" in result.stderr


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("malformed.jsonl", "malformed.jsonl line 3: not JSON (Expecting ',' delimiter, column 18)"),
        ("malformed.json", "malformed.json line 4: not JSON (Expecting ',' delimiter, column 3)"),
        ("not_objects.json", "not_objects.json item 2: expected a task object, got int"),
    ],
)
def test_malformed_task_files_name_the_file_and_position(
    llm: FakeLLMServer, tmp_path: Path, name: str, message: str
) -> None:
    result = run_cli(["predict", "--config", str(SENTIMENT_XML), "--tasks", str(OFFLINE / name),
                      "--out", str(tmp_path / "p.json")], cli_env(llm, tmp_path))
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert llm.calls == 0 and not (tmp_path / "p.json").exists()


def test_empty_and_wrongly_shaped_files(llm: FakeLLMServer, tmp_path: Path) -> None:
    env = cli_env(llm, tmp_path)
    for name, content, message in [
        ("empty.jsonl", "\n\n", "empty.jsonl: holds no tasks"),
        ("object.json", '{"tasks": []}', "object.json: expected a JSON list of tasks, got dict"),
        ("bad_data.json", '[{"data": "text"}]', "bad_data.json item 1: \"data\" must be an object, got str"),
        ("latin1.json", b'[{"text": "caf\xe9"}]', "latin1.json: not UTF-8 text (invalid byte at offset 14)"),
    ]:
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        result = run_cli(["predict", "--config", str(SENTIMENT_XML), "--tasks", str(path),
                          "--out", str(tmp_path / "p.json")], env)
        assert result.exit_code == 2, result.output
        assert message in result.stderr


def test_an_unusable_label_config_is_a_clear_error(llm: FakeLLMServer, tmp_path: Path) -> None:
    result = run_cli(["predict", "--config", str(OFFLINE / "bad_config.xml"), "--tasks", str(OFFLINE / "tasks.jsonl"),
                      "--out", str(tmp_path / "p.json")], cli_env(llm, tmp_path))
    assert result.exit_code == 2
    assert "bad_config.xml: control \"sentiment\" has toName=\"txt\" but no object tag" in result.stderr


def test_an_invalid_setting_names_the_variable(llm: FakeLLMServer, tmp_path: Path) -> None:
    result = run_cli(["predict", "--config", str(SENTIMENT_XML), "--tasks", str(OFFLINE / "tasks.jsonl"),
                      "--out", str(tmp_path / "p.json")], cli_env(llm, tmp_path, LLM_CONCURRENCY="zero"))
    assert result.exit_code == 2
    assert "LLM_CONCURRENCY" in result.stderr


@pytest.mark.parametrize("command", ["predict", "label-project", "eval"])
def test_help_explains_every_option(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    group = main.commands[command]
    for param in group.params:
        if isinstance(param, click.Option) and param.name != "help":
            assert param.help, f"{command} {param.opts} has no help"
            assert param.opts[0] in result.output
    assert len(group.help or "") > 200


def test_predict_tasks_stops_on_ctrl_c_and_resumes_from_the_cache(
    llm: FakeLLMServer, make_settings: Callable[..., Settings]
) -> None:
    llm.set_default(Reply(json={"sentiment": "Negative"}, delay=0.02))
    backend = build_services(make_settings(llm_concurrency=2))
    config = parse_label_config(SENTIMENT_XML.read_text())
    tasks = [{"id": i, "data": {"text": f"review number {i}"}} for i in range(20)]
    seen: list[int] = []

    def interrupt_after_three(index: int, _outcome: object) -> None:
        seen.append(index)
        if len(seen) == 3:
            raise KeyboardInterrupt

    first = predict_tasks(backend, config, tasks, on_outcome=interrupt_after_three)
    assert first.interrupted
    assert len(first.finished) == 3 and sorted(i for i, o in enumerate(first.outcomes) if o) == sorted(seen)
    backend.runner.shutdown()  # let the calls already in flight land in the cache
    assert llm.calls < 20  # the rest was cancelled, not sent

    second = predict_tasks(backend, config, tasks)
    assert not second.interrupted
    assert all(o is not None and o.regions is not None for o in second.outcomes)
    assert second.summary.cached >= 3
    assert llm.calls == 20  # every task was paid for exactly once over both runs

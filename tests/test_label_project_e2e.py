"""`llm-backend label-project` against the real Label Studio 1.23.2, and `predict`'s output imported
into it. The model is the test LLM server, reached by LiteLLM over HTTP."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from llm_backend.cli.main import main
from llm_backend.core.config import parse_label_config
from llm_backend.services import build_services
from llm_backend.settings import Settings
from testkit.llm_server import FakeLLMServer, Reply
from tests.conftest import CHOICES_CONFIG, FIXTURES, REPO, interrupt_after_calls
from tests.test_offline_predict import cli_env

OFFLINE = FIXTURES / "offline"


def run_cli(args: list[str], env: dict[str, str]) -> Result:
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


def ls_env(llm: FakeLLMServer, tmp_path: Path, label_studio: Any) -> dict[str, str]:
    return cli_env(llm, tmp_path, LABEL_STUDIO_URL=label_studio.url, LABEL_STUDIO_API_KEY=label_studio.token)


def by_version(label_studio: Any, project: int) -> dict[str, Counter[int]]:
    """model_version -> {task id: number of predictions of it}."""
    counts: dict[str, Counter[int]] = {}
    for prediction in label_studio.predictions(project):
        counts.setdefault(prediction["model_version"], Counter())[prediction["task"]] += 1
    return counts


@pytest.mark.label_studio
def test_label_project_predicts_each_task_once_across_interruptions_failures_and_reruns(
    label_studio: Any, llm: FakeLLMServer, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    total, failing = 300, [57, 150, 299]  # all after the first 40
    texts = [f"review {i:03d} of the product [lp{i:03d}]" for i in range(total)]
    llm.set_default(Reply(json={"sentiment": "Positive"}))
    for i in failing:
        llm.add_rule(f"[lp{i:03d}]", Reply(status=400, error_message="blocked by the test"))
    project = label_studio.create_project("label-project e2e", CHOICES_CONFIG)
    task_ids = label_studio.import_tasks(project, [{"text": text} for text in texts])
    # Predictions of another model version must not hide a task from this one.
    label_studio.request("POST", f"/api/projects/{project}/import/predictions", json=[
        {"task": task_id, "model_version": "older-model-0", "result": []} for task_id in task_ids[:5]])
    version = build_services(make_settings()).predictor.model_version(parse_label_config(CHOICES_CONFIG), str(project))
    env = ls_env(llm, tmp_path, label_studio)
    command = ["label-project", "--project", str(project)]

    dry = run_cli([*command, "--dry-run"], env)
    assert dry.exit_code == 0, dry.output
    assert f"{total} tasks have no prediction of model_version {version}" in dry.output and llm.calls == 0

    # Stopped early, as an interruption would.
    first = run_cli([*command, "--limit", "40", "--page-size", "25"], env)
    assert first.exit_code == 0, first.output
    assert by_version(label_studio, project)[version] == Counter({task_id: 1 for task_id in task_ids[:40]})
    assert llm.calls == 40 and "imported 40 predictions" in first.output

    # The rest; three tasks fail and stay without a prediction.
    second = run_cli([*command, "--page-size", "64"], env)
    assert second.exit_code == 1, second.output
    assert f"{total - 40} tasks had no prediction of it" in second.output
    assert "3 x " in second.output and "blocked by the test" in second.output
    assert "3 of 260 tasks failed" in second.stderr
    stored = by_version(label_studio, project)[version]
    assert sorted(stored) == [task_id for i, task_id in enumerate(task_ids) if i not in failing]
    assert set(stored.values()) == {1}
    assert llm.calls == total

    # Fixed: only the failed tasks are asked again.
    llm.reset()
    llm.set_default(Reply(json={"sentiment": "Negative"}))
    third = run_cli(command, env)
    assert third.exit_code == 0, third.output
    assert llm.calls == 3 and "imported 3 predictions" in third.output
    fourth = run_cli(command, env)
    assert fourth.exit_code == 0, fourth.output
    assert "0 tasks had no prediction of it" in fourth.output and llm.calls == 3

    versions = by_version(label_studio, project)
    assert versions[version] == Counter({task_id: 1 for task_id in task_ids})  # every task, exactly once
    assert versions["older-model-0"] == Counter({task_id: 1 for task_id in task_ids[:5]})  # left alone
    sample = label_studio.get_task(task_ids[failing[0]])
    [prediction] = [p for p in sample["predictions"] if p["model_version"] == version]
    assert prediction["result"][0]["value"] == {"choices": ["Negative"]}
    assert prediction["result"][0]["from_name"] == "sentiment"


@pytest.mark.label_studio
def test_ctrl_c_imports_what_finished_and_the_next_run_completes_the_rest(
    label_studio: Any, llm: FakeLLMServer, tmp_path: Path
) -> None:
    llm.set_default(Reply(json={"sentiment": "Neutral"}, delay=0.05))
    project = label_studio.create_project("label-project ctrl-c", CHOICES_CONFIG)
    task_ids = label_studio.import_tasks(project, [{"text": f"comment {i}"} for i in range(60)])
    args = [sys.executable, "-m", "llm_backend", "label-project", "--project", str(project), "--page-size", "50",
            "--concurrency", "2"]
    env = {**os.environ, **ls_env(llm, tmp_path, label_studio)}
    returncode, stdout, stderr = interrupt_after_calls(args, env, llm, 8)
    assert returncode == 130, stdout + stderr
    [imported] = re.findall(r"imported (\d+) predictions", stdout)
    assert 0 < int(imported) < 60
    assert sum(by_version(label_studio, project).get(re.findall(r"model_version (\S+);", stdout)[0], {}).values()) \
        == int(imported)

    rerun = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    [version] = by_version(label_studio, project)
    assert by_version(label_studio, project)[version] == Counter({task_id: 1 for task_id in task_ids})
    assert llm.calls == 60  # answers received before the interruption were not paid for twice


@pytest.mark.label_studio
def test_label_project_names_a_missing_project(label_studio: Any, llm: FakeLLMServer, tmp_path: Path) -> None:
    result = run_cli(["label-project", "--project", "987654"], ls_env(llm, tmp_path, label_studio))
    assert result.exit_code == 2
    assert f"Label Studio at {label_studio.url} has no project 987654" in result.stderr


@pytest.mark.label_studio
def test_label_project_rejects_a_wrong_api_key(label_studio: Any, llm: FakeLLMServer, tmp_path: Path) -> None:
    env = cli_env(llm, tmp_path, LABEL_STUDIO_URL=label_studio.url, LABEL_STUDIO_API_KEY="0" * 40)
    result = run_cli(["label-project", "--project", "1"], env)
    assert result.exit_code == 2
    assert "HTTP 401" in result.stderr and "LABEL_STUDIO_API_KEY" in result.stderr


def test_label_project_needs_label_studio_settings(llm: FakeLLMServer, tmp_path: Path) -> None:
    result = run_cli(["label-project", "--project", "1"], cli_env(llm, tmp_path))
    assert result.exit_code == 2
    assert "LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY must be set" in result.stderr


@pytest.mark.label_studio
def test_predict_output_imports_into_label_studio_with_its_predictions(
    label_studio: Any, llm: FakeLLMServer, tmp_path: Path
) -> None:
    llm.set_default(Reply(json={"sentiment": "Neutral"}))
    out = tmp_path / "predictions.json"
    result = run_cli(["predict", "--config", str(OFFLINE / "sentiment.xml"), "--tasks", str(OFFLINE / "tasks.jsonl"),
                      "--out", str(out)], cli_env(llm, tmp_path))
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    project = label_studio.create_project("predict import", (OFFLINE / "sentiment.xml").read_text())
    task_ids = label_studio.import_tasks(project, written)
    stored = {p["task"]: p for p in label_studio.predictions(project)}
    assert sorted(stored) == sorted(task_ids)
    for prediction in stored.values():
        assert prediction["model_version"] == written[0]["predictions"][0]["model_version"]
        assert prediction["result"][0]["value"] == {"choices": ["Neutral"]}

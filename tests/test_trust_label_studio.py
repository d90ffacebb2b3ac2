"""Calibrate and auto-accept against the real Label Studio 1.23.2: 700 tasks, 500 of them annotated by people,
predictions retrieved with one click from the test LLM server's noisy model (log-probabilities), then
`llm-backend calibrate` and `llm-backend accept --apply` twice.

The statistics are tested in-process (test_trust_core.py, 20 simulated projects of 1,500); here the plumbing,
on a project whose statistics are as sure as there: calibration and the bound use only the 500 annotated tasks,
and over 200 simulated projects (testkit.noisy_model.trial) ECE improved in 200 with 700 tasks (200 with 1,500)
and a threshold certified at 0.8 accepted tasks in 191 (188 with 1,500); the 200 unannotated are enough to
accept from."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from llm_backend.cli.main import main
from testkit.app_server import AppServer
from testkit.llm_server import FakeLLMServer
from testkit.noisy_model import NoisyModel, make_items
from tests.conftest import CHOICES_CONFIG
from tests.test_jobs_label_studio import wait_for_predictions, wait_until_model_ready
from tests.test_offline_predict import cli_env

pytestmark = pytest.mark.label_studio

TOTAL, ANNOTATED = 700, 500
LABELS = ["Positive", "Negative", "Neutral"]


def _choice(label: str) -> list[dict[str, Any]]:
    return [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


def _examples(cache_dir: Path, project: int) -> int:
    path = cache_dir / "examples.sqlite3"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT COUNT(*) FROM examples WHERE project = ?", (str(project),)).fetchone()[0])


def _stable(annotation: dict[str, Any]) -> tuple[Any, ...]:
    return annotation["id"], annotation["updated_at"], annotation["result"], annotation["parent_prediction"]


def _annotations(label_studio: Any, project: int) -> dict[int, list[dict[str, Any]]]:
    by_task: dict[int, list[dict[str, Any]]] = {}
    page = 1
    while True:
        answer = label_studio.request("GET", "/api/tasks", params={"project": project, "fields": "all", "page": page,
                                                                   "page_size": 500})
        for task in answer["tasks"]:
            by_task[task["id"]] = task["annotations"]
        if len(by_task) >= int(answer["total"]):
            return by_task
        page += 1


def test_calibrate_then_accept_apply_creates_one_annotation_per_accepted_task_once(
    label_studio: Any, start_app: Callable[..., AppServer], llm: FakeLLMServer, tmp_path: Path
) -> None:
    items = make_items(TOTAL, LABELS, seed=21)
    llm.noisy = NoisyModel("sentiment", LABELS, items, seed=21)
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token,
           "LLM_CONCURRENCY": "16", "PREDICT_DEADLINE": "20"}
    backend = start_app(**env)
    wait_until_model_ready(backend)
    project = label_studio.create_project("trust", CHOICES_CONFIG)
    keys = list(items)
    # The first 500 come with a person's annotation (the truth), imported with the tasks.
    task_ids = label_studio.import_tasks(project, [
        {"data": {"text": f"{key}: what the reader thought of it"},
         **({"annotations": [{"result": _choice(items[key].truth)}]} if index < ANNOTATED else {})}
        for index, key in enumerate(keys)])
    annotated = set(task_ids[:ANNOTATED])
    ml = label_studio.connect_ml_backend(project, backend.url)
    version = label_studio.get_ml_backend(ml)["model_version"]
    # One click on every task; Label Studio serialises them all and validates what comes back, which takes
    # minutes on a loaded 2-core machine: a longer wait than the harness's own.
    label_studio.request("POST", "/api/dm/actions", params={"id": "retrieve_tasks_predictions", "project": project},
                         json={"selectedItems": {"all": False, "included": task_ids}}, timeout=900)
    stored, _ = wait_for_predictions(label_studio, project, version, TOTAL, timeout=300)
    assert len(stored) == TOTAL
    before = _annotations(label_studio, project)
    examples_before = _examples(tmp_path / "cache", project)

    cli = cli_env(llm, tmp_path, LABEL_STUDIO_URL=label_studio.url, LABEL_STUDIO_API_KEY=label_studio.token)
    runner = CliRunner()
    calibrated = runner.invoke(main, ["calibrate", "--project", str(project), "--json"], env=cli)
    assert calibrated.exit_code == 0, calibrated.output
    control = json.loads(calibrated.output)["controls"]["sentiment"]
    assert control["n"] == ANNOTATED and control["n_fit"] + control["n_holdout"] == ANNOTATED
    assert control["ece_after"] < control["ece_before"]
    assert sum(b["count"] for b in control["bins"]) == control["n_holdout"]

    accepted = runner.invoke(main, ["accept", "--project", str(project), "--precision", "0.8", "--apply", "--json"],
                             env=cli)
    assert accepted.exit_code == 0, accepted.output
    answer = json.loads(accepted.output)
    chosen = set(answer["task_ids"])
    assert answer["accepted"] == len(chosen) == answer["created"] > 0
    assert answer["precision_lower_bound"] >= 0.8 and answer["threshold"] is not None
    assert not chosen & annotated

    after = _annotations(label_studio, project)
    predictions = {p["task"]: p["id"] for p in label_studio.predictions(project)}
    for task_id in task_ids:
        if task_id in chosen:
            [made] = after[task_id]
            assert made["parent_prediction"] == predictions[task_id]
        else:
            # Annotated tasks untouched, the others still without one.
            assert [_stable(a) for a in after[task_id]] == [_stable(a) for a in before[task_id]]

    again = runner.invoke(main, ["accept", "--project", str(project), "--precision", "0.8", "--apply", "--json"],
                          env=cli)
    assert json.loads(again.output)["created"] in (0, None)
    assert sum(len(a) for a in _annotations(label_studio, project).values()) == ANNOTATED + len(chosen)

    # Label Studio sent ANNOTATIONS_CREATED for them to the backend's webhook: it saw them and kept none.
    deadline = time.monotonic() + 60
    while backend.log_path.read_text(errors="replace").count("comes from a prediction: not used as an example"
                                                             ) < len(chosen):
        assert time.monotonic() < deadline, backend.log()
        time.sleep(0.5)
    assert _examples(tmp_path / "cache", project) == examples_before

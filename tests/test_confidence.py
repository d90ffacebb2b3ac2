"""Confidence through the real path: the test LLM server's noisy model over HTTP, /predict's scores, the
samples signal (with and without `n`), calibrated scores served (also for cached answers), and the
calibrate + accept procedure on what /predict answered."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from llm_backend.core.config import parse_label_config
from llm_backend.offline.trust import ProjectTask, accept_project, calibrate_project, store_calibration
from llm_backend.settings import Settings
from llm_backend.web.app import create_app
from testkit.llm_server import FakeLLMServer
from testkit.noisy_model import NoisyModel, make_items, overconfident

from .conftest import CHOICES_CONFIG

LABELS = ["Positive", "Negative", "Neutral"]
CONFIG = parse_label_config(CHOICES_CONFIG)


def _tasks(items: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"id": int(key.split("-")[1]), "data": {"text": f"{key}: what the reader thought of it"}} for key in items]


def _predict(settings: Settings, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    client = create_app(settings).test_client()
    response = client.post("/predict", json={"tasks": tasks, "project": "7.1700000000", "label_config": CHOICES_CONFIG})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["results"]


def _human(truth: str) -> list[dict[str, Any]]:
    return [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [truth]}}]


def _project(items: dict[str, Any], tasks: list[dict[str, Any]], results: list[dict[str, Any]], annotated: int
             ) -> list[ProjectTask]:
    """The project as Label Studio would show it: the first `annotated` tasks annotated by a human (the truth)."""
    out = []
    for index, (task, result) in enumerate(zip(tasks, results, strict=True)):
        truth = items[f"item-{task['id']}"].truth
        out.append(ProjectTask(task["id"], task["data"], _human(truth) if index < annotated else None,
                               index < annotated, result))
    return out


def test_logprob_scores_are_served_raw_then_calibrated_without_a_model_call(
        make_settings: Callable[..., Settings], llm: FakeLLMServer) -> None:
    items = make_items(300, LABELS, seed=3)
    llm.noisy = NoisyModel("sentiment", LABELS, items, seed=3)
    settings = make_settings(jobs_enabled=False)
    tasks = _tasks(items)
    raw = _predict(settings, tasks)
    assert llm.calls == 300
    for task, result in zip(tasks, raw, strict=True):
        claimed = overconfident(items[f"item-{task['id']}"].p)
        assert result["score"] == pytest.approx(claimed, abs=1e-4)  # the model's overconfident probability
        assert "raw_score" not in result["result"][0]
    version = raw[0]["model_version"]
    calibration = calibrate_project(CONFIG, _project(items, tasks, raw, 300), version, "logprobs", salt="7")
    services = create_app(settings).extensions["llm_backend"]
    store_calibration(services.projects, "7", calibration)
    # A new process (another worker, a restart) reads it from the project store; every answer is cached.
    served = _predict(settings, tasks)
    assert llm.calls == 300
    for before, after in zip(raw, served, strict=True):
        region = after["result"][0]
        assert region["raw_score"] == before["result"][0]["score"]
        assert region["score"] == calibration.score("sentiment", region["raw_score"]) == after["score"]
    # The calibrated scores are less sure than the model: the mean moves towards the accuracy.
    accuracy = calibration.controls["sentiment"].accuracy
    assert abs(sum(r["score"] for r in served) / 300 - accuracy) < abs(sum(r["score"] for r in raw) / 300 - accuracy)


def test_a_calibration_of_another_model_version_is_not_applied(make_settings: Callable[..., Settings],
                                                               llm: FakeLLMServer) -> None:
    items = make_items(120, LABELS, seed=4)
    llm.noisy = NoisyModel("sentiment", LABELS, items, seed=4)
    settings = make_settings(jobs_enabled=False)
    tasks = _tasks(items)
    raw = _predict(settings, tasks)
    calibration = calibrate_project(CONFIG, _project(items, tasks, raw, 120), "other-version", "logprobs", salt="7")
    store_calibration(create_app(settings).extensions["llm_backend"].projects, "7", calibration)
    again = _predict(settings, tasks)
    assert [r["score"] for r in again] == [r["score"] for r in raw]
    assert all("raw_score" not in r["result"][0] for r in again)


@pytest.mark.parametrize("with_n", [True, False], ids=["n", "separate-calls"])
def test_samples_score_agreement_without_logprobs(make_settings: Callable[..., Settings], llm: FakeLLMServer,
                                                  with_n: bool) -> None:
    items = make_items(24, LABELS, seed=5)
    llm.noisy = NoisyModel("sentiment", LABELS, items, seed=5, logprobs=False, n=with_n)
    settings = make_settings(jobs_enabled=False, confidence="samples", confidence_samples=5, llm_concurrency=4)
    tasks = _tasks(items)
    results = _predict(settings, tasks)
    requests = llm.stats()["requests"]
    sampled = [r for r in requests if r.get("temperature") == 1.0]
    assert all(r.get("logprobs") is None for r in sampled)
    if with_n:
        assert len(sampled) == 24 and all(r.get("n") == 5 for r in sampled)  # one call with n=5 per task
    else:
        assert len(sampled) == 24 * 5  # the server answered one choice: five calls per task in all
    assert len(requests) == 24 + len(sampled)
    for result in results:
        assert result["score"] in {0.0, 0.2, 0.4, 0.6, 0.8, 1.0}
    right = [r["result"][0]["value"]["choices"][0] == items[f"item-{t['id']}"].truth for t, r in zip(tasks, results,
                                                                                                       strict=True)]
    # Agreement tells right answers from wrong ones: right ones score higher on average.
    mean_right = sum(r["score"] for r, ok in zip(results, right, strict=True) if ok) / max(1, sum(right))
    mean_wrong = sum(r["score"] for r, ok in zip(results, right, strict=True) if not ok) / max(1, 24 - sum(right))
    assert 0 < sum(right) < 24 and mean_right > mean_wrong
    calls = llm.calls
    assert _predict(settings, tasks) == results  # the samples are cached with the answer
    assert llm.calls == calls


def test_calibrate_and_accept_on_samples_through_http(make_settings: Callable[..., Settings],
                                                      llm: FakeLLMServer) -> None:
    """One seed of the whole procedure end to end (the 20-seed check runs on the pure core, test_trust_core.py):
    600 tasks, 300 annotated, no log-probabilities. The certified bound holds by construction; the realised
    precision of the accepted tasks is checked against the target less 5 points of sampling slack."""
    items = make_items(600, LABELS, seed=6)
    llm.noisy = NoisyModel("sentiment", LABELS, items, seed=6, logprobs=False)
    settings = make_settings(jobs_enabled=False, confidence="samples", confidence_samples=5, llm_concurrency=16)
    tasks = _tasks(items)
    results = _predict(settings, tasks)
    project = _project(items, tasks, results, 300)
    calibration = calibrate_project(CONFIG, project, results[0]["model_version"], "samples", salt="7")
    control = calibration.controls["sentiment"]
    assert control.n == 300 and control.n_fit + control.n_holdout == 300
    acceptance = accept_project(CONFIG, project, calibration, precision=0.9, confidence=0.9)
    certificate = acceptance.certificate
    assert certificate.threshold is not None and certificate.lower_bound is not None
    assert certificate.lower_bound >= 0.9 and certificate.evidence == control.n_holdout
    assert acceptance.candidates == 300 and acceptance.task_ids
    assert all(task_id >= 300 for task_id in acceptance.task_ids)  # never an annotated task
    by_id = {t["id"]: r for t, r in zip(tasks, results, strict=True)}
    right = [by_id[i]["result"][0]["value"]["choices"][0] == items[f"item-{i}"].truth for i in acceptance.task_ids]
    assert sum(right) / len(right) >= 0.85


def test_status_page_and_doctor_show_the_calibration_and_when_it_is_stale(
        make_settings: Callable[..., Settings], llm: FakeLLMServer) -> None:
    from llm_backend.engine.projects import update
    from llm_backend.offline.trust_doctor import calibration_checks

    items = make_items(160, LABELS, seed=8)
    llm.noisy = NoisyModel("sentiment", LABELS, items, seed=8)
    settings = make_settings(jobs_enabled=False)
    tasks = _tasks(items)
    results = _predict(settings, tasks)
    version = results[0]["model_version"]
    calibration = calibrate_project(CONFIG, _project(items, tasks, results, 160), version, "logprobs", salt="7")
    app = create_app(settings)
    projects = app.extensions["llm_backend"].projects
    store_calibration(projects, "7", calibration)
    control = calibration.controls["sentiment"]

    [project] = app.test_client().get("/jobs").get_json()["projects"]
    shown = project["calibration"]
    assert shown["stale"] is False and shown["controls"]["sentiment"]["ece_after"] == control.ece_after
    page = app.test_client().get("/").get_data(as_text=True)
    assert f'data-metric="ece_after">{control.ece_after:.3f}<' in page and "<svg" in page
    assert "Calibration stale" not in page
    [(name, status, detail, _fix)] = calibration_checks(settings)
    assert (name, status) == ("calibration of project 7", "pass") and f"{control.ece_before:.3f}" in detail

    update(projects, "7", model_version="a-new-version")  # a prompt or model change: /setup records the new version
    page = app.test_client().get("/").get_data(as_text=True)
    assert "Calibration stale" in page and "llm-backend calibrate --project 7" in page
    [(_name, status, detail, fix)] = calibration_checks(settings)
    assert status == "warn" and "raw scores are served" in detail and fix == "llm-backend calibrate --project 7"

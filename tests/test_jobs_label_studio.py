"""One click on a large selection, with the real Label Studio 1.23.2: the tasks /predict cannot finish by
its deadline run on as a durable job and are written back, exactly once each; across a kill -9 and
a restart; shared by two `serve` processes on Redis; and what Label Studio shows when a whole batch
fails. The model is the test LLM server (LiteLLM over HTTP) at 250 ms a call."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from llm_backend.cli.main import main
from llm_backend.engine.jobstore import RedisJobStore, TaskRecord
from llm_backend.engine.writeback import WriteBack
from llm_backend.services import build_services
from testkit.app_server import AppServer
from testkit.llm_server import FakeLLMServer, Reply
from tests.conftest import CHOICES_CONFIG, REPO, BackendProcess, free_port
from tests.test_offline_predict import cli_env

pytestmark = pytest.mark.label_studio

TOTAL = 300
JOB_ENV = {"LLM_CONCURRENCY": "4", "PREDICT_DEADLINE": "5"}


def ls_env(label_studio: Any, **extra: str) -> dict[str, str]:
    return {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token, **JOB_ENV, **extra}


def counts(label_studio: Any, project: int) -> dict[str, Counter[int]]:
    """model_version -> {task id: number of predictions of it}, as Label Studio stores them."""
    found: dict[str, Counter[int]] = {}
    for prediction in label_studio.predictions(project):
        found.setdefault(prediction["model_version"], Counter())[prediction["task"]] += 1
    return found


def wait_for_predictions(label_studio: Any, project: int, version: str, expected: int, timeout: float
                         ) -> tuple[Counter[int], float]:
    """Poll Label Studio until `expected` tasks hold a prediction of `version`; (counts, seconds waited)."""
    started = time.monotonic()
    while True:
        stored = counts(label_studio, project).get(version, Counter())
        if len(stored) >= expected or time.monotonic() - started > timeout:
            return stored, time.monotonic() - started
        time.sleep(0.5)


def project_with_tasks(label_studio: Any, title: str, total: int = TOTAL) -> tuple[int, list[int]]:
    project = label_studio.create_project(title, CHOICES_CONFIG)
    return project, label_studio.import_tasks(project, [{"text": f"review {i:03d} of the thing"} for i in range(total)])


def wait_until_model_ready(backend: BackendProcess | AppServer) -> None:
    """LiteLLM loads in the background after a start (seconds): a backend that has been up a while."""
    deadline = time.monotonic() + 60
    while not requests.get(f"{backend.url}/health", timeout=5).json()["model_ready"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def wait_until_idle(backend: BackendProcess | AppServer, project: int, timeout: float = 60) -> None:
    """Until the project's jobs have no task queued or running (the write-back of what they answered follows)."""
    deadline = time.monotonic() + timeout
    while True:
        status = requests.get(f"{backend.url}/jobs", timeout=5).json()
        jobs = next((p["jobs"] for p in status["projects"] if p["project"] == str(project)), [])
        if all(job["queued"] + job["running"] == 0 for job in jobs):
            return
        assert time.monotonic() < deadline, jobs
        time.sleep(0.2)


def test_one_click_labels_300_tasks_and_a_second_click_adds_none(
    label_studio: Any, start_app: Callable[..., AppServer], llm: FakeLLMServer
) -> None:
    llm.latency = 0.25
    llm.set_default(Reply(json={"sentiment": "Positive"}))
    backend = start_app(**ls_env(label_studio))
    wait_until_model_ready(backend)
    project, task_ids = project_with_tasks(label_studio, "one click 300")
    ml = label_studio.connect_ml_backend(project, backend.url)
    version = label_studio.get_ml_backend(ml)["model_version"]

    clicked = time.monotonic()
    answer = label_studio.retrieve_predictions(project, task_ids)
    assert answer["processed_items"] == TOTAL
    stored, _ = wait_for_predictions(label_studio, project, version, TOTAL, timeout=40 - (time.monotonic() - clicked))
    assert time.monotonic() - clicked <= 40
    assert stored == Counter({task_id: 1 for task_id in task_ids})  # every task, exactly once
    assert llm.calls == TOTAL

    label_studio.retrieve_predictions(project, task_ids)  # Label Studio sends nothing: every task has this version
    # The action is synchronous: anything it sent was answered before it returned, and any task the backend had
    # queued for a later write-back shows on /jobs until it is done. Wait for none (bounded), then count.
    wait_until_idle(backend, project)
    assert counts(label_studio, project) == {version: Counter({task_id: 1 for task_id in task_ids})}
    assert llm.calls == TOTAL

    status = requests.get(f"{backend.url}/jobs", timeout=5).json()
    [job] = next(p for p in status["projects"] if p["project"] == str(project))["jobs"]
    assert (job["total"], job["delivered"], job["failed"], job["queued"], job["running"]) == (TOTAL, TOTAL, 0, 0, 0)
    assert 0 < job["written_back"] < TOTAL  # the first seconds' tasks went back in /predict's answer, the rest by post
    assert job["usage"]["calls"] == TOTAL


def in_flight_at(llm: FakeLLMServer, moment: float, grace: float = 0.1) -> int:
    """Model calls received before `moment` and not answered by then (the answer cannot have been cached)."""
    return sum(1 for r in llm.stats()["requests"] if r["_received_at"] < moment and
               (r["_answered_at"] is None or r["_answered_at"] > moment - grace))


def test_kill_9_mid_job_then_restart_finishes_every_task_once_without_paying_twice(
    label_studio: Any, start_backend: Callable[..., BackendProcess], llm: FakeLLMServer, tmp_path: Path
) -> None:
    llm.latency = 0.25
    llm.set_default(Reply(json={"sentiment": "Negative"}))
    env = ls_env(label_studio, PORT=str(free_port()))
    backend = start_backend(**env)  # a `serve` process: what is tested is its kill -9 and its restart
    project, task_ids = project_with_tasks(label_studio, "kill -9 mid job")
    ml = label_studio.connect_ml_backend(project, backend.url)
    version = label_studio.get_ml_backend(ml)["model_version"]
    label_studio.retrieve_predictions(project, task_ids)
    stored, _ = wait_for_predictions(label_studio, project, version, 100, timeout=60)
    assert 100 <= len(stored) < TOTAL
    os.killpg(backend.process.pid, signal.SIGKILL)  # the whole process group: gunicorn and its worker
    killed = time.time()
    backend.process.wait(timeout=10)
    in_flight = in_flight_at(llm, killed)
    calls_at_kill = llm.calls
    assert calls_at_kill < TOTAL

    restarted = start_backend(**env)  # the same port, CACHE_DIR and Label Studio: `llm-backend serve` again
    assert restarted.url == backend.url
    stored, _ = wait_for_predictions(label_studio, project, version, TOTAL, timeout=120)
    assert stored == Counter({task_id: 1 for task_id in task_ids}), restarted.log()
    assert counts(label_studio, project).keys() == {version}
    assert llm.calls <= TOTAL + in_flight, (llm.calls, in_flight)
    assert "job recovery" in restarted.log()


@pytest.mark.redis
def test_two_serve_processes_on_redis_share_the_job(
    label_studio: Any, start_backend: Callable[..., BackendProcess], llm: FakeLLMServer, redis_url: str
) -> None:
    llm.latency = 0.25
    llm.set_default(Reply(json={"sentiment": "Neutral"}))
    env = ls_env(label_studio, CACHE_URL=redis_url)
    first, second = start_backend(**env), start_backend(**env)  # two `serve` processes: their consumers differ
    project, task_ids = project_with_tasks(label_studio, "two replicas on redis")
    ml = label_studio.connect_ml_backend(project, first.url)  # Label Studio only knows one of them
    version = label_studio.get_ml_backend(ml)["model_version"]
    label_studio.retrieve_predictions(project, task_ids)
    stored, _ = wait_for_predictions(label_studio, project, version, TOTAL, timeout=60)
    assert stored == Counter({task_id: 1 for task_id in task_ids})
    assert llm.calls == TOTAL

    records = RedisJobStore(redis_url).records(f"{project}:{version}")
    by_consumer = Counter(record.ran_by for record in records)
    pids = {str(p) for p in (_worker_pid(first), _worker_pid(second))}
    assert {consumer.split("-")[-2] for consumer in by_consumer} == pids  # both did calls
    assert sum(by_consumer.values()) == TOTAL and min(by_consumer.values()) >= 20
    # Both status pages read the one ledger (the last batch is marked posted just after Label Studio stored it).
    for backend in (first, second):
        deadline = time.monotonic() + 10
        while True:
            [job] = next(p for p in requests.get(f"{backend.url}/jobs", timeout=5).json()["projects"]
                         if p["project"] == str(project))["jobs"]
            if job["delivered"] == TOTAL or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert (job["total"], job["delivered"], job["failed"]) == (TOTAL, TOTAL, 0)


def _worker_pid(backend: BackendProcess) -> int:
    """The pid of the gunicorn worker (the master's only child)."""
    children = Path(f"/proc/{backend.process.pid}/task/{backend.process.pid}/children").read_text().split()
    assert len(children) == 1
    return int(children[0])


@pytest.mark.parametrize("case", ["unreachable-model-502", "too-many-tasks-400"])
def test_what_label_studio_shows_when_predict_fails_as_a_whole(
    label_studio: Any, start_app: Callable[..., AppServer], llm: FakeLLMServer, case: str
) -> None:
    """Label Studio 1.23.2 answers the Data Manager action with "Retrieved N predictions" whatever /predict
    answered (a 502 with its reason, a 400): it logs the error, stores nothing and keeps the model connected.
    So the reason is in the backend's log (one ERROR with the fix) and on its status page. (A failing /setup would
    mark the model "Error" in Label Studio's settings, but it also stops every prediction of the project until
    /setup succeeds again, so the backend does not use it for a failure it cannot see the end of.)"""
    if case.startswith("unreachable"):
        env = {"LLM_API_BASE": f"http://127.0.0.1:{free_port()}/v1", "LLM_MAX_RETRIES": "1",
               "LLM_RETRY_MAX_WAIT": "0.2"}
    else:
        env = {"MAX_TASKS_PER_REQUEST": "2"}
    backend = start_app(**env)
    project, task_ids = project_with_tasks(label_studio, f"whole batch fails {case}", total=5)
    ml = label_studio.connect_ml_backend(project, backend.url)
    answer = label_studio.retrieve_predictions(project, task_ids)

    assert answer == {"processed_items": 5, "detail": "Retrieved 5 predictions"}  # LS's own text, not ours
    assert label_studio.predictions(project) == []
    assert label_studio.get_ml_backend(ml)["state"] == "CO"  # still "Connected"
    direct = requests.post(f"{backend.url}/predict", json={
        "project": f"{project}.1", "label_config": CHOICES_CONFIG,
        "tasks": [{"id": task_id, "data": {"text": "x"}} for task_id in task_ids]}, timeout=60)
    if case.startswith("unreachable"):
        assert direct.status_code == 502
        error = direct.json()["error"]
        assert error["code"] == "model_unreachable"
        assert error["message"].startswith("the model server cannot be reached: all 5 tasks failed")
        assert "check LLM_API_BASE" in error["message"]
        assert "ERROR llm_backend.engine.pipeline" in backend.log()
        status = requests.get(f"{backend.url}/jobs", timeout=5).json()
        titles = [problem["title"] for problem in status["problems"]]
        assert "the model server cannot be reached" in titles  # after the start-up check's own finding
        assert titles[0] == "start-up check failed (api_base)"
        [job] = next(p for p in status["projects"] if p["project"] == str(project))["jobs"]
        assert job["errors"][0]["cause"] == "unreachable" and job["errors"][0]["tasks"] == 5
        assert llm.calls == 0
    else:
        assert direct.status_code == 400
        assert "over MAX_TASKS_PER_REQUEST=2" in direct.json()["error"]["message"]
    # What Label Studio keeps of it: its own log line, with the status but not our message.
    [logged] = [line for line in label_studio.log_tail(400).splitlines() if f"{backend.url}/predict" in line]
    expected = "502 Server Error: BAD GATEWAY" if case.startswith("unreachable") else "400 Client Error: BAD REQUEST"
    assert f"[ERROR] Error occurred: {expected} for url: {backend.url}/predict" in logged


def test_without_label_studio_credentials_the_next_click_collects_the_finished_job(
    label_studio: Any, start_app: Callable[..., AppServer], llm: FakeLLMServer
) -> None:
    llm.latency = 0.25
    llm.set_default(Reply(json={"sentiment": "Positive"}))
    backend = start_app(LLM_CONCURRENCY="2", PREDICT_DEADLINE="3")  # no LABEL_STUDIO_URL / _API_KEY
    wait_until_model_ready(backend)
    project, task_ids = project_with_tasks(label_studio, "no write-back", total=40)
    ml = label_studio.connect_ml_backend(project, backend.url)
    version = label_studio.get_ml_backend(ml)["model_version"]
    label_studio.retrieve_predictions(project, task_ids)
    first = counts(label_studio, project)[version]
    assert 0 < len(first) < 40
    assert "write-back is off" in backend.log() or "not written back" in backend.log()

    deadline = time.monotonic() + 60
    while True:  # the rest finishes in the background, into the ledger and the cache
        status = requests.get(f"{backend.url}/jobs", timeout=5).json()
        [job] = next(p for p in status["projects"] if p["project"] == str(project))["jobs"]
        if job["queued"] + job["running"] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert (job["done"], job["delivered"], job["written_back"]) == (40, len(first), 0)
    assert status["backend"]["writeback"] is False and "LABEL_STUDIO_URL" in status["backend"]["writeback_note"]
    assert "Write-back to Label Studio: off" in requests.get(f"{backend.url}/", timeout=5).text

    label_studio.retrieve_predictions(project, task_ids)  # the second click collects them, no model call
    assert counts(label_studio, project) == {version: Counter({task_id: 1 for task_id in task_ids})}
    assert llm.calls == 40


def test_a_crash_between_import_and_ledger_update_posts_only_what_label_studio_lacks(
    label_studio: Any, llm: FakeLLMServer, make_settings: Callable[..., Any]
) -> None:
    """The honest crash window: a consumer imported a batch and died before marking it posted. Whoever adopts the
    batch asks Label Studio first and posts only the tasks still missing."""
    project, task_ids = project_with_tasks(label_studio, "crash mid post", total=10)
    services = build_services(make_settings(label_studio_url=label_studio.url,
                                            label_studio_api_key=label_studio.token))
    job = services.jobs.job(str(project), "crash-v1", CHOICES_CONFIG, None, {})
    item = {"result": [{"id": "r1", "from_name": "sentiment", "to_name": "text", "type": "choices",
                        "value": {"choices": ["Positive"]}}], "model_version": "crash-v1"}
    for task_id in task_ids:
        record = TaskRecord(task_id, "posting", owner="dead-host-9-abc", item=item, status="ok", finished=time.time())
        assert services.job_store.add_tasks(job.id, [(record, {"id": task_id, "data": {}})]) == {task_id}
    # The import that went through just before the crash: the first four.
    label_studio.request("POST", f"/api/projects/{project}/import/predictions",
                         json=[{"task": task_id, **item} for task_id in task_ids[:4]])
    writeback = WriteBack(services.job_store, services.label_studio, "me-1-abc", lambda: {"me-1-abc"})
    assert writeback.run_once() == 6
    assert writeback.run_once() == 0
    assert counts(label_studio, project) == {"crash-v1": Counter({task_id: 1 for task_id in task_ids})}
    states = Counter(record.state for record in services.job_store.records(job.id))
    assert states == Counter({"posted": 6, "present": 4})


def test_label_project_no_wait_queues_and_the_worker_command_works_the_job(
    label_studio: Any, llm: FakeLLMServer, tmp_path: Path
) -> None:
    llm.set_default(Reply(json={"sentiment": "Neutral"}))
    project, task_ids = project_with_tasks(label_studio, "no-wait and worker", total=30)
    env = cli_env(llm, tmp_path, LABEL_STUDIO_URL=label_studio.url, LABEL_STUDIO_API_KEY=label_studio.token)
    queued = CliRunner().invoke(main, ["label-project", "--project", str(project), "--no-wait"], env=env,
                                catch_exceptions=False)
    assert queued.exit_code == 0, queued.output
    assert "queued 30 tasks in job" in queued.output and llm.calls == 0

    worker = subprocess.Popen([sys.executable, "-m", "llm_backend", "worker"], env={**os.environ, **env}, cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        [version] = [line.split()[3].rstrip(";") for line in queued.output.splitlines() if "model_version" in line]
        # The bound covers the worker's start (LiteLLM's import: half a minute on a busy 2-core machine, where 60 s
        # ran out with 8 of 30 stored), the 30 answers and the write-back's imports, one a second.
        stored, _ = wait_for_predictions(label_studio, project, version, 30, timeout=180)
        assert stored == Counter({task_id: 1 for task_id in task_ids})
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, output
    assert llm.calls == 30

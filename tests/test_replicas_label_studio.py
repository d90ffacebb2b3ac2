"""Two `serve` replicas on one Redis, as an operator past one machine runs them: the same environment, each
started from its own directory (its own ./prompts and CACHE_DIR, as on two hosts), Label Studio (the real
1.23.2) connected to the first. The first is killed with `kill -9` while the job of a 300-task click runs and
does not come back; the second finishes every task, exactly once.

Who may run a task is decided by what shapes its answer (template contents, model, parameters), never by a
path: identical templates in two directories are the same settings."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from llm_backend.engine.jobstore import DELIVERED, RedisJobStore
from testkit.llm_server import FakeLLMServer, Reply
from tests.conftest import BackendProcess
from tests.test_jobs_label_studio import (
    counts,
    ls_env,
    project_with_tasks,
    wait_for_predictions,
    wait_until_model_ready,
)

pytestmark = [pytest.mark.label_studio, pytest.mark.redis]

TOTAL = 300


@pytest.fixture
def replicas(tmp_path: Path, label_studio: Any, redis_url: str, start_backend: Callable[..., BackendProcess]
             ) -> list[BackendProcess]:
    """Two `llm-backend serve` processes (processes, not `start_app`: one is killed with kill -9, and each has its own
    working directory), each started in its own directory with the default PROMPTS_DIR (./prompts, an absolute path
    that differs between them) holding the same edited system prompt (a team's shared edit, copied to each host)."""
    started: list[BackendProcess] = []
    shipped = (Path(__file__).resolve().parent.parent / "llm_backend" / "prompts" / "system.j2").read_text()
    for host in ("host-a", "host-b"):
        home = tmp_path / host
        (home / "prompts").mkdir(parents=True)
        (home / "prompts" / "system.j2").write_text(shipped + "\nAnswer carefully.\n")
        # PROMPTS_DIR the default, ./prompts: resolved in each replica's own directory. Started after Redis (this
        # fixture's arguments in that order), so stopped before it.
        started.append(start_backend(cwd=home, CACHE_DIR=str(home / "cache"), PROMPTS_DIR="prompts",
                                     SECOND_CLICK_GRACE="30",  # the default, as an operator runs them
                                     **ls_env(label_studio, CACHE_URL=redis_url)))
    return started


def test_the_other_replica_finishes_every_task_once_after_the_one_label_studio_talks_to_is_killed(
    replicas: list[BackendProcess], label_studio: Any, llm: FakeLLMServer, redis_url: str
) -> None:
    first, second = replicas
    for backend in replicas:
        wait_until_model_ready(backend)  # LiteLLM loaded: the click's model calls start at once
    llm.latency = 0.25
    llm.set_default(Reply(json={"sentiment": "Positive"}))
    project, task_ids = project_with_tasks(label_studio, "replicas, one killed")
    ml = label_studio.connect_ml_backend(project, first.url)  # Label Studio only knows the first
    version = label_studio.get_ml_backend(ml)["model_version"]
    # The second serves the same model_version from its own directory: the same templates, another path.
    assert requests.post(f"{second.url}/setup", json={"project": str(project), "schema": label_studio.get_project(
        project)["label_config"]}, timeout=10).json()["model_version"] == version

    click = threading.Thread(target=lambda: _click(label_studio, project, task_ids), daemon=True)
    click.start()
    deadline = time.monotonic() + 60
    while llm.calls < 16:  # about a second after the click: the job is under way, the first's /predict waits
        assert time.monotonic() < deadline, first.log()
        time.sleep(0.05)
    os.killpg(first.process.pid, signal.SIGKILL)  # gunicorn and its worker; it does not come back
    first.process.wait(timeout=10)
    click.join(timeout=120)

    stored, _ = wait_for_predictions(label_studio, project, version, TOTAL, timeout=150)
    assert stored == Counter({task_id: 1 for task_id in task_ids}), second.log()
    assert counts(label_studio, project).keys() == {version}
    # The ledger says so too, once the last batch is marked posted (just after Label Studio stored it).
    ledger, deadline = RedisJobStore(redis_url), time.monotonic() + 15
    while {record.state for record in ledger.records(f"{project}:{version}")} - DELIVERED:
        assert time.monotonic() < deadline, second.log()
        time.sleep(0.1)
    assert len(ledger.records(f"{project}:{version}")) == TOTAL
    assert "other settings" not in second.log()


def _click(label_studio: Any, project: int, task_ids: list[int]) -> None:
    """Label Studio's /predict to the first replica: it fails when the replica is killed under it."""
    with contextlib.suppress(Exception):  # the replica died mid-request; what Label Studio says is not the point
        label_studio.retrieve_predictions(project, task_ids)

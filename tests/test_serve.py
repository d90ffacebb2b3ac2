"""`llm-backend serve`: real gunicorn, real sockets, the startup contract Label Studio relies on."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from testkit.import_gate import ImportGate
from testkit.llm_server import FakeLLMServer, Reply
from tests.conftest import CHOICES_CONFIG, REPO, BackendProcess


def test_health_and_setup_answer_while_litellm_is_still_loading(
    start_backend: Callable[..., BackendProcess], tmp_path: Path
) -> None:
    """Label Studio allows 1 s for /health and 3 s for /setup, and `import litellm` takes seconds: both must answer
    without it. Shown by cause, not by a stopwatch: LiteLLM's import waits on a gate this test holds closed, so
    each answer that comes meanwhile came without it (the generous timeouts only bound a loaded machine)."""
    backend = start_backend(**ImportGate(tmp_path / "gate", "litellm").env())
    health = requests.get(f"{backend.url}/health", timeout=30)
    assert health.status_code == 200 and health.json()["status"] == "UP"
    assert health.json()["model_ready"] is False
    setup = requests.post(f"{backend.url}/setup", json={"schema": CHOICES_CONFIG, "project": "1.1"}, timeout=30)
    assert setup.status_code == 200 and setup.json()["model_version"]
    # Still held after both answers: neither waited for it (the import goes on once the gate opens, or the gate's
    # bound passes; this test stops the backend first, which saves importing LiteLLM at all).
    assert requests.get(f"{backend.url}/health", timeout=30).json()["model_ready"] is False
    assert "LiteLLM" not in backend.log()
    assert backend.stop() == 0


def test_gunicorn_workers_auto_and_another_process_share_one_cache(
    start_backend: Callable[..., BackendProcess], make_client: Callable[..., Any], llm: FakeLLMServer, tmp_path: Path
) -> None:
    """The default WORKERS=auto: one worker per 32 of LLM_CONCURRENCY, at most one per core (two on a machine of two
    cores or more, where the tests run), forked from the master that built the stores. With this test's own app,
    three processes on one CACHE_DIR: each answers /predict, and one answer per task is paid for, whichever is asked."""
    from llm_backend.settings import cpu_cores

    llm.set_default(Reply(json={"sentiment": "Positive"}))
    cache_dir = tmp_path / "shared-cache"
    served = start_backend(CACHE_DIR=str(cache_dir), WORKERS="auto", LLM_CONCURRENCY="64")
    here = make_client(cache_dir=cache_dir)
    body = {"label_config": CHOICES_CONFIG, "project": "5.1",
            "tasks": [{"id": i, "data": {"text": f"lovely day {i}"}} for i in range(70)]}
    response = requests.post(f"{served.url}/predict", json=body, timeout=60)
    assert response.status_code == 200
    first = response.json()
    assert [r["result"][0]["value"]["choices"] for r in first["results"]] == [["Positive"]] * 70
    assert llm.calls == 70
    assert here.post("/predict", json=body).get_json() == first
    for _ in range(4):  # new connections, spread over the served workers
        assert requests.post(f"{served.url}/predict", json=body, timeout=60).json() == first
    assert llm.calls == 70
    deadline = time.monotonic() + 60
    while served.log_path.read_text(errors="replace").count("Booting worker") < min(2, cpu_cores()):
        assert time.monotonic() < deadline, served.log()
        time.sleep(0.1)


def test_sigterm_lets_in_flight_requests_finish(start_backend: Callable[..., BackendProcess],
                                                llm: FakeLLMServer, tmp_path: Path) -> None:
    import threading

    llm.add_rule("slow", Reply(json={"sentiment": "Neutral"}, delay=2))
    backend = start_backend()
    answer: dict[str, Any] = {}

    def call() -> None:
        body = {"label_config": CHOICES_CONFIG, "tasks": [{"id": 1, "data": {"text": "slow"}}]}
        answer["response"] = requests.post(f"{backend.url}/predict", json=body, timeout=30)

    thread = threading.Thread(target=call)
    thread.start()
    deadline = time.monotonic() + 20
    while llm.calls == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert backend.stop(15) == 0
    thread.join()
    assert answer["response"].json()["results"][0]["result"][0]["value"] == {"choices": ["Neutral"]}
    # The answer reached the cache whole: the file is sound and a new server answers without the model.
    import sqlite3

    database = sqlite3.connect(str(tmp_path / "cache" / "responses.sqlite3"))
    assert database.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert database.execute("SELECT COUNT(*) FROM responses").fetchone() == (1,)
    calls = llm.calls
    again = start_backend()
    body = {"label_config": CHOICES_CONFIG, "tasks": [{"id": 1, "data": {"text": "slow"}}]}
    assert "result" in requests.post(f"{again.url}/predict", json=body, timeout=30).json()["results"][0]
    assert llm.calls == calls


def test_invalid_setting_stops_the_start_naming_the_variable() -> None:
    env = {**os.environ, "LLM_TIMEOUT": "-3", "PORT": "99999"}
    out = subprocess.run([sys.executable, "-m", "llm_backend", "serve"], env=env, capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert out.returncode == 2
    assert "LLM_TIMEOUT" in out.stderr and "PORT" in out.stderr


def test_secret_settings_are_not_echoed() -> None:
    env = {**os.environ, "LLM_API_KEY": "sk-live-very-secret", "LLM_TIMEOUT": "abc"}
    out = subprocess.run([sys.executable, "-m", "llm_backend", "serve"], env=env, capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert out.returncode == 2 and "sk-live-very-secret" not in out.stderr + out.stdout

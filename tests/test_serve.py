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

from llm_backend.models.client import litellm_version
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


def test_a_serves_workers_share_the_provider_limit_and_one_cache_and_finish_in_flight_requests_on_sigterm(
    start_backend: Callable[..., BackendProcess], make_client: Callable[..., Any], llm: FakeLLMServer, tmp_path: Path
) -> None:
    """Two gunicorn workers, forked from the master that built the stores and the LLM_CONCURRENCY slots, answering in
    the request (no background jobs), several /predict at once so that both run tasks: the provider still sees at
    most LLM_CONCURRENCY calls from the whole `serve`. With this test's own app, three processes on one CACHE_DIR:
    one answer per task is paid for, whichever process is asked. Then SIGTERM with a request in flight: it is
    answered, and its answer reaches the cache whole. (One `serve` for all three: each costs two LiteLLM imports.)"""
    import sqlite3
    import threading
    from concurrent.futures import ThreadPoolExecutor

    # The first answers wait until three calls are in flight: the limit is reached for sure, and never passed.
    llm.add_rule("slow", Reply(json={"sentiment": "Neutral"}, delay=0.1, gate=3))
    cache_dir = tmp_path / "shared-cache"
    backend = start_backend(CACHE_DIR=str(cache_dir), WORKERS="2", LLM_CONCURRENCY="3", JOBS_ENABLED="false",
                            THREADS="8")

    def body(batch: int) -> dict[str, Any]:
        return {"label_config": CHOICES_CONFIG, "project": "5.1",
                "tasks": [{"id": batch * 100 + i, "data": {"text": f"slow {batch} {i}"}} for i in range(6)]}

    def predict(batch: int) -> dict[str, Any]:
        with requests.Session() as session:  # a new connection each: gunicorn spreads them over the workers
            answer: dict[str, Any] = session.post(f"{backend.url}/predict", json=body(batch), timeout=60).json()
        return answer

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(predict, range(6)))
    assert [sum(r["result"][0]["value"] == {"choices": ["Neutral"]} for r in a["results"]) for a in answers] == [6] * 6
    assert llm.calls == 36
    assert llm.max_in_flight_seen <= 3  # the bound under test; the gate makes the limit itself reached
    # Each worker imported LiteLLM and said which (the version from the installed distribution; was "LiteLLM ?").
    loaded = re.findall(r"INFO llm_backend.models.loader \[\d+\]: LiteLLM (\S+) loaded", backend.log())
    assert loaded == [litellm_version()] * 2 and re.fullmatch(r"\d+\.\d+\.\d+.*", litellm_version())

    here = make_client(cache_dir=cache_dir)
    assert [here.post("/predict", json=body(batch)).get_json() for batch in range(6)] == answers
    for batch in range(6):  # new connections, spread over the served workers
        assert predict(batch) == answers[batch]
    assert llm.calls == 36

    # SIGTERM while a request waits on the model (2 s): gunicorn lets it finish before the workers exit.
    llm.add_rule("linger", Reply(json={"sentiment": "Positive"}, delay=2))
    lingering = {"label_config": CHOICES_CONFIG, "tasks": [{"id": 1, "data": {"text": "linger"}}]}
    answer: dict[str, Any] = {}

    def call() -> None:
        answer["response"] = requests.post(f"{backend.url}/predict", json=lingering, timeout=30)

    thread = threading.Thread(target=call)
    thread.start()
    deadline = time.monotonic() + 20
    while llm.calls == 36 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert llm.calls == 37
    assert backend.stop(15) == 0
    thread.join()
    assert answer["response"].json()["results"][0]["result"][0]["value"] == {"choices": ["Positive"]}
    # The answer reached the cache whole: the file is sound and another process answers without the model.
    database = sqlite3.connect(str(cache_dir / "responses.sqlite3"))
    assert database.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert database.execute("SELECT COUNT(*) FROM responses").fetchone() == (37,)
    database.close()
    assert here.post("/predict", json=lingering).get_json()["results"][0]["result"][0]["value"] == {
        "choices": ["Positive"]}
    assert llm.calls == 37


def test_workers_auto_reaches_gunicorn(make_settings: Callable[..., Any]) -> None:
    """The default WORKERS=auto, resolved (one worker per 32 of LLM_CONCURRENCY, at most one per core: see
    test_settings), is the number of workers gunicorn is given."""
    from llm_backend.settings import cpu_cores
    from llm_backend.web.server import gunicorn_options

    assert gunicorn_options(make_settings(workers="auto", llm_concurrency=64))["workers"] == min(2, cpu_cores())
    assert gunicorn_options(make_settings(workers="auto", llm_concurrency=8))["workers"] == 1


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

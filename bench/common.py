"""What the benchmark scripts share: the repository on sys.path, the config they label, a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

CONFIG = """<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">
<Choice value="Positive"/><Choice value="Negative"/><Choice value="Neutral"/></Choices></View>"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def time_predict(settings: Any, tasks: int, salt: str) -> tuple[float, float]:
    """Wall seconds and CPU milliseconds per task (this process, every thread: the backend runs in it) of one
    /predict of `tasks` new tasks through an app built from `settings`; all must succeed."""
    from llm_backend.web.app import create_app

    client = create_app(settings).test_client()
    body = {"label_config": CONFIG, "tasks": [{"id": i, "data": {"text": f"{salt} task {i}"}} for i in range(tasks)]}
    started, cpu_started = time.perf_counter(), time.process_time()
    response = client.post("/predict", json=body)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    ok = sum("result" in r for r in response.get_json()["results"])
    if ok != tasks:
        raise SystemExit(f"only {ok}/{tasks} tasks predicted")
    return elapsed, cpu * 1000 / tasks


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: on a shared machine, what every wall-time figure must be read with."""
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


@contextmanager
def llm_server(latency: float, *options: str) -> Iterator[Any]:
    """The test LLM server in a process of its own (its work does not share our GIL) answering after `latency`
    seconds, with further command-line `options`; its LLMServerControl once it answers, stopped on exit."""
    from testkit.llm_server import LLMServerControl

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "testkit.llm_server", "--port", str(port),
                                "--latency", str(latency), *options], cwd=REPO, stdout=subprocess.DEVNULL)
    control = LLMServerControl(f"http://127.0.0.1:{port}")
    try:
        control.wait_ready()
        yield control
    finally:
        control.close()
        process.terminate()
        process.wait()


@contextmanager
def serve(base_url: str, config: str, project: str, **env: str) -> Iterator[tuple[str, list[int]]]:
    """`llm-backend serve` against the LLM server at `base_url`, `env` over the defaults (the shipped templates, a
    fresh CACHE_DIR), with `config` set up for `project`; (its URL, [master pid, worker pids]) once it answers."""
    import requests

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        environment = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "LLM_MODEL": "openai/bench",
                       "LLM_API_BASE": base_url, "LLM_API_KEY": "sk-bench", "CACHE_DIR": str(Path(tmp) / "cache"),
                       "LOG_LEVEL": "WARNING",
                       "PROMPTS_DIR": str(Path(tmp) / "prompts"),  # the shipped templates, not a user's edits
                       **env}
        server = subprocess.Popen([sys.executable, "-m", "llm_backend", "serve"], cwd=REPO, env=environment,
                                  stdout=subprocess.DEVNULL, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if requests.get(f"{url}/health", timeout=1).json().get("model_ready"):
                        break
                except requests.RequestException:
                    pass
                time.sleep(0.1)
            requests.post(f"{url}/setup", json={"schema": config, "project": project}, timeout=10).raise_for_status()
            yield url, [server.pid, *child_pids(server.pid)]
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)


def child_pids(pid: int) -> list[int]:
    """The processes `pid` started (gunicorn's workers of a `serve`)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(child) for child in out.stdout.split()]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

"""Load benchmark: the real gunicorn server under concurrent clients for a fixed time.

Starts the test LLM server (fixed latency) and `llm-backend serve` as separate processes, warms
up, then drives /predict (one unique task per request, so every request reaches the model) from
C client threads for D seconds. Prints requests/s, p50/p99 latency, errors and the worker's RSS
after warm-up and at the end.

    python bench/load.py [--clients 64] [--duration 30] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from common import CONFIG, REPO, child_pids, free_port, llm_server  # the bench folder is on sys.path when a script runs


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _drive(url: str, clients: int, duration: float, counter: itertools.count[int]) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop = time.monotonic() + duration

    def client() -> None:
        nonlocal errors
        session = requests.Session()
        while time.monotonic() < stop:
            body = {"label_config": CONFIG, "tasks": [{"id": 1, "data": {"text": f"review {next(counter)}"}}]}
            started = time.perf_counter()
            try:
                response = session.post(f"{url}/predict", json=body, timeout=60)
                ok = response.status_code == 200 and "result" in response.json()["results"][0]
            except requests.RequestException:
                ok = False
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                errors += not ok

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--warm-up", type=float, default=5.0)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--server-log", type=Path, default=None, help="write the backend's log here")
    args = parser.parse_args()

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp, llm_server(args.latency) as llm:
        env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "LLM_MODEL": "openai/bench",
               "LLM_API_BASE": llm.base_url, "LLM_API_KEY": "sk-bench",
               "WORKERS": "1", "THREADS": str(args.clients), "LLM_CONCURRENCY": str(args.clients), "CACHE_DIR": tmp,
               "PROMPTS_DIR": str(Path(tmp) / "prompts"),  # the shipped templates, not a user's edits
               "LOG_LEVEL": "INFO" if args.server_log else "WARNING", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        log = args.server_log.open("wb") if args.server_log else subprocess.DEVNULL
        server = subprocess.Popen([sys.executable, "-m", "llm_backend", "serve"], cwd=REPO, env=env,
                                  stdout=log, stderr=log)
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    requests.get(f"{url}/health", timeout=1)
                    break
                except requests.RequestException:
                    time.sleep(0.1)
            counter = itertools.count()
            _drive(url, args.clients, args.warm_up, counter)
            [worker] = child_pids(server.pid)
            rss_start = _rss_mb(worker)
            samples: list[float] = []
            sampling = threading.Event()

            def sample() -> None:
                while not sampling.wait(args.duration / 6):
                    samples.append(_rss_mb(worker))

            sampler = threading.Thread(target=sample)
            sampler.start()
            started = time.monotonic()
            latencies, errors = _drive(url, args.clients, args.duration, counter)
            wall = time.monotonic() - started
            sampling.set()
            sampler.join()
            rss_end = _rss_mb(worker)
        finally:
            server.terminate()
            server.wait(timeout=60)

    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    print(f"{args.clients} concurrent clients for {args.duration:.0f} s, provider latency "
          f"{args.latency * 1000:.0f} ms, 1 gunicorn worker x {args.clients} threads")
    print()
    print("| requests | requests/s | p50 (ms) | p99 (ms) | errors | worker RSS after warm-up (MB) | at end (MB) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(f"| {len(latencies)} | {len(latencies) / wall:.1f} | {statistics.median(latencies) * 1000:.0f} | "
          f"{p99 * 1000:.0f} | {errors} | {rss_start:.0f} | {rss_end:.0f} |")
    print()
    print("worker RSS during the run (MB): " + " ".join(f"{value:.0f}" for value in [rss_start, *samples, rss_end]))


if __name__ == "__main__":
    main()

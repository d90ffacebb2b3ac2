"""Batch predict benchmark: N tasks against a provider with fixed latency, ideal ceil(N/C) x latency.

Three parts, each printed as a table:

1. The test LLM server alone, driven by a plain client (C threads, a keep-alive session each): the
   rate it sustains, so the backend's figures below measure the backend and not the test server.
2. Through the real server, as Label Studio calls it: `llm-backend serve` with its default settings
   (gunicorn, WORKERS=auto, cache on, background jobs on) except the model and LLM_CONCURRENCY; one
   /predict of N new tasks with a project and integer ids. Cases: 200 tasks at C=16 against 250 ms
   (median of 5) and 2,000 tasks at C=64 against 200 ms (median of 3). Reports wall time against the
   ideal and the CPU milliseconds per task of all the server's processes, and how the tasks' CPU
   spread over the worker processes, with the load average after each case.
3. In-process (`create_app`, cache off): the same 200 tasks, a re-run from the cache, and
   sequential calls (C=1) for scale.

CPU per task is the user + system time of every process of the backend (gunicorn's master and workers;
in-process: this process, every thread) over the run, divided by the tasks; the test LLM server runs in a
process of its own and is not counted. On a shared 2-core machine wall-time ratios move with the load,
CPU per task much less. `--fast-path off` makes every model call `litellm.acompletion` (LLM_FAST_PATH).

    python bench/batch.py [--repeat 5] [--big-repeat 3] [--skip-sequential] [--skip-big] [--fast-path on|off]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from common import (  # the bench folder is on sys.path when a script runs
    CONFIG,
    llm_server,
    load_average,
    process_cpu_seconds,
    time_predict,
)
from common import serve as serve_backend

from llm_backend.engine.prompts import DEFAULT_PROMPTS_DIR
from llm_backend.settings import Settings


@dataclass(frozen=True)
class Case:
    tasks: int
    concurrency: int
    latency: float
    repeat: int

    @property
    def ideal(self) -> float:
        return math.ceil(self.tasks / self.concurrency) * self.latency

    @property
    def name(self) -> str:
        return f"{self.tasks:,} tasks, C={self.concurrency}, {self.latency * 1000:.0f} ms"


def plain_client(base_url: str, case: Case) -> float:
    """Seconds for `case.tasks` chat completions from `case.concurrency` threads straight at the test server."""
    local = threading.local()

    def call(i: int) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        body = {"model": "bench", "messages": [{"role": "user", "content": f"plain task {i}"}]}
        session.post(f"{base_url}/chat/completions", json=body, timeout=60).raise_for_status()

    with ThreadPoolExecutor(case.concurrency) as pool:
        list(pool.map(call, range(case.concurrency)))  # connections open before the clock starts
        started = time.perf_counter()
        list(pool.map(call, range(case.tasks)))
        return time.perf_counter() - started


@contextmanager
def serve(base_url: str, concurrency: int, fast_path: str) -> Iterator[tuple[str, list[int]]]:
    """`llm-backend serve` with the defaults; (its URL, [master pid, worker pids]) once every worker is warm."""
    started = serve_backend(base_url, CONFIG, "1.1", LLM_CONCURRENCY=str(concurrency), LLM_FAST_PATH=fast_path)
    with started as (url, pids):
        # Every worker loads LiteLLM and opens its connections before the clock starts.
        _predict(url, concurrency * 2, "warm-up", first_id=10_000_000)
        yield url, pids


def _predict(url: str, tasks: int, salt: str, first_id: int) -> float:
    body = {"label_config": CONFIG, "project": "1.1",
            "tasks": [{"id": first_id + i, "data": {"text": f"{salt} task {i}"}} for i in range(tasks)]}
    started = time.perf_counter()
    response = requests.post(f"{url}/predict", json=body, timeout=600)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    ok = sum("result" in result for result in response.json()["results"])
    if ok != tasks:
        raise SystemExit(f"only {ok}/{tasks} tasks predicted through serve")
    return elapsed


def through_serve(base_url: str, case: Case, fast_path: str) -> tuple[list[float], list[float], list[list[float]]]:
    """Wall seconds, CPU ms per task (all processes) and each worker's share of that CPU, per run."""
    walls, cpu_per_task, shares = [], [], []
    with serve(base_url, case.concurrency, fast_path) as (url, pids):
        for run in range(case.repeat):
            before = [process_cpu_seconds(pid) for pid in pids]
            walls.append(_predict(url, case.tasks, f"serve r{run}", first_id=run * case.tasks + 1))
            used = [process_cpu_seconds(pid) - start for pid, start in zip(pids, before, strict=True)]
            cpu_per_task.append(sum(used) * 1000 / case.tasks)
            workers = used[1:]
            shares.append([value / sum(workers) for value in workers] if sum(workers) else [])
    return walls, cpu_per_task, shares


def in_process(base_url: str, case: Case, cache_dir: Path, *, cache: bool, salt: str,
               fast_path: str) -> tuple[float, float]:
    """Wall seconds and CPU ms per task."""
    settings = Settings(llm_model="openai/bench", llm_api_base=base_url, llm_api_key="sk-bench",
                        llm_concurrency=case.concurrency, cache_enabled=cache, cache_dir=cache_dir,
                        predict_deadline=600, prompts_dir=DEFAULT_PROMPTS_DIR, llm_fast_path=fast_path)
    return time_predict(settings, case.tasks, salt)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of the 200-task cases")
    parser.add_argument("--big-repeat", type=int, default=3, help="runs of the 2,000-task case")
    parser.add_argument("--skip-sequential", action="store_true", help="skip the slow C=1 run")
    parser.add_argument("--skip-big", action="store_true", help="skip the 2,000-task case")
    parser.add_argument("--fast-path", choices=("on", "off"), default="on", help="LLM_FAST_PATH")
    args = parser.parse_args()
    fast = args.fast_path

    small = Case(200, 16, 0.25, args.repeat)
    big = Case(2000, 64, 0.2, args.big_repeat)
    cases = [small] if args.skip_big else [small, big]
    plain: dict[Case, float] = {}
    served: dict[Case, tuple[list[float], list[float], list[list[float]]]] = {}
    loads: dict[Case, str] = {}
    for case in cases:
        with llm_server(case.latency) as control:
            base_url = control.base_url
            plain[case] = plain_client(base_url, case)
            served[case] = through_serve(base_url, case, fast)
            loads[case] = load_average()
            if case is small:
                with tempfile.TemporaryDirectory() as tmp:
                    cache_dir = Path(tmp)
                    in_process(base_url, Case(8, 8, case.latency, 1), cache_dir, cache=False, salt="warm-up",
                               fast_path=fast)
                    inproc = [in_process(base_url, case, cache_dir, cache=False, salt=f"r{i}", fast_path=fast)
                              for i in range(args.repeat)]
                    in_process(base_url, case, cache_dir, cache=True, salt="cached", fast_path=fast)
                    cached = [in_process(base_url, case, cache_dir, cache=True, salt="cached", fast_path=fast)
                              for _ in range(args.repeat)]
                    sequential = None if args.skip_sequential else in_process(
                        base_url, Case(case.tasks, 1, case.latency, 1), cache_dir, cache=False, salt="seq",
                        fast_path=fast)

    print(f"Machine: {os.cpu_count()} CPU cores, load average {load_average()} at the end; LLM_FAST_PATH={fast}")
    print()
    print("The test LLM server alone, plain client (C threads, keep-alive):")
    print()
    print("| case | wall (s) | ideal (s) | wall / ideal |")
    print("| --- | ---: | ---: | ---: |")
    for case, wall in plain.items():
        print(f"| {case.name} | {wall:.2f} | {case.ideal:.2f} | {wall / case.ideal:.2f}x |")
    print()
    print("Through `llm-backend serve` (default settings: WORKERS=auto, cache on, background jobs on):")
    print()
    print("| case | runs | wall median (s) | min / max (s) | ideal (s) | wall / ideal | CPU ms per task | "
          "workers' CPU shares | load average after |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    for case, (walls, cpu, shares) in served.items():
        median = statistics.median(walls)
        spread = " / ".join(f"{share:.0%}" for share in shares[len(shares) // 2]) or "-"
        print(f"| {case.name} | {case.repeat} | {median:.2f} | {min(walls):.2f} / {max(walls):.2f} | "
              f"{case.ideal:.2f} | {median / case.ideal:.2f}x | {statistics.median(cpu):.1f} | {spread} | "
              f"{loads[case]} |")
    print()
    print(f"In-process (create_app), {small.name}, cache off:")
    print()
    print("| run | wall time (s) | vs ideal | CPU ms per task |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| ideal ceil(N/C) x latency | {small.ideal:.2f} | 1.00x | - |")
    median, cpu_ms = (statistics.median(values) for values in zip(*inproc, strict=True))
    print(f"| concurrent (median of {args.repeat}) | {median:.2f} | {median / small.ideal:.2f}x | {cpu_ms:.1f} |")
    cached_wall, cached_cpu = (statistics.median(values) for values in zip(*cached, strict=True))
    print(f"| re-run, all from cache (median) | {cached_wall:.3f} | {cached_wall / small.ideal:.2f}x | "
          f"{cached_cpu:.1f} |")
    if sequential is not None:
        print(f"| sequential (C=1) | {sequential[0]:.2f} | {sequential[0] / small.ideal:.2f}x | {sequential[1]:.1f} |")


if __name__ == "__main__":
    main()

"""Job queue benchmark: what a /predict through the durable job costs over the direct path, and how long a
selection larger than the deadline takes to finish as a job.

Runs the test LLM server in its own process, builds apps with `create_app` (SQLite queue and ledger
in a temp CACHE_DIR, no Label Studio, so nothing is written back), and times:

* one /predict of N new tasks that all finish before the deadline, direct path (no task ids, as
  before jobs) against the job path (project and task ids: queue, ledger, consumers);
* a selection of M tasks at a small LLM_CONCURRENCY with PREDICT_DEADLINE=5: when /predict answers,
  how many it answered, and when the job has finished the rest, against ceil(M/C) x latency.

    python bench/jobs.py [--tasks 200] [--concurrency 16] [--big 300] [--big-concurrency 4] [--repeat 3]
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from common import CONFIG, llm_server  # the bench folder is on sys.path when a script runs

from llm_backend.engine.prompts import DEFAULT_PROMPTS_DIR
from llm_backend.models.client import load_litellm
from llm_backend.settings import Settings
from llm_backend.web.app import create_app, services_of


def _app(base_url: str, cache_dir: Path, concurrency: int, deadline: float) -> Any:
    settings = Settings(llm_model="openai/bench", llm_api_base=base_url, llm_api_key="sk-bench",
                        llm_concurrency=concurrency, cache_dir=cache_dir, predict_deadline=deadline,
                        prompts_dir=DEFAULT_PROMPTS_DIR)
    return create_app(settings)


def _predict(app: Any, tasks: int, salt: str, project: str | None) -> tuple[float, int]:
    body: dict[str, Any] = {"label_config": CONFIG, "tasks": [
        {"id": i + 1, "data": {"text": f"{salt} task {i}"}} if project else {"data": {"text": f"{salt} task {i}"}}
        for i in range(tasks)]}
    if project:
        body["project"] = f"{project}.1"
    started = time.perf_counter()
    response = app.test_client().post("/predict", json=body)
    elapsed = time.perf_counter() - started
    return elapsed, sum("result" in r for r in response.get_json()["results"])


def _small(base_url: str, tasks: int, concurrency: int, salt: str, jobs: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        app = _app(base_url, Path(tmp), concurrency, 600)
        try:
            elapsed, ok = _predict(app, tasks, salt, "1" if jobs else None)
        finally:
            services_of(app).consumers.stop()
    if ok != tasks:
        raise SystemExit(f"only {ok}/{tasks} tasks predicted")
    return elapsed


def _big(base_url: str, tasks: int, concurrency: int, salt: str) -> tuple[float, int, float]:
    """(seconds until /predict answered, tasks it answered, seconds until the job finished every task)."""
    with tempfile.TemporaryDirectory() as tmp:
        app = _app(base_url, Path(tmp), concurrency, 5)
        services = services_of(app)
        try:
            started = time.perf_counter()
            answered_after, answered = _predict(app, tasks, salt, "2")
            [job] = services.job_store.jobs()
            while any(r.state in ("queued", "running") for r in services.job_store.records(job.id)):
                time.sleep(0.05)
            finished = time.perf_counter() - started
            done = sum(r.state in ("done", "returned") for r in services.job_store.records(job.id))
        finally:
            services.consumers.stop()
    if done != tasks:
        raise SystemExit(f"the job finished {done}/{tasks} tasks")
    return answered_after, answered, finished


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--big", type=int, default=300)
    parser.add_argument("--big-concurrency", type=int, default=4)
    parser.add_argument("--latency", type=float, default=0.25)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with llm_server(args.latency) as control:
        load_litellm()
        _small(control.base_url, 8, 8, "warm-up", jobs=True)
        direct = [_small(control.base_url, args.tasks, args.concurrency, f"d{i}", jobs=False)
                  for i in range(args.repeat)]
        queued = [_small(control.base_url, args.tasks, args.concurrency, f"j{i}", jobs=True)
                  for i in range(args.repeat)]
        big = [_big(control.base_url, args.big, args.big_concurrency, f"b{i}") for i in range(args.repeat)]

    ideal = math.ceil(args.tasks / args.concurrency) * args.latency
    print(f"provider latency {args.latency * 1000:.0f} ms, {args.repeat} runs each, medians")
    print()
    print(f"One /predict of {args.tasks} tasks, LLM_CONCURRENCY={args.concurrency} (all within the deadline):")
    print()
    print("| path | wall time (s) | min / max | vs ideal |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| ideal ceil(N/C) x latency | {ideal:.2f} | | 1.00x |")
    for name, times in (("direct (no task ids)", direct), ("job (queue + ledger)", queued)):
        median = statistics.median(times)
        print(f"| {name} | {median:.2f} | {min(times):.2f} / {max(times):.2f} | {median / ideal:.2f}x |")
    big_ideal = math.ceil(args.big / args.big_concurrency) * args.latency
    print()
    print(f"A selection of {args.big} tasks, LLM_CONCURRENCY={args.big_concurrency}, PREDICT_DEADLINE=5:")
    print()
    print("| /predict answered after (s) | tasks in its answer | job finished after (s) | ideal (s) | vs ideal |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    answered_after = statistics.median(run[0] for run in big)
    answered = statistics.median(run[1] for run in big)
    finished = statistics.median(run[2] for run in big)
    print(f"| {answered_after:.2f} | {answered:.0f} | {finished:.2f} | {big_ideal:.2f} | {finished / big_ideal:.2f}x |")


if __name__ == "__main__":
    main()

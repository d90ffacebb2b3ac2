"""Batch predict benchmark: N tasks against a provider with fixed latency.

Runs the test LLM server in its own process (so its work does not share our GIL), builds the app
with `create_app`, and times one /predict of N tasks, cache off, at LLM_CONCURRENCY=C, against
the ideal ceil(N/C) x latency and against sequential calls (C=1). Prints a table.

    python bench/batch.py [--tasks 200] [--latency 0.25] [--concurrency 16] [--repeat 5]
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import REPO, free_port, time_predict  # the bench folder is on sys.path when a script runs

from llm_backend.engine.prompts import DEFAULT_PROMPTS_DIR
from llm_backend.models.client import load_litellm
from llm_backend.settings import Settings
from testkit.llm_server import LLMServerControl


def _run(base_url: str, tasks: int, concurrency: int, cache_dir: Path, cache: bool, salt: str) -> float:
    settings = Settings(llm_model="openai/bench", llm_api_base=base_url, llm_api_key="sk-bench",
                        llm_concurrency=concurrency, cache_enabled=cache, cache_dir=cache_dir,
                        predict_deadline=600, prompts_dir=DEFAULT_PROMPTS_DIR)
    return time_predict(settings, tasks, salt)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.25)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-sequential", action="store_true", help="skip the slow C=1 run")
    args = parser.parse_args()

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "testkit.llm_server", "--port", str(port),
                               "--latency", str(args.latency)], cwd=REPO, stdout=subprocess.DEVNULL)
    control = LLMServerControl(f"http://127.0.0.1:{port}")
    try:
        control.wait_ready()
        load_litellm()
        with tempfile.TemporaryDirectory() as tmp:
            cache_dir = Path(tmp)
            _run(control.base_url, 8, 8, cache_dir, False, "warm-up")
            times = [_run(control.base_url, args.tasks, args.concurrency, cache_dir, False, f"r{i}")
                     for i in range(args.repeat)]
            _run(control.base_url, args.tasks, args.concurrency, cache_dir, True, "cached")
            cached = [_run(control.base_url, args.tasks, args.concurrency, cache_dir, True, "cached")
                      for _ in range(args.repeat)]
            sequential = None if args.skip_sequential else _run(control.base_url, args.tasks, 1, cache_dir, False,
                                                                "seq")
    finally:
        server.terminate()
        server.wait()

    ideal = math.ceil(args.tasks / args.concurrency) * args.latency
    median = statistics.median(times)
    print(f"N={args.tasks} tasks, provider latency {args.latency * 1000:.0f} ms, LLM_CONCURRENCY={args.concurrency}, "
          f"{args.repeat} runs")
    print()
    print("| run | wall time (s) | vs ideal |")
    print("| --- | ---: | ---: |")
    print(f"| ideal ceil(N/C) x latency | {ideal:.2f} | 1.00x |")
    print(f"| concurrent, cache off (median) | {median:.2f} | {median / ideal:.2f}x |")
    print(f"| concurrent, min / max | {min(times):.2f} / {max(times):.2f} | |")
    print(f"| re-run, all from cache (median) | {statistics.median(cached):.3f} | "
          f"{statistics.median(cached) / ideal:.2f}x |")
    if sequential is not None:
        print(f"| sequential (C=1), cache off | {sequential:.2f} | {sequential / ideal:.2f}x |")
        print()
        print(f"speed-up over sequential: {sequential / median:.1f}x; target <= 1.2x ideal: "
              f"{'met' if median <= 1.2 * ideal else 'NOT met'}")


if __name__ == "__main__":
    main()

"""Routing benchmark: one deployment against two behind LiteLLM's Router (LLM_ROUTER_CONFIG), on the fast path.

Runs two test LLM servers in their own processes, each with a fixed latency and at most M requests
in progress (the rest queue, like a GPU server at its batch limit), builds the app with
`create_app` and times one /predict of N tasks, cache off, at LLM_CONCURRENCY=C: with a routing
file of one deployment, then of two deployments under the same model name. Prints a table with the
backend's CPU per task (this process, every thread: the test servers run in processes of their own) and
the load average beside it: on a shared 2-core machine wall-time ratios move with the load, CPU per task
much less.

    python bench/routing.py [--tasks 200] [--latency 0.25] [--max-concurrent 8] [--concurrency 16] [--repeat 3]
                            [--fast-path on|off]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml
from common import llm_server, load_average, time_predict  # the bench folder is on sys.path when a script runs

from llm_backend.engine.prompts import DEFAULT_PROMPTS_DIR
from llm_backend.models.client import load_litellm
from llm_backend.settings import Settings
from testkit.llm_server import LLMServerControl


def _route_file(directory: Path, name: str, servers: list[LLMServerControl], strategy: str) -> Path:
    model_list = [{"model_name": "local", "litellm_params": {"model": "openai/bench", "api_base": server.base_url,
                                                             "api_key": "sk-bench"}} for server in servers]
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"model_list": model_list, "router_settings": {"routing_strategy": strategy}}))
    return path


def _run(route: Path, tasks: int, concurrency: int, salt: str, fast_path: str) -> tuple[float, float]:
    settings = Settings(llm_model="local", llm_router_config=route, llm_concurrency=concurrency,
                        cache_enabled=False, predict_deadline=600, prompts_dir=DEFAULT_PROMPTS_DIR,
                        llm_fast_path=fast_path)
    return time_predict(settings, tasks, salt)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.25)
    parser.add_argument("--max-concurrent", type=int, default=8, help="requests one deployment serves at once")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--fast-path", choices=("on", "off"), default="on",
                        help="LLM_FAST_PATH (off: every Router call is litellm.acompletion)")
    args = parser.parse_args()

    rows: list[dict[str, Any]] = []
    with ExitStack() as stack:
        servers = [stack.enter_context(llm_server(args.latency, "--max-concurrent", str(args.max_concurrent)))
                   for _ in range(2)]
        load_litellm()
        with tempfile.TemporaryDirectory() as tmp:
            setups = [
                ("1 deployment", _route_file(Path(tmp), "one", servers[:1], "simple-shuffle"), 1),
                ("2 deployments, simple-shuffle", _route_file(Path(tmp), "two", servers, "simple-shuffle"), 2),
                ("2 deployments, least-busy", _route_file(Path(tmp), "busy", servers, "least-busy"), 2),
            ]
            for label, route, count in setups:
                _run(route, 8, 8, "warm-up", args.fast_path)
                times, cpu, shares = [], [], []
                for i in range(args.repeat):
                    for server in servers:
                        server.reset()
                    wall, cpu_ms = _run(route, args.tasks, args.concurrency, f"{label} {i}", args.fast_path)
                    times.append(wall)
                    cpu.append(cpu_ms)
                    shares.append([server.stats()["calls"] for server in servers[:count]])
                ideal = math.ceil(args.tasks / min(args.concurrency, count * args.max_concurrent)) * args.latency
                rows.append({"label": label, "median": statistics.median(times), "min": min(times),
                             "max": max(times), "ideal": ideal, "share": shares[-1], "cpu": statistics.median(cpu),
                             "load": load_average()})

    one = rows[0]["median"]
    print(f"N={args.tasks} tasks, LLM_CONCURRENCY={args.concurrency}, each deployment {args.latency * 1000:.0f} ms "
          f"and at most {args.max_concurrent} requests at a time (the rest queue), cache off, {args.repeat} runs, "
          f"LLM_FAST_PATH={args.fast_path}")
    print()
    print("| deployments behind `local` | wall time (s), median | min / max | ideal | wall / ideal | vs 1 deployment | "
          "CPU ms per task (median) | requests per deployment (last run) | load average after |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    for row in rows:
        print(f"| {row['label']} | {row['median']:.2f} | {row['min']:.2f} / {row['max']:.2f} | {row['ideal']:.2f} | "
              f"{row['median'] / row['ideal']:.2f}x | {row['median'] / one:.2f}x | {row['cpu']:.1f} | "
              f"{' / '.join(map(str, row['share']))} | {row['load']} |")
    print()
    print(f"Machine: {os.cpu_count()} CPU cores, load average {load_average()} at the end")


if __name__ == "__main__":
    main()

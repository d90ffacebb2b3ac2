"""Where a task's CPU goes in `llm-backend serve`: py-spy samples of every worker during one /predict.

Starts `serve` with its defaults (bench/batch.py's harness: the test LLM server in its own process, a
project set up, every worker warm), attaches py-spy to each gunicorn worker while one /predict of N new
tasks runs, and charges each sample to the innermost frame it can name: the model call (our fast path or
LiteLLM, with aiohttp/httpx under it), prompt rendering (Jinja), the answer's schema, reading and
validating the reply (Pydantic), the response cache, the job ledger and queue (SQLite), Flask and
gunicorn, JSON, logging, metrics; the rest is "other" (our engine's glue, threads handing work over).
Prints milliseconds of CPU per task per part, and the total measured from /proc beside the sampled one.

    python bench/profile.py [--tasks 2000] [--concurrency 64] [--latency 0.2] [--rate 250] [--fast-path on|off]

Samples are taken of the thread holding the GIL (`py-spy --gil`): Python's CPU, which is where a worker's
time goes; C code that releases the GIL (socket writes, SQLite) is not seen. Needs py-spy
(`pip install py-spy`) and the right to attach to the workers (root, or ptrace_scope 0).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from batch import Case, _predict, serve  # the bench folder is on sys.path when a script runs
from common import llm_server, load_average, process_cpu_seconds

# (part, pattern of a frame "function (file)"), innermost match wins; checked in this order within a frame.
PARTS: list[tuple[str, re.Pattern[str]]] = [
    ("JSON", re.compile(r"\((json/|orjson)")),
    ("logging", re.compile(r"\(logging/|\(llm_backend/redact\.py")),
    ("model call: fast path", re.compile(r"\(llm_backend/models/fastpath\.py")),
    ("model call: aiohttp / httpx", re.compile(r"\((aiohttp|httpx|httpcore|yarl|multidict)/")),
    ("model call: LiteLLM", re.compile(r"\((litellm|openai)/|\(gpt_transformation|\(transformation\.py|"
                                       r"\(convert_dict_to_response|\(utils\.py\)|\(main\.py\)")),
    ("model call: client, retries, event loop", re.compile(r"\(llm_backend/models/|\(tenacity/|\(asyncio/")),
    ("prompt render", re.compile(r"\(llm_backend/engine/prompts\.py|\(jinja2/|<template>|\(llm_backend/prompts/")),
    ("schema", re.compile(r"\(llm_backend/core/schema\.py")),
    ("reading + validation", re.compile(r"\(llm_backend/core/(reading|answer|controls/)|\(pydantic|\(json_repair/")),
    ("response cache", re.compile(r"\(llm_backend/engine/(cache|singleflight)\.py")),
    ("ledger + queue", re.compile(r"\(llm_backend/engine/(jobstore\w*|jobrecords|jobs|consumers|job|"
                                  r"provider_batch_store)\.py|\(sqlite3/")),
    ("metrics", re.compile(r"\(llm_backend/engine/metrics\.py|\(prometheus_client/")),
    ("Flask, gunicorn, protocol", re.compile(r"\((flask|werkzeug|gunicorn)/|\(llm_backend/web/")),
]


def part_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for part, pattern in PARTS:
            if pattern.search(frame):
                return part
    return "other"


def parse(path: Path) -> collections.Counter[str]:
    """Samples per part from py-spy's raw output (one `frame;frame;... count` line per distinct stack)."""
    counts: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        counts[part_of(frames)] += int(number)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--fast-path", choices=("on", "off"), default="on", help="LLM_FAST_PATH")
    parser.add_argument("--keep", type=Path, help="a folder to keep py-spy's raw samples in")
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    case = Case(args.tasks, args.concurrency, args.latency, 1)

    with llm_server(case.latency) as control, serve(control.base_url, case.concurrency, args.fast_path) as (url, pids):
        _predict(url, case.concurrency * 4, "profile warm-up", first_id=20_000_000)
        with tempfile.TemporaryDirectory() as tmp:
            outputs = [Path(tmp) / f"{pid}.txt" for pid in pids[1:]]
            spies = [subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", str(args.rate), "--format", "raw",
                                       "--gil", "--output", str(out)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL) for pid, out in zip(pids[1:], outputs, strict=True)]
            before = [process_cpu_seconds(pid) for pid in pids]
            wall = _predict(url, case.tasks, "profile", first_id=1)
            used = sum(process_cpu_seconds(pid) - start for pid, start in zip(pids, before, strict=True))
            for process in spies:
                process.send_signal(2)  # py-spy writes its output on SIGINT
            for process in spies:
                process.wait(timeout=60)
            counts: collections.Counter[str] = collections.Counter()
            for out in outputs:
                counts += parse(out)
                if args.keep:
                    args.keep.mkdir(parents=True, exist_ok=True)
                    shutil.copy(out, args.keep / out.name)

    sampled = sum(counts.values())
    measured_ms = used * 1000 / case.tasks
    print(f"{case.name}, LLM_FAST_PATH={args.fast_path}, {len(pids) - 1} worker(s), {os.cpu_count()} CPU cores, "
          f"load average {load_average()} at the end")
    print(f"wall {wall:.2f} s against an ideal of {case.ideal:.2f} s ({wall / case.ideal:.2f}x); CPU of every serve "
          f"process {measured_ms:.2f} ms per task (/proc); py-spy samples {sampled:,} at {args.rate}/s")
    print()
    print("| part | share of samples | ms per task (share x measured CPU) |")
    print("| --- | ---: | ---: |")
    for part, count in counts.most_common():
        share = count / sampled if sampled else 0.0
        print(f"| {part} | {share:.1%} | {share * measured_ms:.2f} |")


if __name__ == "__main__":
    main()

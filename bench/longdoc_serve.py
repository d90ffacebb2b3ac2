"""bench/longdoc.py's document through `llm-backend serve`, as Label Studio sends it.

The 1,000,000-character document with 500 planted entities (testkit/documents.py) is one task of one
/predict (a project and a task id: the job path Label Studio's batch call takes) to `serve` with its
defaults but for LLM_CONTEXT_TOKENS (the test LLM server's 8,192-token window, refusing longer prompts
as OpenAI does), LLM_CONCURRENCY and CACHE_ENABLED=false (every run pays its calls). The test LLM server
runs in its own process and answers after the latency. Reported per run: recall at exact offsets, false
spans, model calls, wall time against the ideal ceil(calls/C) x latency, the CPU of serve's process tree
(master and workers, user + system) during the run, and the load average after it: on a shared 2-core
machine, CPU it cannot get shows up as wall time. `--timeline` adds, per run, where the wall time beyond the
provider's went, from the test server's record of each call (when it received it and when it answered, on the
same clock): the wait for the first call, the calls' waves, the server's time per call, the gap between a call
answered and the next one received, and the time from the last answer to the response.

    python bench/longdoc_serve.py [--chars 1000000] [--entities 500] [--repeat 3] [--latency 0.25]
                                  [--concurrency 16] [--context 8192] [--seed 1234] [--timeline]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from contextlib import AbstractContextManager
from typing import Any

import requests
from common import llm_server, load_average, process_cpu_seconds
from common import serve as serve_backend

from testkit.documents import gazetteer_for, planted_document

CONFIG = """<View><Text name="text" value="$text"/><Labels name="ner" toName="text">
<Label value="Person"/><Label value="Organization"/><Label value="Location"/></Labels></View>"""


def serve(base_url: str, args: argparse.Namespace) -> AbstractContextManager[tuple[str, list[int]]]:
    """`llm-backend serve`, cache off; its URL and [master pid, worker pids] once it answers /health."""
    return serve_backend(base_url, CONFIG, "1", LLM_CONCURRENCY=str(args.concurrency),
                         LLM_CONTEXT_TOKENS=str(args.context), CACHE_ENABLED="false", PREDICT_DEADLINE="90")


def _spans(result: dict[str, Any], text: str) -> set[tuple[int, int, str]]:
    if "result" not in result:
        raise SystemExit(f"the task failed: {result.get('error')}")
    spans = set()
    for region in result["result"]:
        value = region["value"]
        if text[value["start"] : value["end"]] != value["text"]:
            raise SystemExit(f"region text {value['text']!r} is not the text at its offsets")
        spans.add((value["start"], value["end"], value["labels"][0]))
    return spans


def _predict(url: str, text: str, task_id: int) -> tuple[dict[str, Any], float]:
    body = {"label_config": CONFIG, "project": "1", "tasks": [{"id": task_id, "data": {"text": text}}]}
    started = time.perf_counter()
    response = requests.post(f"{url}/predict", json=body, timeout=600)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return response.json()["results"][0], elapsed


def timeline(requests: list[dict[str, Any]], sent: float, answered: float, concurrency: int) -> str:
    """One run's calls as the test server saw them (time.time(), the client's clock too), in ms from the request."""
    if not requests:
        return "no model call"
    received = sorted((r["_received_at"] - sent) * 1000 for r in requests)
    done = sorted((r["_answered_at"] - sent) * 1000 for r in requests)
    server = statistics.median((r["_answered_at"] - r["_received_at"]) * 1000 for r in requests)
    # The k-th call after the first C goes out when a slot frees: set against the k-th answer.
    refill = [received[k + concurrency] - done[k] for k in range(len(received) - concurrency)]
    waves = " / ".join(f"{received[i]:.0f}-{received[min(i + concurrency, len(received)) - 1]:.0f}"
                       for i in range(0, len(received), concurrency))
    gaps = f"median {statistics.median(refill):.0f} ms, max {max(refill):.0f} ms" if refill else "none"
    return (f"first call received at {received[0]:.0f} ms; calls received (waves of {concurrency}) {waves} ms; "
            f"the server's time per call: median {server:.0f} ms; from an answer to the next call received: {gaps}; "
            f"last answer at {done[-1]:.0f} ms, response {(answered - sent) * 1000 - done[-1]:.0f} ms after it")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--chars", type=int, default=1_000_000)
    parser.add_argument("--entities", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.25)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--context", type=int, default=8192)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--timeline", action="store_true", help="where each run's wall time went (see above)")
    args = parser.parse_args()

    text, planted = planted_document(args.seed, args.chars, args.entities)
    truth = {(p.start, p.end, p.label) for p in planted}
    warm_text, warm_planted = planted_document(args.seed + 1, 60_000, 30)
    print(f"{len(text):,} characters, {len(planted)} planted entities, context {args.context:,} tokens, provider "
          f"latency {args.latency * 1000:.0f} ms, LLM_CONCURRENCY={args.concurrency}, through serve (job path), "
          f"{os.cpu_count()} CPU cores")
    print()
    print("| run | recall (exact offsets) | false spans | calls (refused) | wall (s) | ideal (s) | wall / ideal | "
          "serve CPU (s) | CPU ms per call | load average after |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    ratios = []
    lines = []
    with llm_server(args.latency, "--context-tokens", str(args.context)) as control:
        control.set_gazetteer(gazetteer_for([*planted, *warm_planted], cut_edges=True))
        with serve(control.base_url, args) as (url, pids):
            _predict(url, warm_text, 1)  # LiteLLM loaded, connections open, the window known, before the clock
            for run in range(args.repeat):
                seen = control.stats()
                before = seen["by_status"]
                cpu = sum(process_cpu_seconds(pid) for pid in pids)
                sent = time.time()
                result, wall = _predict(url, text, 100 + run)
                answered = time.time()
                cpu = sum(process_cpu_seconds(pid) for pid in pids) - cpu
                stats = control.stats()
                after = stats["by_status"]
                if args.timeline:
                    calls_made = stats["requests"][len(seen["requests"]):]
                    lines.append(f"run {run + 1}: " + timeline(calls_made, sent, answered, args.concurrency))
                calls = sum(int(v) for v in after.values()) - sum(int(v) for v in before.values())
                refused = int(after.get("400", 0)) - int(before.get("400", 0))
                found = _spans(result, text)
                ideal = math.ceil(calls / args.concurrency) * args.latency
                ratios.append(wall / ideal)
                print(f"| run {run + 1} | {len(found & truth) / len(truth):.1%} | {len(found - truth)} | {calls} "
                      f"({refused}) | {wall:.2f} | {ideal:.2f} | {wall / ideal:.2f}x | {cpu:.2f} | "
                      f"{cpu * 1000 / max(calls, 1):.1f} | {load_average()} |")
    print()
    for line in lines:
        print(line)
        print()
    print(f"wall / ideal: median {statistics.median(ratios):.2f}x, best {min(ratios):.2f}x over {args.repeat} runs; "
          f"target <= 1.3x: {'met' if statistics.median(ratios) <= 1.3 else 'NOT met'} (median)")


if __name__ == "__main__":
    main()

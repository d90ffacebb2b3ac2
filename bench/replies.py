"""Replies as real models send them, through the real server (gunicorn), and a batch under faults.

    python bench/replies.py                     # this checkout
    python bench/replies.py --repo ../other     # the same measurement of another checkout's server

Table 1: each reply shape (the right answer, dressed as local and hosted models dress it; see
testkit/reply_styles.py) for one task, in `schema` and `json` output modes: "recovered" when the
regions equal the right answer, "partial" when exactly the invalid control was left out and named,
"error" when the task came back without `result` (with the start of its message), "WRONG" when a
`result` differs from the right answer (must never happen). Each with the model calls it took.

Table 2: 60 tasks, 30% 429 (Retry-After 1 s) and 10% 500 from the model, in one /predict, `--runs`
times: tasks answered, seconds, calls, the most attempts one task needed; then the same /predict
again: new model calls, and whether the results were identical.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from common import REPO, free_port

from testkit.llm_server import FakeLLMServer, Reply

CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single">
    <Choice value="Positive"/><Choice value="Negative"/><Choice value="Neutral"/>
  </Choices>
  <Labels name="ner" toName="text"><Label value="Person"/><Label value="Location"/></Labels>
  <TextArea name="summary" toName="text"/>
</View>"""
TEXT = "Ada Lovelace met Charles Babbage in London."
ANSWER: dict[str, Any] = {
    "sentiment": "Positive",
    "ner": [{"text": "Ada Lovelace", "label": "Person"}, {"text": "London", "label": "Location"}],
    "summary": "Two pioneers met.\nIn London.",
}
SHAPES: list[tuple[str, Reply]] = [
    ('`<think>…{"sentiment": "?"}…</think>` then the JSON', Reply(json=ANSWER, style="think")),
    ("JSON in a ```json fence", Reply(json=ANSWER, style="fence")),
    ("prose (with braces) around the JSON", Reply(json=ANSWER, style="prose")),
    ("extra keys (`confidence`, `explanation`)", Reply(json=ANSWER, style="extra_keys")),
    ("`reasoning_content` beside the content", Reply(json=ANSWER, style="reasoning_beside")),
    ("a label as `positive.`", Reply(json={**ANSWER, "sentiment": "positive."})),
    ('trailing commas (`"Person",\\n }`)', Reply(json=ANSWER, style="trailing_commas")),
    ("Python-style single quotes", Reply(json=ANSWER, style="single_quotes")),
    ("Python literals `True`/`None`", Reply(content=repr({**ANSWER, "certain": True, "caveat": None}))),
    ("`//` comments", Reply(json=ANSWER, style="comments")),
    ("an unescaped newline inside a string", Reply(json=ANSWER, style="raw_newlines")),
    ("content empty, the answer in `reasoning_content` (LM Studio, llama.cpp)",
     Reply(json=ANSWER, style="reasoning_only")),
    ("content null, the answer in vLLM's `reasoning`", Reply(json=ANSWER, style="reasoning_only_vllm")),
    ("think block, then trailing commas", Reply(json=ANSWER, style="think+trailing_commas")),
    ("cut off at the token limit (`finish_reason: \"length\"`)", Reply(json=ANSWER, style="cut_off")),
    ("a refusal (`content: null`, `refusal: \"I'm sorry…\"`)", Reply(json=ANSWER, style="refusal")),
    ("an empty reply", Reply(json=ANSWER, style="empty")),
    ("a sentiment outside the config (`Mixed`) beside correct entities, twice",
     Reply(json={**ANSWER, "sentiment": "Mixed"})),
]


# Replies that carry no usable answer for every control: they must end as a per-task error (or, for the
# invalid control, a partial answer that names it), never as a result.
UNRECOVERABLE = {name for name, _reply in SHAPES[-4:]}


def _regions(result: dict[str, Any]) -> set[tuple[str, str]]:
    return {(r["from_name"], json.dumps(r["value"], sort_keys=True)) for r in result.get("result", [])}


def _expected() -> set[tuple[str, str]]:
    return {
        ("sentiment", json.dumps({"choices": ["Positive"]})),
        ("ner", json.dumps({"end": 12, "labels": ["Person"], "start": 0, "text": "Ada Lovelace"}, sort_keys=True)),
        ("ner", json.dumps({"end": 42, "labels": ["Location"], "start": 36, "text": "London"}, sort_keys=True)),
        ("summary", json.dumps({"text": [ANSWER["summary"]]})),
    }


class Backend:
    """`llm-backend serve` (gunicorn) of a checkout, pointed at the test LLM server."""

    def __init__(self, repo: Path, llm: FakeLLMServer, work: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        values = {"PORT": str(self.port), "LLM_MODEL": "openai/test-model", "LLM_API_BASE": llm.base_url,
                  "LLM_API_KEY": "sk-bench", "LLM_TIMEOUT": "10", "CACHE_DIR": str(work / "cache"),
                  "PROMPTS_DIR": str(work / "prompts"), "LOG_LEVEL": "WARNING", **env}
        work.mkdir(parents=True, exist_ok=True)
        self.log = (work / f"backend-{self.port}.log").open("wb")
        self.process = subprocess.Popen([sys.executable, "-m", "llm_backend", "serve", "--host", "127.0.0.1"],
                                        env={**os.environ, **values}, cwd=repo, stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                requests.get(f"{self.url}/health", timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.1)
        raise SystemExit(f"backend on {self.url} did not start")

    def predict(self, tasks: list[dict[str, Any]], label_config: str = CONFIG) -> list[dict[str, Any]]:
        body = {"label_config": label_config, "project": "bench.1", "tasks": tasks}
        results: list[dict[str, Any]] = requests.post(f"{self.url}/predict", json=body, timeout=110).json()["results"]
        return results

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)
        self.log.close()


def _outcome(result: dict[str, Any], calls: int) -> str:
    expected = _expected()
    if "result" not in result:
        return f"error ({calls} call{'s' if calls > 1 else ''}): {result['error'][:70]}…"
    if _regions(result) == expected and "error" not in result:
        return f"recovered ({calls} call{'s' if calls > 1 else ''})"
    if _regions(result) == {r for r in expected if r[0] != "sentiment"} and result.get("error", "").startswith(
            "sentiment left out"):
        return f"partial: sentiment left out and named, the rest kept ({calls} calls)"
    return f"WRONG ({calls} calls): {sorted(_regions(result))}"


def shapes_table(repo: Path, llm: FakeLLMServer, work: Path) -> list[str]:
    rows: dict[str, dict[str, str]] = {name: {} for name, _reply in SHAPES}
    for mode in ("schema", "json"):
        llm.reset()
        backend = Backend(repo, llm, work / mode, LLM_OUTPUT_MODE=mode)
        try:
            backend.predict([{"id": 0, "data": {"text": f"{TEXT} warm-up"}}])  # LiteLLM loads on the first call
            for index, (name, reply) in enumerate(SHAPES):
                marker = f"{TEXT} (case {index})"
                llm.add_rule(marker, reply)
                [result] = backend.predict([{"id": index, "data": {"text": marker}}])
                calls = sum(marker in json.dumps(r["messages"]) for r in llm.requests)
                rows[name][mode] = _outcome(result, calls)
        finally:
            backend.stop()
    lines = ["| reply | `schema` | `json` |", "| --- | --- | --- |"]
    lines += [f"| {name} | {modes['schema']} | {modes['json']} |" for name, modes in rows.items()]
    recoverable = [modes[mode] for name, modes in rows.items() if name not in UNRECOVERABLE for mode in modes]
    unrecoverable = [modes[mode] for name, modes in rows.items() if name in UNRECOVERABLE for mode in modes]
    outcomes = recoverable + unrecoverable
    lines.append(f"\nrecoverable replies recovered: {sum(o.startswith('recovered') for o in recoverable)} of "
                 f"{len(recoverable)}; unrecoverable ones ended as a per-task error or a named partial answer: "
                 f"{sum(o.startswith(('error', 'partial')) for o in unrecoverable)} of {len(unrecoverable)}; "
                 f"wrong results returned: {sum(o.startswith('WRONG') for o in outcomes)}")
    return lines


def faults_table(repo: Path, llm: FakeLLMServer, work: Path, runs: int) -> list[str]:
    choices = '<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">' \
              '<Choice value="Positive"/><Choice value="Negative"/><Choice value="Neutral"/></Choices></View>'
    lines = ["| run | answered | seconds | calls (429 / 500) | most attempts for one task | 2nd /predict: new calls, "
             "identical |", "| ---: | ---: | ---: | --- | ---: | --- |"]
    seconds: list[float] = []
    for run in range(runs):
        llm.reset()
        backend = Backend(repo, llm, work / f"faults-{run}")
        try:
            backend.predict([{"id": 0, "data": {"text": "warm-up"}}], choices)
            llm.reset()
            tasks = [{"id": i, "data": {"text": f"Run {run} review number {i}."}} for i in range(60)]
            for i in range(60):
                label = ("Positive", "Negative", "Neutral")[i % 3]
                llm.add_rule(f"review number {i}.", Reply(json={"sentiment": label}))
            llm.inject_failures(rate_429=0.3, rate_500=0.1, retry_after=1, seed=run)
            started = time.monotonic()
            first = backend.predict(tasks, choices)
            elapsed = time.monotonic() - started
            seconds.append(elapsed)
            answered = sum("result" in r for r in first)
            attempts = collections.Counter(re.search(r"review number (\d+)\.", json.dumps(r["messages"])).group(1)
                                           for r in llm.requests)
            calls, c429, c500 = llm.calls, llm.count(429), llm.count(500)
            second = backend.predict(tasks, choices)
            lines.append(f"| {run + 1} | {answered}/60 | {elapsed:.1f} | {calls} ({c429} / {c500}) | "
                         f"{max(attempts.values())} | {llm.calls - calls}, {'yes' if second == first else 'NO'} |")
        finally:
            backend.stop()
    lines.append(f"\nmedian {statistics.median(seconds):.1f} s over {runs} runs")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="the checkout whose server is measured")
    parser.add_argument("--runs", type=int, default=3, help="runs of the 60-task batch")
    args = parser.parse_args()
    with FakeLLMServer() as llm, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(f"server: {args.repo.resolve()}\n")
        print("\n".join(shapes_table(args.repo, llm, work)))
        print()
        print("\n".join(faults_table(args.repo, llm, work, args.runs)))


if __name__ == "__main__":
    main()

"""Cost parity: the fast path bills what `litellm.acompletion` bills, on the same tasks.

Runs one /predict of N tasks (in-process, cache off) against the test LLM server with LLM_FAST_PATH=on and
again with =off, for a model LiteLLM's price map knows (`openai/gpt-4o-mini`, straight) and for a routing file
deployment priced in the file and one LiteLLM has no price for, and prints the cost
counter (`llm_backend_llm_cost_usd`) and the unpriced calls of each run. The test server's token counts
depend only on the request, so the two paths' figures must be equal to the cent and below.

    python bench/cost_parity.py [--tasks 200]
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml
from common import CONFIG, llm_server, load_average  # the bench folder is on sys.path when a script runs

from llm_backend.engine.prompts import DEFAULT_PROMPTS_DIR
from llm_backend.settings import Settings
from llm_backend.web.app import create_app


def _counter(metrics: str, name: str) -> float:
    """A counter's total over its labels."""
    return sum(float(value) for value in re.findall(rf"^{name}_total(?:{{[^}}]*}})? (\S+)$", metrics, re.MULTILINE))


def _run(settings: Settings, tasks: int) -> tuple[float, float, int]:
    """Cost in USD, unpriced calls and tasks answered of one /predict."""
    client = create_app(settings).test_client()
    body = {"label_config": CONFIG, "project": "1.1",
            "tasks": [{"id": i, "data": {"text": f"parity task {i}"}} for i in range(tasks)]}
    results = client.post("/predict", json=body).get_json()["results"]
    if not all("result" in result for result in results):
        print(next(result for result in results if "result" not in result))
    metrics = client.get("/metrics").get_data(as_text=True)
    return (_counter(metrics, "llm_backend_llm_cost_usd"), _counter(metrics, "llm_backend_project_unpriced_calls"),
            sum("result" in result for result in results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tasks", type=int, default=200)
    args = parser.parse_args()
    rows: list[tuple[str, str, Any]] = []
    with llm_server(0.0) as server, llm_server(0.0) as other, tempfile.TemporaryDirectory() as tmp:
        priced, unpriced = Path(tmp) / "priced.yaml", Path(tmp) / "unpriced.yaml"
        priced.write_text(yaml.safe_dump({"model_list": [
            {"model_name": "local", "litellm_params": {"model": "openai/priced", "api_base": server.base_url,
                                                       "api_key": "sk-bench", "input_cost_per_token": 0.0000004,
                                                       "output_cost_per_token": 0.0000016}}]}))
        unpriced.write_text(yaml.safe_dump({"model_list": [
            {"model_name": "local", "litellm_params": {"model": "openai/unpriced", "api_base": other.base_url,
                                                       "api_key": "sk-bench"}}]}))
        setups = {
            "openai/gpt-4o-mini (LiteLLM's price map)": {"llm_model": "openai/gpt-4o-mini",
                                                         "llm_api_base": server.base_url},
            "routing file, a deployment priced in the file": {"llm_model": "local", "llm_router_config": priced},
            "routing file, a deployment LiteLLM has no price for": {"llm_model": "local",
                                                                    "llm_router_config": unpriced},
        }
        for label, values in setups.items():
            for fast in ("off", "on"):
                settings = Settings(**values, llm_api_key="sk-bench", llm_concurrency=16, cache_enabled=False,
                                    predict_deadline=600, prompts_dir=DEFAULT_PROMPTS_DIR, llm_fast_path=fast,
                                    cache_dir=Path(tmp) / f"cache-{len(rows)}")  # a ledger of its own
                rows.append((label, fast, _run(settings, args.tasks)))
    print(f"N={args.tasks} tasks per run, in-process, cache off; load average {load_average()}")
    print()
    print("| model | LLM_FAST_PATH | tasks answered | cost (USD) | unpriced calls |")
    print("| --- | --- | ---: | ---: | ---: |")
    for label, fast, (cost, unpriced, answered) in rows:
        print(f"| {label} | {fast} | {answered} | {cost:.9f} | {unpriced:.0f} |")


if __name__ == "__main__":
    main()

"""Plan benchmark: `plan`'s estimate against the bill of the real run, its speed, and what --batch-api saves.

For three label configs, 200 generated product reviews (1-12 sentences each) are planned, then
predicted for real against the test LLM server (which bills prompt tokens the way OpenAI counts
them, see testkit/llm_server.py), priced as openai/gpt-4o-mini from LiteLLM's cost map. Then the
same tasks go through --batch-api on a fresh cache. Finally, how long a plan takes for 2,000 tasks
rendered in full and for 20,000 tasks from a 1,000-task sample. Prints tables.

    python bench/plan.py [--tasks 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from common import REPO  # noqa: F401  (puts the repository on sys.path)

from llm_backend.core.config import parse_label_config
from llm_backend.engine.prompts import DEFAULT_PROMPTS_DIR
from llm_backend.models.client import load_litellm
from llm_backend.offline.plan import Planner
from llm_backend.offline.provider_batch import ProviderBatchRun
from llm_backend.offline.runs import predict_tasks
from llm_backend.services import build_services
from llm_backend.settings import Settings
from testkit.llm_server import FakeLLMServer

SENTENCES = [
    "The battery easily lasts two days, even with the screen at full brightness.",
    "Support never answered my e-mails, so I returned it after a week.",
    "It arrived a day early and the box was in perfect condition.",
    "The camera struggles in low light and the photos look washed out.",
    "For this price I expected better build quality; the buttons feel loose.",
    "My father, who is 82, found the menus confusing at first but likes it now.",
    "Charging is fast: half an hour gets it from 10% to 80%.",
    "I ordered it from Berlin and Anna at Acme Electronics sorted out the customs forms.",
    "I have used it daily since March and nothing has gone wrong.",
    "Setting it up took ten minutes, including the software update.",
]
CONFIGS = {
    "Choices (sentiment)": """<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">
<Choice value="Positive"/><Choice value="Negative"/><Choice value="Neutral"/></Choices></View>""",
    "Labels (NER, 4 labels)": """<View><Text name="text" value="$text"/><Labels name="ner" toName="text">
<Label value="Person"/><Label value="Organization"/><Label value="Location"/><Label value="Date"/></Labels></View>""",
    "7 controls": """<View><Text name="text" value="$text"/>
<Choices name="sentiment" toName="text"><Choice value="Positive"/><Choice value="Negative"/></Choices>
<Choices name="topics" toName="text" choice="multiple"><Choice value="Battery"/><Choice value="Support"/>
<Choice value="Camera"/></Choices><Labels name="ner" toName="text"><Label value="Person"/><Label value="Org"/></Labels>
<TextArea name="summary" toName="text"/><Rating name="quality" toName="text" maxRating="5"/>
<Number name="stars" toName="text" min="0" max="10"/>
<Taxonomy name="category" toName="text"><Choice value="Phones"><Choice value="Android"/></Choice></Taxonomy></View>""",
}
MODEL = "openai/gpt-4o-mini"


def reviews(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{"id": i, "data": {"text": " ".join(rng.choice(SENTENCES) for _ in range(rng.randint(1, 12)))
                               + f" (review {i})"}} for i in range(count)]


def settings(server: FakeLLMServer, cache_dir: Path) -> Settings:
    return Settings(llm_model=MODEL, llm_api_base=server.base_url, llm_api_key="sk-bench", llm_concurrency=16,
                    cache_dir=cache_dir, prompts_dir=DEFAULT_PROMPTS_DIR, llm_timeout=30)


def plan_seconds(server: FakeLLMServer, xml: str, tasks: list[dict[str, Any]], repeat: int, **options: Any
                 ) -> tuple[float, Any]:
    config = parse_label_config(xml)
    times, plan = [], None
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            services = build_services(settings(server, Path(tmp)))
            started = time.perf_counter()
            plan = Planner(services, config).plan(tasks, **options)
            times.append(time.perf_counter() - started)
    return statistics.median(times), plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    load_litellm()
    rows, batch_rows = [], []
    with FakeLLMServer() as server:
        tasks = reviews(args.tasks, seed=7)
        for name, xml in CONFIGS.items():
            seconds, plan = plan_seconds(server, xml, tasks, args.repeat)
            estimate = plan.models[0]
            with tempfile.TemporaryDirectory() as tmp:
                server.reset()
                services = build_services(settings(server, Path(tmp)))
                run = predict_tasks(services, parse_label_config(xml), tasks)
                billed = server.usage()
                cost = run.summary.usage.cost
            rows.append((name, estimate.prompt_tokens, billed["prompt_tokens"], estimate.completion_tokens,
                         billed["completion_tokens"], estimate.cost_usd, cost, seconds))
            with tempfile.TemporaryDirectory() as tmp:
                server.reset()
                services = build_services(settings(server, Path(tmp)))
                batch = ProviderBatchRun(services, parse_label_config(xml), None, poll_interval=0.01,
                                         on_status=lambda line: None)
                batch.run(tasks)
                report = batch.report
            batch_rows.append((name, estimate.batch_cost_usd, report.usage.cost, report.regular_cost, report.saved))
        big = reviews(20_000, seed=9)
        full_seconds, _ = plan_seconds(server, CONFIGS["Choices (sentiment)"], big[:2000], 1)
        sample_seconds, sampled = plan_seconds(server, CONFIGS["Choices (sentiment)"], big, 1, max_render=1000)
        _, exact = plan_seconds(server, CONFIGS["Choices (sentiment)"], big, 1, max_render=20_000)

    print(f"{args.tasks} generated reviews, {MODEL} prices (LiteLLM cost map), plan time: median of {args.repeat}")
    print()
    print("| config | plan: prompt tokens | billed | difference | plan: answer tokens | billed | plan: cost | "
          "run cost | plan time (s) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, planned, billed, answer, billed_answer, cost, run_cost, seconds in rows:
        print(f"| {name} | {planned:,.0f} | {billed:,} | {planned / billed - 1:+.1%} | {answer:,.0f} | "
              f"{billed_answer:,} | ${cost:.4f} | ${run_cost:.4f} | {seconds:.2f} |")
    print()
    print("| config | plan: batch cost | --batch-api run: cost | same tokens at regular prices | saved |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, planned, cost, regular, saved in batch_rows:
        print(f"| {name} | ${planned:.4f} | ${cost:.4f} | ${regular:.4f} | ${saved:.4f} |")
    print()
    low, high = sampled.models[0].prompt_tokens_interval
    truth = exact.models[0].prompt_tokens
    print(f"plan of 2,000 tasks rendered in full: {full_seconds:.1f} s; of 20,000 tasks from a 1,000-task sample: "
          f"{sample_seconds:.1f} s, prompt tokens {sampled.models[0].prompt_tokens:,.0f} "
          f"(95%: {low:,.0f}-{high:,.0f}; all 20,000 counted: {truth:,.0f})")


if __name__ == "__main__":
    main()

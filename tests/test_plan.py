"""`llm-backend plan`: the estimate against what the test server bills for the real run afterwards."""

from __future__ import annotations

import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from llm_backend.cli.main import main
from llm_backend.core.estimate import run_seconds, scaled_total
from testkit.llm_server import FakeLLMServer, Reply
from tests.conftest import interrupt_after_calls, map_price
from tests.test_cascade import CONFIG as CASCADE_CONFIG
from tests.test_cascade import ESCALATED, SMALL, scripted
from tests.test_offline_predict import cli_env

MINI = map_price("gpt-4o-mini")

SENTIMENT = Path(__file__).parent / "fixtures" / "offline" / "sentiment.xml"
SENTENCES = [
    "The battery easily lasts two days, even with the screen at full brightness.",
    "Support never answered my e-mails, so I returned it after a week.",
    "It arrived a day early and the box was in perfect condition.",
    "The camera struggles in low light and the photos look washed out.",
    "For this price I expected better build quality; the buttons feel loose.",
    "My father, who is 82, found the menus confusing at first but likes it now.",
    "Charging is fast: half an hour gets it from 10% to 80%.",
    "The speaker is tinny, although calls are perfectly clear.",
    "I have used it daily since March and nothing has gone wrong.",
    "Setting it up took ten minutes, including the software update.",
]


def reviews(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(SENTENCES) for _ in range(rng.randint(1, 12))) + f" [r{i}]" for i in range(count)]


def run_cli(args: list[str], env: dict[str, str]) -> Result:
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


def write_tasks(path: Path, tasks: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(task) + "\n" for task in tasks))
    return path


def plan_json(env: dict[str, str], *args: str) -> dict[str, Any]:
    result = run_cli(["plan", "--json", *args], env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_plan_prompt_tokens_are_within_ten_percent_of_the_bill_of_the_real_run(
    llm: FakeLLMServer, tmp_path: Path
) -> None:
    tasks = write_tasks(tmp_path / "tasks.jsonl", [{"text": text} for text in reviews(200)])
    llm.set_default(Reply(json={"sentiment": "Positive"}))
    env = cli_env(llm, tmp_path, LLM_MODEL="openai/gpt-4o-mini")
    plan = plan_json(env, "--config", str(SENTIMENT), "--tasks", str(tasks))
    model = plan["models"]["openai/gpt-4o-mini"]
    assert (plan["tasks"], plan["rendered"], model["tasks"], model["calls"], model["cached_tasks"]) == (
        200, 200, 200, 200, 0)
    assert llm.calls == 0  # planning calls no model

    result = run_cli(["predict", "--config", str(SENTIMENT), "--tasks", str(tasks), "--out",
                      str(tmp_path / "out.json")], env)
    assert result.exit_code == 0, result.output
    billed = llm.usage()["prompt_tokens"]
    assert abs(model["prompt_tokens"] - billed) <= 0.10 * billed, (model["prompt_tokens"], billed)
    # Priced from LiteLLM's map: gpt-4o-mini's regular and batch prices per token.
    expected = model["prompt_tokens"] * MINI["input"] + model["completion_tokens"] * MINI["output"]
    assert model["cost_usd"] == pytest.approx(expected, rel=1e-3)
    assert model["batch_cost_usd"] == pytest.approx(expected / 2, rel=1e-3)
    assert model["price_source"] == "LiteLLM cost map" and model["completion_source"] == "control types"
    print(f"\nplan {model['prompt_tokens']} prompt tokens vs {billed} billed by the server "
          f"({model['prompt_tokens'] / billed - 1:+.1%})")

    # Everything is cached now: nothing left to pay for.
    after = plan_json(env, "--config", str(SENTIMENT), "--tasks", str(tasks))["models"]["openai/gpt-4o-mini"]
    assert (after["cached_tasks"], after["calls"], after["prompt_tokens"], after["cost_usd"]) == (200, 0, 0, 0.0)
    assert after["completion_source"] == "cached answers"


def test_ctrl_c_stops_predict_without_writing_then_plan_counts_the_cached_tasks_and_the_rerun_pays_for_the_rest(
    llm: FakeLLMServer, tmp_path: Path
) -> None:
    """One interrupted `predict` (a process of its own: only Ctrl-C needs one) for `plan` and for the rerun."""
    tasks = write_tasks(tmp_path / "tasks.jsonl", [{"text": text} for text in reviews(200, seed=11)])
    llm.set_default(Reply(json={"sentiment": "Neutral"}, delay=0.02))
    env = cli_env(llm, tmp_path)
    out = tmp_path / "out.json"
    args = [sys.executable, "-m", "llm_backend", "predict", "--config", str(SENTIMENT), "--tasks", str(tasks),
            "--out", str(out), "--concurrency", "4"]
    returncode, stdout, stderr = interrupt_after_calls(args, env, llm, 60)
    assert returncode == 130, stdout + stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not out.exists()
    answered = llm.count(200)
    assert 60 <= answered < 200

    plan = plan_json(env, "--config", str(SENTIMENT), "--tasks", str(tasks))
    model = plan["models"]["openai/test-model"]
    assert model["cached_tasks"] == answered and model["calls"] == 200 - answered
    billed_so_far = llm.usage()["prompt_tokens"]
    whole = plan_json(cli_env(llm, tmp_path / "fresh"), "--config", str(SENTIMENT), "--tasks", str(tasks))
    assert model["prompt_tokens"] == pytest.approx(whole["models"]["openai/test-model"]["prompt_tokens"]
                                                   - billed_so_far, rel=0.10)
    assert model["cost_usd"] is None and "cost unknown" in run_cli(
        ["plan", "--config", str(SENTIMENT), "--tasks", str(tasks)], env).output  # no price: unknown, never $0

    # The rerun (in this process) pays only for the rest: what the first run paid for comes from the cache.
    rerun = run_cli(args[3:], env)
    assert rerun.exit_code == 0, rerun.output
    assert llm.count(200) == 200 and f"({answered} from the cache)" in rerun.stdout
    assert len(json.loads(out.read_text())) == 200


def test_a_sample_run_measures_answers_latency_and_accuracy_on_annotated_tasks(
    llm: FakeLLMServer, tmp_path: Path
) -> None:
    def annotated(text: str, label: str) -> dict[str, Any]:
        region = {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}
        return {"data": {"text": text}, "annotations": [{"result": [region]}]}

    texts = reviews(40, seed=3)
    gold = [annotated(text, "Positive") for text in texts[:10]]  # the server gets 8 of the 10 right
    tasks = write_tasks(tmp_path / "tasks.jsonl", [*gold, *({"text": text} for text in texts[10:])])
    llm.set_default(Reply(json={"sentiment": "Positive"}))
    for text in texts[:2]:
        llm.add_rule(text[-6:], Reply(json={"sentiment": "Negative"}))
    llm.latency = 0.1
    env = cli_env(llm, tmp_path)
    hint = run_cli(["plan", "--config", str(SENTIMENT), "--tasks", str(tasks)], env).output
    assert "10 tasks are annotated: --sample 10 measures each model's accuracy on them" in hint
    started = time.monotonic()
    plan = plan_json(env, "--config", str(SENTIMENT), "--tasks", str(tasks), "--sample", "10", "--concurrency", "5")
    elapsed = time.monotonic() - started

    assert llm.calls == 10 and plan["sample"]["tasks"] == 10 and plan["sample"]["annotated"] == 10
    assert plan["sample"]["accuracy"] == 0.8
    model = plan["models"]["openai/test-model"]
    assert model["measured"]["accuracy"] == 0.8 and model["measured"]["annotated"] == 10
    # A call's own time: at least the server's latency, and within the run that made it (10 calls at 5 at once:
    # their sum, 1 s and more, would not fit in a run that took about 0.2 s plus the command's own work).
    assert 0.1 <= model["measured"]["latency"] < elapsed
    assert model["cached_tasks"] == 10 and model["calls"] == 30 and model["completion_source"] == "cached answers"
    per_answer = llm.usage()["completion_tokens"] / 10
    assert model["completion_tokens"] == round(30 * per_answer)
    assert model["seconds"] == pytest.approx(math.ceil(30 / 5) * model["measured"]["latency"])
    assert model["seconds_basis"] == "concurrency"


def test_a_cascade_is_planned_per_step_with_the_escalation_rate_of_the_sample(
    llm: FakeLLMServer, tmp_path: Path
) -> None:
    (tmp_path / "config.xml").write_text(CASCADE_CONFIG)
    texts = list(SMALL) * 4  # 20 tasks, 5 distinct requests
    tasks = write_tasks(tmp_path / "tasks.jsonl", [{"text": text} for text in texts])
    llm.set_default(scripted)
    env = cli_env(llm, tmp_path, LLM_MODEL="openai/small", LLM_CASCADE="openai/small,openai/large",
                  CASCADE_MIN_SCORE="0.5")
    args = ["--config", str(tmp_path / "config.xml"), "--tasks", str(tasks)]

    blind = plan_json(env, *args)
    small, large = blind["models"]["openai/small"], blind["models"]["openai/large"]
    assert (small["step"], small["tasks"], small["calls"]) == (1, 20, 5)  # repeats are one request
    assert (large["step"], large["tasks"], large["calls"], large["cost_usd"]) == (2, None, None, None)
    assert large["seconds_basis"] == "unknown escalation rate"

    sampled = plan_json(env, *args, "--sample", "20")
    small, large = sampled["models"]["openai/small"], sampled["models"]["openai/large"]
    assert small["measured"]["escalation_rate"] == len(ESCALATED) / len(SMALL) == 0.6
    assert large["measured"]["escalation_rate"] is None  # the last step passes nothing on
    assert (large["tasks"], large["cached_tasks"], large["calls"]) == (12, 12, 0)  # all escalated once already
    # "broken" (4 of the 20 tasks) is never valid, so never cached: asked and repaired each time.
    assert small["measured"]["repairs_per_call"] == 4 / 8  # the 4 other requests were asked once each
    assert small["cached_tasks"] == 16 and small["calls"] == round(1 * (1 + 4 / 8))
    assert large["cost_usd"] is None and small["seconds_basis"] == "concurrency"


def test_prices_rate_limits_and_hourly_machines_come_from_the_routing_file(llm: FakeLLMServer, tmp_path: Path) -> None:
    # A model name of its own: a Router registers a deployment's price in LiteLLM's process-wide price map,
    # which would give every later test's "openai/test-model" a price.
    router = {"model_list": [
        {"model_name": "gpt", "litellm_params": {"model": "openai/plan-priced-model", "api_base": llm.base_url,
                                                 "api_key": "sk-test", "input_cost_per_token": 2e-06,
                                                 "output_cost_per_token": 8e-06, "rpm": 30}},
        {"model_name": "gpt", "litellm_params": {"model": "openai/plan-priced-model", "api_base": llm.base_url,
                                                 "api_key": "sk-test", "rpm": 30, "tpm": 100_000}},
        {"model_name": "local", "litellm_params": {"model": "hosted_vllm/test-model", "api_base": llm.base_url},
         "model_info": {"hourly_cost": 3.6}},
    ]}
    (tmp_path / "router.yaml").write_text(yaml.safe_dump(router))
    tasks = write_tasks(tmp_path / "tasks.jsonl", [{"text": text} for text in reviews(90)])
    env = cli_env(llm, tmp_path, LLM_ROUTER_CONFIG=str(tmp_path / "router.yaml"), LLM_MODEL="gpt", LLM_API_BASE="")
    gpt = plan_json(env, "--config", str(SENTIMENT), "--tasks", str(tasks))["models"]["gpt"]
    assert gpt["price_source"] == "routing file" and (gpt["rpm"], gpt["tpm"]) == (60, 100_000)
    assert gpt["cost_usd"] == pytest.approx(gpt["prompt_tokens"] * 2e-06 + gpt["completion_tokens"] * 8e-06,
                                            rel=1e-3)
    assert gpt["batch_cost_usd"] == pytest.approx(gpt["cost_usd"] / 2, rel=1e-3)  # no _batches price: half
    tpm_seconds = (gpt["prompt_tokens"] + gpt["completion_tokens"]) / 100_000 * 60
    assert tpm_seconds < 90  # so 90 calls at 60 a minute set the time
    assert (gpt["seconds"], gpt["seconds_basis"]) == (90.0, "rpm (latency unknown: at least)")

    llm.set_default(Reply(json={"sentiment": "Positive"}))
    llm.latency = 0.05
    local = plan_json({**env, "LLM_MODEL": "local"}, "--config", str(SENTIMENT), "--tasks", str(tasks),
                      "--sample", "8", "--concurrency", "4")["models"]["local"]
    assert local["price_source"] == "routing file" and local["seconds_basis"] == "concurrency"
    assert local["cost_usd"] == pytest.approx(3.6 * local["seconds"] / 3600)  # the machine's hours, not tokens


def test_a_large_file_is_planned_from_a_seeded_sample_with_an_interval(llm: FakeLLMServer, tmp_path: Path) -> None:
    tasks = write_tasks(tmp_path / "tasks.jsonl", [{"text": text} for text in reviews(600, seed=5)])
    env = cli_env(llm, tmp_path)
    args = ["--config", str(SENTIMENT), "--tasks", str(tasks)]
    exact = plan_json(env, *args)["models"]["openai/test-model"]
    sampled = plan_json(env, *args, "--max-render", "150")
    model = sampled["models"]["openai/test-model"]
    assert sampled["rendered"] == 150 and model["tasks"] == 600
    low, high = model["prompt_tokens_interval"]
    assert low < exact["prompt_tokens"] < high and high - low < 0.2 * exact["prompt_tokens"]
    assert plan_json(env, *args, "--max-render", "150") == sampled  # the same seed, the same sample
    text = run_cli(["plan", *args, "--max-render", "150"], env).output
    assert "prompts of a seeded sample of 150 rendered" in text and "(95%: " in text


def test_plan_needs_a_tasks_file_or_a_project(llm: FakeLLMServer, tmp_path: Path) -> None:
    result = run_cli(["plan", "--config", str(SENTIMENT)], cli_env(llm, tmp_path))
    assert result.exit_code == 2 and "give either --config and --tasks, or --project" in result.stderr


def test_scaled_totals_and_run_time_bounds() -> None:
    assert scaled_total([1.0, 2.0, 3.0], 3).value == 6.0  # the whole population: exact
    estimate = scaled_total([10.0, 12.0, 8.0, 10.0], 400)
    assert estimate.value == 4000.0 and estimate.low < 4000.0 < estimate.high
    assert run_seconds(100, 0, latency=2.0, concurrency=8, rpm=None, tpm=None).seconds == 13 * 2.0
    limited = run_seconds(100, 50_000, latency=0.1, concurrency=8, rpm=60, tpm=1_000_000)
    assert (limited.seconds, limited.basis) == (100.0, "rpm")
    blind = run_seconds(100, 50_000, latency=None, concurrency=8, rpm=None, tpm=10_000)
    assert blind.seconds == 300.0 and blind.basis == "tpm (latency unknown: at least)"
    assert run_seconds(100, 0, latency=None, concurrency=8, rpm=None, tpm=None).seconds is None


@pytest.mark.label_studio
def test_plan_for_a_label_studio_project_plans_what_label_project_would_send(
    label_studio: Any, llm: FakeLLMServer, tmp_path: Path
) -> None:
    from tests.test_label_project_e2e import ls_env

    texts = reviews(30, seed=21)
    project = label_studio.create_project("plan a project", SENTIMENT.read_text())
    task_ids = label_studio.import_tasks(project, [{"text": text} for text in texts])
    for task_id in task_ids[20:26]:  # six annotated tasks, among those without a prediction
        label_studio.create_annotation(task_id, [{"from_name": "sentiment", "to_name": "text", "type": "choices",
                                                  "value": {"choices": ["Positive"]}}])
    llm.set_default(Reply(json={"sentiment": "Positive"}))
    llm.add_rule(texts[25][-6:], Reply(json={"sentiment": "Negative"}))
    env = ls_env(llm, tmp_path, label_studio)
    first = run_cli(["label-project", "--project", str(project), "--limit", "10"], env)
    assert first.exit_code == 0, first.output

    blind = plan_json(env, "--project", str(project))
    model = blind["models"]["openai/test-model"]
    assert (blind["tasks"], model["calls"], model["cached_tasks"]) == (20, 20, 0)  # the 10 predicted are not sent
    calls_before = llm.calls
    sampled = plan_json(env, "--project", str(project), "--sample", "6")
    assert llm.calls == calls_before + 6 and sampled["sample"]["annotated"] == 6
    model = sampled["models"]["openai/test-model"]
    assert model["measured"]["accuracy"] == round(5 / 6, 4) and model["cached_tasks"] == 6 and model["calls"] == 14
    text = run_cli(["plan", "--project", str(project)], env).output
    assert "plan for 20 tasks" in text and "tasks 20, 6 with a cached answer; 14 calls" in text


def test_a_long_text_is_planned_as_the_parts_the_run_sends(llm: FakeLLMServer, tmp_path: Path) -> None:
    from testkit.documents import gazetteer_for, planted_document

    text, planted = planted_document(seed=41, chars=200_000, entities=150)
    llm.set_gazetteer(gazetteer_for(planted, cut_edges=True))
    llm.context_tokens = 8192
    config = tmp_path / "ner.xml"
    config.write_text('<View><Text name="text" value="$text"/><Labels name="ner" toName="text">'
                      '<Label value="Person"/><Label value="Organization"/><Label value="Location"/></Labels></View>')
    tasks = write_tasks(tmp_path / "tasks.jsonl", [{"text": text}])
    # A name LiteLLM's map gives 128,000 tokens; the setting (the server's window) wins.
    env = cli_env(llm, tmp_path, LLM_MODEL="openai/gpt-4o-mini", LLM_CONTEXT_TOKENS="8192")
    model = plan_json(env, "--config", str(config), "--tasks", str(tasks))["models"]["openai/gpt-4o-mini"]
    assert llm.calls == 0
    result = run_cli(["predict", "--config", str(config), "--tasks", str(tasks), "--out", str(tmp_path / "o.json")],
                     env)
    assert result.exit_code == 0, result.output
    usage = llm.usage()
    assert llm.count(400) == 0 and model["calls"] == llm.calls > 10  # every part counted, as the run sent them
    assert abs(model["prompt_tokens"] - usage["prompt_tokens"]) <= 0.10 * usage["prompt_tokens"], (
        model["prompt_tokens"], usage["prompt_tokens"])
    assert model["tasks"] == 1 and model["cost_usd"] == pytest.approx(
        model["prompt_tokens"] * MINI["input"] + model["completion_tokens"] * MINI["output"], rel=1e-3)
    print(f"\nplan {model['calls']} calls, {model['prompt_tokens']} prompt and {model['completion_tokens']} answer "
          f"tokens; the run: {llm.calls} calls, {usage['prompt_tokens']} and {usage['completion_tokens']}")


def test_plan_counts_the_samples_of_the_samples_signal(llm: FakeLLMServer, tmp_path: Path) -> None:
    tasks = write_tasks(tmp_path / "tasks.jsonl", [{"text": text} for text in reviews(40, seed=3)])
    plain = plan_json(cli_env(llm, tmp_path), "--config", str(SENTIMENT), "--tasks", str(tasks))
    sampled = plan_json(cli_env(llm, tmp_path, CONFIDENCE="samples", CONFIDENCE_SAMPLES="4"),
                        "--config", str(SENTIMENT), "--tasks", str(tasks))
    one, two = plain["models"]["openai/test-model"], sampled["models"]["openai/test-model"]
    assert two["calls"] == 2 * one["calls"] == 80  # the answer, and one call with n=4
    assert two["prompt_tokens"] == pytest.approx(2 * one["prompt_tokens"])
    assert two["completion_tokens"] == pytest.approx(5 * one["completion_tokens"])

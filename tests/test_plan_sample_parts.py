"""`plan --sample-parts N`: answer tokens of long texts measured on N real parts, not guessed, and the
provider's own count learned before the run; the plan against what the test server bills the run afterwards."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from llm_backend.cli.main import main
from llm_backend.core.answer_evidence import Measured, mean_interval, rates
from llm_backend.offline.part_sample import spread
from testkit.documents import gazetteer_for, planted_document
from testkit.llm_server import FakeLLMServer
from tests.conftest import map_price
from tests.test_offline_predict import cli_env

MINI = map_price("gpt-4o-mini")
NER = ('<View><Text name="text" value="$text"/><Labels name="ner" toName="text"><Label value="Person"/>'
       '<Label value="Organization"/><Label value="Location"/></Labels></View>')
MODEL = "openai/gpt-4o-mini"


def _files(tmp_path: Path, text: str) -> tuple[Path, Path]:
    config, tasks = tmp_path / "ner.xml", tmp_path / "tasks.jsonl"
    config.write_text(NER)
    tasks.write_text(json.dumps({"text": text}) + "\n")
    return config, tasks


def _plan(env: dict[str, str], config: Path, tasks: Path, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(main, ["plan", "--json", "--config", str(config), "--tasks", str(tasks), *args],
                                env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def _run(env: dict[str, str], config: Path, tasks: Path, llm: FakeLLMServer, tmp_path: Path) -> tuple[int, float]:
    """The run's calls and what the test server billed for them, at gpt-4o-mini's prices."""
    calls, usage = llm.calls, llm.usage()
    result = CliRunner().invoke(main, ["predict", "--config", str(config), "--tasks", str(tasks), "--out",
                                       str(tmp_path / "out.json")], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    after = llm.usage()
    cost = ((after["prompt_tokens"] - usage["prompt_tokens"]) * MINI["input"]
            + (after["completion_tokens"] - usage["completion_tokens"]) * MINI["output"])
    return llm.calls - calls, cost


def test_a_sparse_document_is_planned_from_sampled_parts_within_ten_percent_of_what_the_run_pays(
    llm: FakeLLMServer, tmp_path: Path
) -> None:
    # 40 entities in 200,000 characters: far fewer than the control types' guess of one per 150 characters.
    text, planted = planted_document(seed=5, chars=200_000, entities=40)
    llm.set_gazetteer(gazetteer_for(planted, cut_edges=True))
    llm.context_tokens = 8192
    config, tasks = _files(tmp_path, text)
    env = cli_env(llm, tmp_path, LLM_MODEL=MODEL, LLM_CONTEXT_TOKENS="8192")

    guessed = _plan(env, config, tasks)["models"][MODEL]
    assert llm.calls == 0 and guessed["completion_source"] == "control types"
    assert "guessed from the control types" in guessed["completion_basis"]

    plan = _plan(env, config, tasks, "--sample-parts", "4")
    sample, model = plan["part_sample"], plan["models"][MODEL]
    assert llm.calls == 4 and (sample["asked"], sample["answered"], sample["refused"], sample["failed"]) == (4, 4, 0, 0)
    assert model["completion_source"] == "sampled parts"
    assert "measured on 4 parts" in model["completion_basis"]
    low, high = model["completion_tokens_interval"]
    assert low <= model["completion_tokens"] <= high
    assert model["cost_usd_interval"][0] <= model["cost_usd"] <= model["cost_usd_interval"][1]

    calls, paid = _run(env, config, tasks, llm, tmp_path)
    assert model["calls"] == calls == guessed["calls"] - 4  # the sampled parts came from the cache
    assert abs(model["cost_usd"] - paid) <= 0.10 * paid, (model["cost_usd"], paid)
    print(f"\nplan ${model['cost_usd']:.5f} (sampled), ${guessed['cost_usd']:.5f} (guessed, before the sample's "
          f"4 parts); the run paid ${paid:.5f} for {calls} calls")


def test_a_provider_that_counts_more_is_learned_from_the_sample_and_the_parts_cut_as_the_run_cuts_them(
    llm: FakeLLMServer, tmp_path: Path
) -> None:
    text, planted = planted_document(seed=8, chars=150_000, entities=60)
    llm.set_gazetteer(gazetteer_for(planted, cut_edges=True))
    llm.context_tokens, llm.chars_per_token = 8192, 3.5  # another tokenizer: more tokens than ours
    config, tasks = _files(tmp_path, text)
    env = cli_env(llm, tmp_path, LLM_MODEL=MODEL, LLM_CONTEXT_TOKENS="8192")
    guessed = _plan(env, config, tasks)["models"][MODEL]
    plan = _plan(env, config, tasks, "--sample-parts", "3")
    model = plan["models"][MODEL]
    assert plan["part_sample"]["answered"] == 3 and plan["part_sample"]["bill_ratio"] > 1.1
    assert model["prompt_basis"].startswith("our count x 1.") and model["calls"] > guessed["calls"]

    calls, paid = _run(env, config, tasks, llm, tmp_path)
    assert abs(model["calls"] - calls) <= 2, (model["calls"], calls)  # the run cuts its first part by our count
    assert abs(model["cost_usd"] - paid) <= 0.10 * paid, (model["cost_usd"], paid)


def test_a_sampled_part_refused_as_too_long_teaches_the_window_and_the_sample_is_drawn_again(
    llm: FakeLLMServer, tmp_path: Path
) -> None:
    text, planted = planted_document(seed=9, chars=120_000, entities=50)
    llm.set_gazetteer(gazetteer_for(planted, cut_edges=True))
    llm.context_tokens, llm.chars_per_token = 4096, 3.5
    config, tasks = _files(tmp_path, text)
    # A setting larger than the provider's window: the plan's parts are refused until the error teaches it.
    env = cli_env(llm, tmp_path, LLM_MODEL=MODEL, LLM_CONTEXT_TOKENS="16384")
    guessed = _plan(env, config, tasks)["models"][MODEL]
    plan = _plan(env, config, tasks, "--sample-parts", "3")
    sample, model = plan["part_sample"], plan["models"][MODEL]
    assert sample["refused"] >= 1 and sample["answered"] == 3 and llm.count(400) == sample["refused"]
    assert "window 4,096 tokens" in sample["learned"][0]
    # Cut for a window a quarter the size, and counted by the provider's tokenizer: many more parts.
    assert model["calls"] + 3 > 3 * guessed["calls"], (model["calls"], guessed["calls"])
    result = CliRunner().invoke(main, ["plan", "--config", str(tmp_path / "ner.xml"), "--tasks", str(tasks),
                                       "--sample-parts", "3"], env=env, catch_exceptions=False)
    assert "part sample: 3 of 3 parts of the long texts answered for real" in result.output
    # Three more parts, not in the cache yet: the rate is now measured on the six.
    assert "measured on 6 parts (sampled parts)" in result.output


def test_no_part_answered_exits_1_and_says_why(llm: FakeLLMServer, tmp_path: Path) -> None:
    from testkit.llm_server import Reply

    text, _planted = planted_document(seed=3, chars=60_000, entities=10)
    llm.set_default(Reply(json={"wrong": "shape"}))  # invalid after the repair round, every time
    config, tasks = _files(tmp_path, text)
    env = cli_env(llm, tmp_path, LLM_MODEL=MODEL, LLM_CONTEXT_TOKENS="8192")
    result = CliRunner().invoke(main, ["plan", "--config", str(config), "--tasks", str(tasks), "--sample-parts",
                                       "2"], env=env, catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert "part sample: 0 of 2 parts" in result.output and "2 failed" in result.output
    assert "guessed from the control types" in result.output


def test_short_tasks_have_no_part_to_sample_and_plan_says_so(llm: FakeLLMServer, tmp_path: Path) -> None:
    config, tasks = _files(tmp_path, "Anna Berg met Tom in Oslo.")
    result = CliRunner().invoke(main, ["plan", "--config", str(config), "--tasks", str(tasks), "--sample-parts",
                                       "3"], env=cli_env(llm, tmp_path), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert llm.calls == 0 and "part sample: no part to ask (no task's text is split into parts" in result.output
    assert "tasks: guessed from the control types" in result.output


def test_rates_are_per_character_for_parts_and_per_call_otherwise() -> None:
    measured = [Measured("part", 1000, 10), Measured("part", 2000, 30), Measured("part", 500, 4),
                Measured("task", 300, 12), Measured("task", 900, 14)]
    found = rates(measured)
    part, task = found["part"], found["task"]
    assert part.per_character and part.mean == pytest.approx(statistics.fmean([0.01, 0.015, 0.008]))
    assert part.tokens(10_000) == pytest.approx(part.mean * 10_000) and part.calls == 3
    assert not task.per_character and task.tokens(10_000) == 13.0
    assert "answer tokens per character of text (95%: " in part.describe() and "measured on 3 parts" in part.describe()


def test_the_interval_is_students_t_and_absent_for_one_call() -> None:
    from scipy import stats

    values = [0.01, 0.015, 0.008, 0.02]
    _mean, low, high = mean_interval(values)
    expected = stats.t.interval(0.95, 3, loc=statistics.fmean(values), scale=stats.sem(values))
    assert (low, high) == pytest.approx((max(0.0, expected[0]), expected[1]))
    assert mean_interval([5.0]) == (5.0, None, None)
    assert mean_interval([2.0, 2.0]) == (2.0, 2.0, 2.0)


@pytest.mark.parametrize(("size", "count", "picked"), [
    (10, 3, [1, 5, 8]), (4, 4, [0, 1, 2, 3]), (3, 5, [0, 1, 2]), (5, 0, []), (57, 1, [28]),
])
def test_the_sample_is_spread_evenly_over_the_parts(size: int, count: int, picked: list[int]) -> None:
    assert spread(list(range(size)), count) == picked

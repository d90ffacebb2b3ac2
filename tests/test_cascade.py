"""LLM_CASCADE: crafted answers from the small model decide exactly which tasks the large model sees."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from llm_backend.core.config import parse_label_config
from llm_backend.core.usage import Usage
from llm_backend.engine.cascade import Cascade
from llm_backend.engine.predictor import PredictionJob
from llm_backend.errors import SettingsError
from llm_backend.services import build_services
from llm_backend.settings import Settings, load_settings
from llm_backend.web.app import create_app
from testkit.llm_server import FakeLLMServer, Reply

CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single"><Choice value="Positive"/><Choice value="Negative"/></Choices>
  <Labels name="ner" toName="text"><Label value="Person"/><Label value="Organization"/></Labels>
</View>"""
CONTEXT_ERROR = "This model's maximum context length is 4096 tokens. However, your messages resulted in 5000 tokens."


def tokens(content: str, logprob: float) -> list[dict[str, Any]]:
    """Word-ish tokens that spell `content`, every one with the same log-probability."""
    return [{"token": piece, "logprob": logprob} for piece in re.findall(r"\w+|\s+|[^\w\s]+", content)]


def confident(answer: dict[str, Any], logprob: float = -0.001) -> Reply:
    content = json.dumps(answer)
    return Reply(content=content, logprobs=tokens(content, logprob))


def person(name: str, sentiment: str = "Positive") -> dict[str, Any]:
    return {"sentiment": sentiment, "ner": [{"text": name, "label": "Person"}]}


# What the small model answers, by the task text it is asked about; the large model always answers well.
SMALL = {
    "good: Alice met Bob.": confident(person("Alice")),
    "doubtful: Carol met Dan.": confident(person("Carol"), logprob=-3.0),  # score ~e^-3, under 0.5
    "broken: Erin met Frank.": Reply(content="I would say it is positive, with Erin in it."),  # never valid JSON
    "invented: Gina met Hank.": confident(person("Zoe")),  # a quote that is not in the text
    "quiet: Ivan met Judy.": Reply(json=person("Ivan")),  # no logprobs: nothing says it is doubtful
}
ESCALATED = {"doubtful: Carol met Dan.": "low_score", "broken: Erin met Frank.": "invalid",
             "invented: Gina met Hank.": "unaligned"}


def text_of(body: dict[str, Any]) -> str:
    return json.dumps(body.get("messages"))


def scripted(body: dict[str, Any]) -> Reply:
    """The test server's answer: by model (LiteLLM sends `small` for openai/small) and task text."""
    task = next((key for key in SMALL if key in text_of(body)), None)
    if body.get("model") == "small" and task is not None:
        return SMALL[task]
    name = task.split()[1] if task else "Nobody"
    return confident(person(name, "Negative"))


def asked(server: FakeLLMServer, model: str) -> list[str]:
    """The task texts `model` was asked about, one entry per call."""
    return sorted(key for request in server.requests if request.get("model") == model
                  for key in SMALL if key in text_of(request))


@pytest.fixture
def cascade(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"llm_model": "openai/small", "llm_cascade": "openai/small,openai/large",
                                  "cascade_min_score": 0.5, "llm_retry_max_wait": 0.1}
        return make_settings(**{**values, **overrides})

    return make


def jobs(texts: list[str], **fields: Any) -> list[PredictionJob]:
    config = parse_label_config(CONFIG)
    return [PredictionJob(config, None, {"id": i, "data": {"text": text}}, **fields) for i, text in enumerate(texts)]


def test_the_cascade_escalates_exactly_the_doubtful_tasks(cascade: Callable[..., Settings],
                                                          llm: FakeLLMServer) -> None:
    llm.set_default(scripted)
    backend = build_services(cascade())
    assert isinstance(backend.predictor, Cascade)
    outcomes, summary = backend.runner.run(jobs(list(SMALL)), 60)

    assert asked(llm, "large") == sorted(ESCALATED)  # and no other task
    assert asked(llm, "small") == sorted([*SMALL, "broken: Erin met Frank."])  # the repair round re-asks once
    by_text = dict(zip(SMALL, outcomes, strict=True))
    for text, outcome in by_text.items():
        assert outcome.status == "ok" and outcome.regions, text
        assert outcome.model == ("openai/large" if text in ESCALATED else "openai/small")
        assert [step.escalated for step in outcome.cascade] == (
            [ESCALATED[text], None] if text in ESCALATED else [None])
        assert [step.used for step in outcome.cascade] == ([False, True] if text in ESCALATED else [True])
        assert outcome.usage.calls == sum(step.usage.calls for step in outcome.cascade)
    assert by_text["broken: Erin met Frank."].usage.calls == 3
    assert by_text["invented: Gina met Hank."].unaligned == 0  # the used answer is the large model's
    assert by_text["invented: Gina met Hank."].cascade[0].regions is not None  # the small one's, kept apart
    assert summary.usage.calls == llm.calls == 9 and summary.usage.retries == 0

    metrics = backend.metrics.render().decode()
    assert 'llm_backend_cascade_answered_total{model="openai/small",step="1"} 2.0' in metrics
    assert 'llm_backend_cascade_answered_total{model="openai/large",step="2"} 3.0' in metrics
    for reason in ("low_score", "invalid", "unaligned"):
        assert f'llm_backend_cascade_escalated_total{{model="openai/small",reason="{reason}",step="1"}} 1.0' in metrics
    assert 'llm_backend_tasks_total{status="ok"} 5.0' in metrics  # one task counted once, however many steps

    # A re-run escalates the same tasks again from the cache; only an invalid answer is never cached.
    again, _ = build_services(cascade()).runner.run(jobs(list(SMALL)), 60)
    assert [o.model for o in again] == [o.model for o in outcomes]
    assert all(o.status == "cached" for o in again)
    assert [o.usage.calls for o in again] == [0, 0, 2, 0, 0] and llm.calls == 11


def test_without_a_min_score_low_scores_are_not_escalated(cascade: Callable[..., Settings],
                                                          llm: FakeLLMServer) -> None:
    llm.set_default(scripted)
    outcomes, _ = build_services(cascade(cascade_min_score=None)).runner.run(jobs(list(SMALL)), 60)
    assert asked(llm, "large") == sorted(set(ESCALATED) - {"doubtful: Carol met Dan."})
    assert outcomes[1].model == "openai/small" and outcomes[1].score is not None and outcomes[1].score < 0.5


def test_a_model_error_escalates_and_an_unreadable_task_does_not(cascade: Callable[..., Settings],
                                                                 llm: FakeLLMServer) -> None:
    llm.add_rule("too long for small", Reply(status=400, error_message=CONTEXT_ERROR), times=1)
    llm.set_default(scripted)
    backend = build_services(cascade(max_task_chars=60))
    [long_task, unreadable] = backend.runner.run(jobs(["too long for small: Kim met Lee.", "x" * 61]), 60)[0]
    assert long_task.status == "ok" and long_task.model == "openai/large"
    assert [s.escalated for s in long_task.cascade] == ["error", None]
    assert long_task.cascade[0].error and "context length" in long_task.cascade[0].error
    # The next model would read the same input: no call, no escalation.
    assert unreadable.status == "failed" and unreadable.error_code == "task_error"
    assert len(unreadable.cascade) == 1 and unreadable.usage.calls == 0
    assert llm.calls == 2


def test_when_the_last_model_fails_the_earlier_valid_answer_is_used(cascade: Callable[..., Settings],
                                                                     llm: FakeLLMServer) -> None:
    def small_or_down(body: dict[str, Any]) -> Reply:
        return scripted(body) if body.get("model") == "small" else Reply(status=503)

    llm.set_default(small_or_down)
    [outcome] = build_services(cascade(llm_max_retries=1)).runner.run(jobs(["doubtful: Carol met Dan."]), 60)[0]
    assert outcome.status == "ok" and outcome.model == "openai/small" and outcome.regions
    assert [(s.model, s.status, s.escalated, s.used) for s in outcome.cascade] == [
        ("openai/small", "ok", "low_score", True), ("openai/large", "failed", None, False)]
    assert outcome.usage.calls == 3 and outcome.usage.retries == 1  # one retry of the large model


def test_a_project_that_names_its_model_skips_the_cascade(cascade: Callable[..., Settings],
                                                          llm: FakeLLMServer) -> None:
    llm.set_default(scripted)
    client = create_app(cascade()).test_client()
    setup = {"schema": CONFIG}
    cascaded = client.post("/setup", json={**setup, "project": "1"}).get_json()["model_version"]
    direct = client.post("/setup", json={**setup, "project": "2",
                                         "extra_params": {"model": "openai/large"}}).get_json()["model_version"]
    assert cascaded.startswith("small-large-") and direct.startswith("large-")
    body = {"label_config": CONFIG, "tasks": [{"data": {"text": "good: Alice met Bob."}}]}
    assert client.post("/predict", json={**body, "project": "2"}).get_json()["model_version"] == direct
    assert asked(llm, "large") == ["good: Alice met Bob."] and asked(llm, "small") == []
    client.post("/predict", json={**body, "project": "1"})
    assert asked(llm, "small") == ["good: Alice met Bob."]


def test_the_cascade_settings_are_part_of_model_version(cascade: Callable[..., Settings]) -> None:
    config = parse_label_config(CONFIG)

    def version(**overrides: Any) -> str:
        return build_services(cascade(**overrides)).predictor.model_version(config, None)

    assert version() != version(cascade_min_score=0.6) != version(llm_cascade="openai/small,openai/huge")
    assert version() == version()


def test_a_local_first_cascade_through_the_router(make_settings: Callable[..., Settings], llm: FakeLLMServer,
                                                  tmp_path: Path) -> None:
    with FakeLLMServer() as hosted:
        path = tmp_path / "router.yaml"
        path.write_text(yaml.safe_dump({"model_list": [
            {"model_name": "local", "litellm_params": {"model": "hosted_vllm/small", "api_base": llm.base_url}},
            {"model_name": "hosted", "litellm_params": {"model": "openai/large", "api_base": hosted.base_url,
                                                        "api_key": "sk-hosted-test"}},
        ]}))
        llm.set_default(scripted)
        hosted.set_default(scripted)
        settings = make_settings(llm_model="local", llm_router_config=path, llm_api_base=None,
                                 llm_cascade="local,hosted", cascade_min_score=0.5)
        outcomes, _ = build_services(settings).runner.run(jobs(list(SMALL)), 60)
        assert asked(hosted, "large") == sorted(ESCALATED)
        assert [o.model for o in outcomes] == ["hosted" if text in ESCALATED else "local" for text in SMALL]


@pytest.mark.parametrize(("overrides", "problem"), [
    ({"llm_cascade": "local"}, "LLM_CASCADE: Value error, must name at least two different models"),
    ({"llm_cascade": "local,local"}, "must name at least two different models"),
    ({"cascade_min_score": "1.5"}, "CASCADE_MIN_SCORE"),
])
def test_cascade_settings_are_validated(overrides: dict[str, Any], problem: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(problem)):
        load_settings(**overrides)
    assert load_settings(llm_cascade=" a , b ", cascade_min_score="").cascade_models == ("a", "b")


def test_usage_sums_per_step_and_keeps_an_unknown_cost_unknown() -> None:
    step = Usage(calls=3, retries=2, prompt_tokens=10, cost=None)
    assert Usage.total([step, step]) == Usage(calls=6, retries=4, prompt_tokens=20, cost=None)
    assert (Usage(calls=1, cost=0.5) + Usage(calls=1, cost=0.25)).cost == 0.75
    assert (Usage(calls=1, cost=0.5) + Usage()).cost == 0.5  # a cached answer costs a known 0
    assert (Usage(calls=1, cost=0.5) + Usage(calls=1, cost=None)).cost is None  # never a silent partial sum


def test_eval_reports_accuracy_and_cost_per_cascade_step(make_settings: Any, llm: FakeLLMServer) -> None:
    from llm_backend.core.config import parse_label_config
    from llm_backend.offline.report import render_text
    from llm_backend.offline.runs import evaluate_tasks
    from llm_backend.services import build_services
    from tests.conftest import CHOICES_CONFIG

    gold = {"good one": "Positive", "good two": "Negative", "hard one": "Neutral", "hard two": "Positive"}

    def model(body: dict[str, Any]) -> Reply:
        text = next(t for t in gold if t in body["messages"][1]["content"])
        if body["model"] == "small" and text.startswith("hard"):
            return Reply(json={"sentiment": "???"})  # invalid even after the repair: escalated
        return Reply(json={"sentiment": gold[text]})

    llm.set_default(model)
    settings = make_settings(llm_model="openai/small", llm_cascade="openai/small,openai/large")
    tasks = [{"id": i, "data": {"text": text}, "annotations": [{"result": [
        {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]}]}
        for i, (text, label) in enumerate(gold.items())]
    report, _run = evaluate_tasks(build_services(settings), parse_label_config(CHOICES_CONFIG), tasks)
    small, large = report.cascade
    assert (small["model"], small["reached"], small["answered"], small["escalated"]) == \
        ("openai/small", 4, 2, {"invalid": 2})
    assert small["accuracy_alone"] == 0.5 and small["accuracy_answered"] == 1.0 and small["calls"] == 6
    assert (large["model"], large["reached"], large["answered"], large["accuracy_alone"], large["calls"]) == \
        ("openai/large", 2, 2, 1.0, 2)
    assert report.controls[0].headline == 1.0
    assert "cascade (accuracy" in render_text(report)


def test_partial_cut_off_and_refused_answers_go_to_the_next_model(cascade: Callable[..., Settings],
                                                                 llm: FakeLLMServer) -> None:
    small = {"partial: Kim met Lee.": Reply(json={"sentiment": "Mixed", "ner": [{"text": "Kim", "label": "Person"}]}),
             "refused: Mo met Ned.": Reply(style="refusal"), "cut: Ola met Pat.": Reply(style="cut_off")}

    def answer(body: dict[str, Any]) -> Reply:
        task = next(key for key in small if key in text_of(body))
        return small[task] if body.get("model") == "small" else Reply(json=person(task.split()[1]))

    llm.set_default(answer)
    backend = build_services(cascade())
    outcomes, _summary = backend.runner.run(jobs(list(small)), 60)
    for text, outcome in zip(small, outcomes, strict=True):
        assert [step.escalated for step in outcome.cascade] == ["invalid", None], text
        assert outcome.model == "openai/large" and outcome.error is None
        assert {region["from_name"] for region in outcome.regions or []} == {"sentiment", "ner"}
    assert outcomes[0].cascade[0].error.startswith("sentiment left out: ")  # the small model's partial answer

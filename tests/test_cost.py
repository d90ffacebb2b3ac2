"""Cost where it matters: per-project tokens and cost in /metrics, the batch summary line, and prices."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llm_backend.core.config import parse_label_config
from llm_backend.engine.predictor import PredictionJob
from llm_backend.models.client import load_litellm
from llm_backend.models.pricing import Price, Pricing, price_from
from llm_backend.models.router import Routing, load_routing, parse_router_config
from llm_backend.services import build_services
from llm_backend.settings import Settings
from testkit.llm_server import FakeLLMServer, Reply
from tests.conftest import CHOICES_CONFIG, map_price

MINI = map_price("gpt-4o-mini")


def metric(text: str, name: str, **labels: str) -> float | None:
    shown = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    match = re.search(rf"^{name}{{{re.escape(shown)}}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def predict(client: Any, project: str, texts: list[str]) -> None:
    body = {"tasks": [{"id": i, "data": {"text": text}} for i, text in enumerate(texts)], "project": project,
            "label_config": CHOICES_CONFIG}
    assert client.post("/predict", json=body).status_code == 200


def test_metrics_show_tokens_and_cost_per_project_and_unknown_prices_as_unpriced_calls(
    make_client: Callable[..., Any], llm: FakeLLMServer
) -> None:
    llm.set_default(Reply(json={"sentiment": "Positive"}, usage={"prompt_tokens": 100, "completion_tokens": 10}))
    priced = make_client(llm_model="openai/gpt-4o-mini")
    predict(priced, "12.1700000000", ["a", "b", "c"])
    predict(priced, "15.1700000000", ["d"])
    text = priced.get("/metrics").get_data(as_text=True)
    assert metric(text, "llm_backend_project_tokens_total", project="12", kind="prompt") == 300
    assert metric(text, "llm_backend_project_tokens_total", project="12", kind="completion") == 30
    assert metric(text, "llm_backend_project_cost_usd_total", project="12") == pytest.approx(
        3 * (100 * MINI["input"] + 10 * MINI["output"]))
    assert metric(text, "llm_backend_project_cost_usd_total", project="15") == pytest.approx(
        100 * MINI["input"] + 10 * MINI["output"])
    assert metric(text, "llm_backend_project_unpriced_calls_total", project="12") is None

    unpriced = make_client()  # openai/test-model: LiteLLM has no price for it
    predict(unpriced, "12.1700000000", ["e", "f"])
    text = unpriced.get("/metrics").get_data(as_text=True)
    assert metric(text, "llm_backend_project_unpriced_calls_total", project="12") == 2
    assert metric(text, "llm_backend_project_cost_usd_total", project="12") is None  # unknown, not $0
    assert metric(text, "llm_backend_project_tokens_total", project="12", kind="prompt") == 200


def test_the_batch_summary_line_names_the_project_and_its_cost(
    make_settings: Callable[..., Settings], llm: FakeLLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    llm.set_default(Reply(json={"sentiment": "Negative"}, usage={"prompt_tokens": 50, "completion_tokens": 5}))
    config = parse_label_config(CHOICES_CONFIG)
    mini = f"${2 * (50 * MINI['input'] + 5 * MINI['output']):.6f}"
    for model, cost in (("openai/gpt-4o-mini", mini), ("openai/test-model", "unknown")):
        services = build_services(make_settings(llm_model=model))
        jobs = [PredictionJob(config, "7", {"id": i, "data": {"text": f"{model} {i}"}}) for i in range(2)]
        with caplog.at_level(logging.INFO, logger="llm_backend"):
            services.runner.run(jobs, 30)
        [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("predict:")][-1:]
        assert line.startswith("predict: project 7: 2 tasks in ")
        assert f"tokens=100+10 cost={cost}" in line


def router(text: str) -> Routing:
    config = parse_router_config(Path("router.yaml"), text)
    return Routing(config, config.model_names)


def test_prices_come_from_the_routing_file_then_litellm_and_are_otherwise_unknown(
    make_settings: Callable[..., Settings]
) -> None:
    routing = router("""
model_list:
  - {model_name: own, litellm_params: {model: openai/x, input_cost_per_token: 1.0e-6, output_cost_per_token: 3.0e-6,
                                       input_cost_per_token_batches: 4.0e-7}}
  - {model_name: free, litellm_params: {model: hosted_vllm/q, input_cost_per_token: 0, output_cost_per_token: 0}}
  - {model_name: mini, litellm_params: {model: openai/gpt-4o-mini, rpm: 100, tpm: 5000}, model_info: {rpm: 1}}
  - {model_name: mini, litellm_params: {model: openai/gpt-4o-mini}, rpm: 50}
  - {model_name: gpu, litellm_params: {model: hosted_vllm/q}, model_info: {hourly_cost: 2.5}}
  - {model_name: gpu, litellm_params: {model: hosted_vllm/q}, model_info: {hourly_cost: 1.5}}
  - {model_name: mystery, litellm_params: {model: openai/some-private-model}}
""")
    pricing = Pricing(make_settings(), routing)
    own = pricing.price("own")
    assert (own.input, own.output, own.batch_input, own.batch_output, own.source) == (
        1e-6, 3e-6, 4e-7, 1.5e-6, "routing file")  # no output batch price given: half the regular one
    assert own.cost(1000, 100) == pytest.approx(1000 * 1e-6 + 100 * 3e-6)
    assert own.cost(1000, 100, batch=True) == pytest.approx(1000 * 4e-7 + 100 * 1.5e-6)
    assert pricing.price("free").cost(10_000, 1000) == 0.0  # stated free is free
    mini = pricing.price("mini")
    assert (mini.input, mini.batch_input, mini.source) == (MINI["input"], MINI["batch_input"], "LiteLLM cost map")
    assert (pricing.limits("mini").rpm, pricing.limits("mini").tpm) == (150, 5000)
    assert pricing.price("gpu").hourly == 4.0 and pricing.price("gpu").cost(10, 10) is None
    assert pricing.price("mystery") == Price() and pricing.price("mystery").cost(10, 10) is None
    assert price_from({}, "x") is None


def test_prompt_tokens_count_the_schema_where_the_provider_bills_it(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    services = build_services(settings)
    config = parse_label_config(CHOICES_CONFIG)
    job = PredictionJob(config, None, {"id": 1, "data": {"text": "The battery died after a week."}})
    request = services.predictor.prepare(job).request  # type: ignore[attr-defined]
    pricing = Pricing(settings, load_routing(settings))
    litellm = load_litellm()
    messages_only = litellm.token_counter(model="openai/test-model", messages=list(request.messages))
    schema = request.response_format["json_schema"]["schema"]
    schema_tokens = litellm.token_counter(model="openai/test-model", text=json.dumps(schema))
    assert pricing.prompt_tokens(request) == messages_only + schema_tokens  # OpenAI adds it to the prompt
    vllm = Pricing(make_settings(llm_model="hosted_vllm/test-model"), load_routing(settings))
    assert vllm.prompt_tokens(request, "hosted_vllm/test-model") == messages_only  # guided decoding: not billed

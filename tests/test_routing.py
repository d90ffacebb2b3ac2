"""LLM_ROUTER_CONFIG: LiteLLM's Router over several test LLM servers (real HTTP), and per-project models."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from llm_backend.core.config import parse_label_config
from llm_backend.engine.predictor import PredictionJob
from llm_backend.errors import SettingsError, TransientLLMError
from llm_backend.models.router import Routing, load_routing, parse_extra_params
from llm_backend.services import build_services
from llm_backend.settings import Settings
from llm_backend.web.app import create_app
from testkit.llm_server import FakeLLMServer, Reply
from tests.conftest import CHOICES_CONFIG, FIXTURES, REPO, BackendProcess

CONTEXT_ERROR = "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens."


@dataclass
class Fleet:
    a: FakeLLMServer
    b: FakeLLMServer
    big: FakeLLMServer

    @property
    def all(self) -> tuple[FakeLLMServer, ...]:
        return self.a, self.b, self.big


@pytest.fixture(scope="module")
def servers() -> Iterator[Fleet]:
    fleet = Fleet(FakeLLMServer().start(), FakeLLMServer().start(), FakeLLMServer().start())
    yield fleet
    for server in fleet.all:
        server.stop()


@pytest.fixture
def fleet(servers: Fleet, monkeypatch: pytest.MonkeyPatch) -> Fleet:
    for server in servers.all:
        server.reset()
        server.latency = 0.0
    # For tests/fixtures/router.yaml, which reads its addresses and key from the environment.
    monkeypatch.setenv("ROUTE_A_BASE", servers.a.base_url)
    monkeypatch.setenv("ROUTE_B_BASE", servers.b.base_url)
    monkeypatch.setenv("ROUTE_BIG_BASE", servers.big.base_url)
    monkeypatch.setenv("ROUTE_API_KEY", "sk-route-test-key")
    return servers


def route_file(path: Path, deployments: list[tuple[str, FakeLLMServer]], **router_settings: Any) -> Path:
    model_list = [
        {"model_name": name, "litellm_params": {"model": f"openai/route-{name}", "api_base": server.base_url,
                                                "api_key": "sk-route-test-key"}}
        for name, server in deployments
    ]
    path.write_text(yaml.safe_dump({"model_list": model_list, "router_settings": router_settings}))
    return path


@pytest.fixture
def routed(make_settings: Callable[..., Settings], tmp_path: Path) -> Callable[..., Settings]:
    """Settings with a routing file: the fixture file, or one written from (model_name, server) pairs."""

    def make(deployments: list[tuple[str, FakeLLMServer]] | None = None, router_settings: dict[str, Any] | None = None,
             **overrides: Any) -> Settings:
        path = FIXTURES / "router.yaml" if deployments is None else route_file(
            tmp_path / "router.yaml", deployments, **(router_settings or {}))
        values: dict[str, Any] = {"llm_model": "local", "llm_router_config": path, "llm_api_base": None,
                                  "llm_retry_max_wait": 0.1}
        return make_settings(**{**values, **overrides})

    return make


def tasks(count: int, tag: str) -> list[dict[str, Any]]:
    return [{"id": i, "data": {"text": f"{tag}-{i:03d} is a fine day"}} for i in range(count)]


def asked(server: FakeLLMServer, marker: str) -> int:
    """Requests of one task (by its text marker) that reached this server."""
    return sum(marker in json.dumps(request["messages"]) for request in server.requests)


def predict(settings: Settings, body_tasks: list[dict[str, Any]], **extra: Any) -> list[dict[str, Any]]:
    client = create_app(settings).test_client()
    response = client.post("/predict", json={"label_config": CHOICES_CONFIG, "tasks": body_tasks, **extra})
    assert response.status_code == 200, response.get_data(as_text=True)
    results: list[dict[str, Any]] = response.get_json()["results"]
    return results


# ------------------------------------------------------------------ the routing file


@pytest.mark.parametrize(("text", "problem"), [
    ("model_list: [", "not valid YAML"),
    ("- a\n- b\n", "must be a YAML mapping"),
    ("model_list: []\n", "model_list must be a non-empty list"),
    ("model_list:\n  - model_name: local\n", "litellm_params.model"),
    ("model_list:\n  - model_name: local\n    litellm_params: {model: openai/x}\nlitellm_settings: {}\n",
     "unknown top-level key(s) ['litellm_settings']"),
    ("model_list:\n  - model_name: local\n    litellm_params: {model: openai/x, max_retries: 3}\n",
     "litellm_params.max_retries must be 0 or absent"),
    ("model_list:\n  - model_name: local\n    litellm_params: {model: openai/x}\nrouter_settings: {num_retries: 2}\n",
     "num_retries must be 0 or absent"),
    ("model_list:\n  - model_name: local\n    litellm_params: {model: openai/x}\nrouter_settings: {redis_host: r}\n",
     "unsupported key(s) ['redis_host']"),
    ("model_list:\n  - model_name: local\n    litellm_params: {model: openai/x}\n"
     "router_settings: {routing_strategy: fastest}\n", "routing_strategy 'fastest' is not one of"),
    ("model_list:\n  - model_name: local\n    litellm_params: {model: openai/x}\n"
     "router_settings: {fallbacks: [{local: [gpt]}]}\n", "fallbacks names 'gpt'"),
])
def test_a_bad_routing_file_stops_the_start_naming_the_variable_and_the_problem(
    make_settings: Callable[..., Settings], tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "router.yaml"
    path.write_text(text)
    with pytest.raises(SettingsError) as caught:
        build_services(make_settings(llm_model="local", llm_router_config=path))
    assert "LLM_ROUTER_CONFIG" in caught.value.message and problem in caught.value.message


def test_llm_model_and_cascade_must_be_model_names_of_the_file(
    make_settings: Callable[..., Settings], fleet: Fleet
) -> None:
    path = FIXTURES / "router.yaml"
    with pytest.raises(SettingsError, match=r"LLM_MODEL: 'openai/test-model' is not a model_name .* local, big"):
        load_routing(make_settings(llm_router_config=path))
    with pytest.raises(SettingsError, match=r"LLM_CASCADE: 'gpt' not a model_name"):
        load_routing(make_settings(llm_model="local", llm_router_config=path, llm_cascade="local,gpt"))
    routing = load_routing(make_settings(llm_model="local", llm_router_config=path))
    assert routing.names == ("local", "big")
    assert routing.routes == {"local": ("openai/route-local", "openai/route-local"), "big": ("openai/route-big",)}


def test_without_a_routing_file_llm_model_alone_is_the_only_known_model(
    make_settings: Callable[..., Settings],
) -> None:
    routing = load_routing(make_settings())
    assert routing == Routing(None, ("openai/test-model",))
    assert routing.client(make_settings()) is None


def test_create_app_and_setup_stay_fast_with_a_routing_file(fleet: Fleet, tmp_path: Path) -> None:
    """No LiteLLM import at build time or in /setup, which validates model names from the YAML alone."""
    code = f"""
import json, sys
from llm_backend.web.app import create_app
from llm_backend.settings import Settings
c = create_app(Settings(cache_enabled=False, llm_model="local", llm_router_config={str(FIXTURES / "router.yaml")!r},
                        prompts_dir={str(tmp_path / "prompts")!r})).test_client()
body = {{"schema": {CHOICES_CONFIG!r}, "project": "7.1"}}
ok = c.post("/setup", json={{**body, "extra_params": '{{"model": "big"}}'}})
bad = c.post("/setup", json={{**body, "extra_params": {{"model": "gpt-5"}}}})
print(json.dumps([ok.status_code, bad.status_code, bad.get_json(), "litellm" in sys.modules]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    ok, bad, error, imported = json.loads(out.stdout.strip().splitlines()[-1])
    assert (ok, bad, imported) == (200, 400, False), out.stderr
    assert error["error"]["message"] == ("extra_params.model 'gpt-5' is not a model this backend knows; "
                                         "known models: local, big (from LLM_ROUTER_CONFIG)")


# ------------------------------------------------------------------ load balancing, cooldowns, fallbacks


def test_load_spreads_across_the_deployments_of_a_model(routed: Callable[..., Settings], fleet: Fleet) -> None:
    settings = routed([("local", fleet.a), ("local", fleet.b)])
    results = predict(settings, tasks(40, "spread"))
    assert all("result" in item for item in results)
    assert fleet.a.calls + fleet.b.calls == 40
    # simple-shuffle is random: 40 tasks put fewer than 5 on one side with probability ~1e-7.
    assert fleet.a.calls >= 5 and fleet.b.calls >= 5
    assert all(request["model"] == "route-local" and request.get("_path") == "/v1/chat/completions"
               for request in fleet.a.requests + fleet.b.requests)


def test_a_failing_deployment_is_cooled_down_and_its_traffic_moves(
    routed: Callable[..., Settings], fleet: Fleet
) -> None:
    fleet.a.set_default(Reply(status=500, error_message="GPU fell off the bus"))
    settings = routed([("local", fleet.a), ("local", fleet.b)], {"cooldown_time": 60}, llm_max_retries=2)
    backend = build_services(settings)
    config = parse_label_config(CHOICES_CONFIG)
    first = backend.runner.run([PredictionJob(config, None, task) for task in tasks(16, "cool")], 60)[0]
    assert [o.status for o in first] == ["ok"] * 16
    failed_on_a = fleet.a.calls
    assert fleet.a.count(500) == failed_on_a
    # At most one failed call per task: after its first failure `a` is cooled down, the retry goes to `b`.
    assert all(asked(fleet.a, f"cool-{i:03d}") <= 1 for i in range(16))
    assert failed_on_a <= settings.llm_concurrency  # only calls already in flight when `a` first failed
    second = backend.runner.run([PredictionJob(config, None, task) for task in tasks(16, "moved")], 60)[0]
    assert [o.status for o in second] == ["ok"] * 16
    assert fleet.a.calls == failed_on_a and asked(fleet.b, "moved-") == 16


def test_one_failing_deployment_with_a_healthy_fallback_costs_one_failed_call_per_task(
    routed: Callable[..., Settings], fleet: Fleet
) -> None:
    """Router fallbacks and our retries do not multiply: LLM_MAX_RETRIES=4 never comes into play."""
    fleet.a.set_default(Reply(status=500))
    settings = routed([("local", fleet.a), ("big", fleet.big)], {"fallbacks": [{"local": ["big"]}]},
                      llm_max_retries=4)
    app = create_app(settings)
    response = app.test_client().post("/predict", json={"label_config": CHOICES_CONFIG, "tasks": tasks(10, "fb")})
    assert all("result" in item for item in response.get_json()["results"])
    for i in range(10):
        assert asked(fleet.a, f"fb-{i:03d}") <= 1 and asked(fleet.big, f"fb-{i:03d}") == 1
    # `a` is cooled down after its first failure (it has a fallback): only calls already in flight failed.
    assert 1 <= fleet.a.calls <= settings.llm_concurrency and fleet.a.count(500) == fleet.a.calls
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    # Calls are counted as the servers saw them: a failed call before a fallback, not a skipped deployment.
    assert f"llm_backend_llm_calls_total {fleet.a.calls + 10}.0" in metrics
    assert f"llm_backend_llm_retries_total {fleet.a.calls}.0" in metrics


def test_when_every_route_fails_each_retry_is_one_call_per_group(
    routed: Callable[..., Settings], fleet: Fleet
) -> None:
    fleet.a.set_default(Reply(status=500))
    fleet.big.set_default(Reply(status=503))
    settings = routed([("local", fleet.a), ("big", fleet.big)], {"fallbacks": [{"local": ["big"]}]},
                      llm_max_retries=2)
    outcome = build_services(settings).predictor.predict(
        PredictionJob(parse_label_config(CHOICES_CONFIG), None, tasks(1, "down")[0]))
    assert outcome.status == "failed" and outcome.error_code == "llm_unavailable"
    # At most (LLM_MAX_RETRIES + 1) x (1 + fallback groups) = 3 x 2 calls, none from Router retries. `local`
    # (it has a fallback) is cooled down after its first failure, so later attempts go straight to `big`.
    assert (fleet.a.calls, fleet.big.calls) == (1, 3)
    assert outcome.usage.calls == 4


def test_a_context_window_error_falls_back_to_the_bigger_model_without_retries(
    routed: Callable[..., Settings], fleet: Fleet
) -> None:
    for server in (fleet.a, fleet.b):
        server.set_default(Reply(status=400, error_message=CONTEXT_ERROR))
    settings = routed(llm_max_retries=4)  # tests/fixtures/router.yaml: context_window_fallbacks local -> big
    backend = build_services(settings)
    outcome = backend.predictor.predict(PredictionJob(parse_label_config(CHOICES_CONFIG), None,
                                                      tasks(1, "long")[0]))
    assert outcome.status == "ok" and outcome.regions
    assert fleet.a.calls + fleet.b.calls == 1 and fleet.big.calls == 1
    assert fleet.big.requests[0]["model"] == "route-big"
    assert outcome.usage.calls == 2
    assert outcome.usage.cost is not None and outcome.usage.cost > 0  # "big" is priced in the routing file


def test_all_deployments_cooling_down_is_transient_with_the_routers_wait(
    routed: Callable[..., Settings], fleet: Fleet
) -> None:
    for server in (fleet.a, fleet.b):
        server.set_default(Reply(status=500))
    settings = routed([("local", fleet.a), ("local", fleet.b)], {"cooldown_time": 45}, llm_max_retries=0)
    backend = build_services(settings)
    client = backend.predictor.client
    request = backend.predictor.build_request(
        PredictionJob(parse_label_config(CHOICES_CONFIG), None, tasks(1, "cold")[0]), {"text": "cold"})
    for _ in range(2):  # each failure cools its deployment down
        with pytest.raises(TransientLLMError):
            client.complete(request)
    with pytest.raises(TransientLLMError, match="No deployments available") as caught:
        client.complete(request)
    assert caught.value.retry_after == 45
    assert fleet.a.calls == 1 and fleet.b.calls == 1


def test_unpriced_deployments_have_unknown_cost_and_router_models_ask_for_logprobs(
    routed: Callable[..., Settings], fleet: Fleet
) -> None:
    backend = build_services(routed())
    outcome = backend.predictor.predict(PredictionJob(parse_label_config(CHOICES_CONFIG), None,
                                                      tasks(1, "price")[0]))
    assert outcome.status == "ok" and outcome.model == "local"
    assert outcome.usage.cost is None  # LiteLLM says $0 for a model it has no price for; we say unknown
    [request] = fleet.a.requests + fleet.b.requests
    assert request["logprobs"] is True  # "local" is served by openai/ deployments, which return them


# ------------------------------------------------------------------ per-project models (extra_params)


def test_extra_params_choose_a_projects_model_and_temperature(routed: Callable[..., Settings], fleet: Fleet) -> None:
    client = create_app(routed()).test_client()
    setup = {"schema": CHOICES_CONFIG}
    default = client.post("/setup", json={**setup, "project": "1.1", "extra_params": None}).get_json()
    chosen = client.post("/setup", json={**setup, "project": "2.1",
                                         "extra_params": '{"model": "big", "temperature": 0.3}'}).get_json()
    assert default["model_version"].startswith("local-") and chosen["model_version"].startswith("big-")
    body = {"label_config": CHOICES_CONFIG, "tasks": tasks(3, "proj")}
    one = client.post("/predict", json={**body, "project": "1.1"}).get_json()
    two = client.post("/predict", json={**body, "project": "2.1"}).get_json()
    assert one["model_version"] == default["model_version"] and two["model_version"] == chosen["model_version"]
    assert fleet.a.calls + fleet.b.calls == 3 and fleet.big.calls == 3
    assert {r["temperature"] for r in fleet.big.requests} == {0.3}
    assert {r["temperature"] for r in fleet.a.requests + fleet.b.requests} == {0.0}
    # Label Studio calls /setup before predicting: clearing the field brings the project back to the default.
    again = client.post("/setup", json={**setup, "project": "2.1", "extra_params": ""}).get_json()
    assert again["model_version"] == default["model_version"]


def test_extra_params_are_part_of_model_version(make_client: Callable[..., Any]) -> None:
    client = make_client()
    setup = {"schema": CHOICES_CONFIG, "project": "3.1"}
    plain = client.post("/setup", json=setup).get_json()["model_version"]
    assert client.post("/setup", json={**setup, "extra_params": None}).get_json()["model_version"] == plain
    named = client.post("/setup", json={**setup, "extra_params": {"model": "openai/test-model"}}).get_json()
    warmer = client.post("/setup", json={**setup, "extra_params": {"temperature": 0.7}}).get_json()
    assert named["model_version"] == plain  # naming the default model changes nothing
    assert warmer["model_version"] != plain


@pytest.mark.parametrize(("extra_params", "message"), [
    ('{"model": "openai/gpt-4o"}', "known models: openai/test-model (from LLM_MODEL and LLM_CASCADE)"),
    ("model=big", "extra_params must be a JSON object"),
    ([1, 2], "extra_params must be a JSON object"),
    ({"modle": "big"}, "unknown key(s) ['modle']"),
    ({"temperature": 3}, "temperature must be a number from 0 to 2"),
    ({"max_tokens": 0}, "max_tokens must be a positive integer"),
])
def test_setup_rejects_bad_extra_params_with_a_clear_400(
    make_client: Callable[..., Any], extra_params: object, message: str
) -> None:
    response = make_client().post("/setup", json={"schema": CHOICES_CONFIG, "project": "4.1",
                                                  "extra_params": extra_params})
    assert response.status_code == 400
    assert message in response.get_json()["error"]["message"]


def test_parse_extra_params_accepts_an_object_or_its_json_text() -> None:
    routing = Routing(None, ("local", "big"))
    assert parse_extra_params(None, routing).model is None
    assert parse_extra_params(" ", routing).params == {}
    choice = parse_extra_params('{"model": "big", "temperature": 0, "max_tokens": 300}', routing)
    assert (choice.model, choice.params) == ("big", {"temperature": 0.0, "max_tokens": 300})


def test_a_projects_model_holds_in_every_worker_and_after_a_restart(
    fleet: Fleet, start_backend: Callable[..., BackendProcess], start_app: Callable[..., Any]
) -> None:
    """/setup chooses "big" in one worker; every /predict, whichever worker answers it, uses it, also after a
    restart before Label Studio calls /setup again (the choice lives in the project store, not in a worker). The
    restart is the app `serve` runs, built anew in this process on the same CACHE_DIR: what a restarted worker
    finds is the store, and a second `serve` would only import LiteLLM twice more."""
    env = {"WORKERS": "2", "LLM_MODEL": "local", "LLM_ROUTER_CONFIG": str(FIXTURES / "router.yaml"),
           "LLM_API_BASE": ""}
    fleet.big.set_default(Reply(json={"sentiment": "Positive"}))
    backend = start_backend(**env)
    setup = {"schema": CHOICES_CONFIG, "project": "31.1700000000", "extra_params": '{"model": "big"}'}
    assert requests.post(f"{backend.url}/setup", json=setup, timeout=30).status_code == 200

    def predict_fresh(marker: str, url: str = backend.url) -> dict[str, Any]:
        with requests.Session() as session:  # a new connection each time: gunicorn spreads them over workers
            body = {"label_config": CHOICES_CONFIG, "project": "31.1700000000",
                    "tasks": [{"id": 1, "data": {"text": f"{marker} is a fine day"}}]}
            response = session.post(f"{url}/predict", json=body, timeout=60)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()["results"][0]
        return result

    results = [predict_fresh(f"worker-{i:02d}") for i in range(20)]
    assert all("result" in result for result in results)
    assert asked(fleet.big, "worker-") == 20 and fleet.a.calls + fleet.b.calls == 0
    assert len({result["model_version"] for result in results}) == 1

    backend.stop()
    restarted = start_app(**env)  # the same CACHE_DIR: the state a restart finds
    assert "result" in predict_fresh("restarted", restarted.url)
    assert asked(fleet.big, "restarted") == 1 and fleet.a.calls + fleet.b.calls == 0

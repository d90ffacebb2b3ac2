"""What `serve` says at start: a missing API key, an unknown provider or an unreachable model server is
one clear ERROR with its fix (found in the background, /health answering meanwhile), kept on
`Services.startup`; the demo model needs no key and says it is a demo."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from llm_backend.models.preflight import ModelTarget, key_problems, model_targets
from llm_backend.models.router import load_routing
from llm_backend.services import build_services
from llm_backend.settings import Settings
from llm_backend.web.app import create_app
from testkit.llm_server import FakeLLMServer
from tests.conftest import ALL_CONTROLS_CONFIG, BackendProcess, free_port


def _errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if " ERROR " in line]


def _wait_for(backend: Any, text: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = backend.log()
        if text in log:
            return log
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not logged in {timeout} s:\n{backend.log()}")


@pytest.fixture
def no_provider_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh machine: no provider key in the environment the backend inherits."""
    for variable in ("OPENAI_API_KEY", "LLM_API_KEY", "LLM_API_BASE"):
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: a model server hung, or a firewall that drops."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


def test_serve_without_an_api_key_logs_one_error_with_the_fix(
    start_app: Callable[..., Any], no_provider_keys: None
) -> None:
    """The app `serve` runs, in this process: the check and its log line are the worker's, not gunicorn's (the
    unreachable model server below shows the same from a `serve` subprocess)."""
    backend = start_app(LLM_MODEL="openai/gpt-4o-mini", LLM_API_KEY="", LLM_API_BASE="")
    assert requests.get(f"{backend.url}/health", timeout=30).status_code == 200
    log = _wait_for(backend, "startup check failed")
    assert _errors(log) == [line for line in log.splitlines() if "startup check failed" in line]
    [error] = _errors(log)
    assert error.endswith("startup check failed: LLM_MODEL=openai/gpt-4o-mini needs OPENAI_API_KEY, which is not "
                          "set: set LLM_API_KEY or export OPENAI_API_KEY; every prediction fails until then")


def test_an_unreachable_base_url_is_found_without_delaying_health(
    start_backend: Callable[..., BackendProcess], silent_port: int, make_settings: Callable[..., Settings]
) -> None:
    backend = start_backend(LLM_API_BASE=f"http://127.0.0.1:{silent_port}/v1")
    # The check waits 5 s for an answer that never comes; /health answers meanwhile (Label Studio allows it 1 s):
    # its answer comes before the check's verdict, which it would otherwise have waited for.
    health = requests.get(f"{backend.url}/health", timeout=30)
    assert health.status_code == 200
    assert "startup check" not in backend.log()
    log = _wait_for(backend, "startup check failed")
    [error] = _errors(log)
    assert error.endswith(
        f"startup check failed: LLM_API_BASE http://127.0.0.1:{silent_port}/v1 is unreachable from here (no answer "
        f"from 127.0.0.1:{silent_port} within 5 s); start the model server, or set it to the address this machine "
        "reaches it at (if this backend runs in a container, localhost is the container itself); every prediction "
        "fails until then")
    # A refused connection is named as such (the same check, in this process: no second `serve` needed).
    refused_port = free_port()
    [problem] = _problems(make_settings(llm_api_base=f"http://127.0.0.1:{refused_port}/v1"))
    assert f"(connection refused: nothing listens on 127.0.0.1:{refused_port})" in problem.message


def test_an_openai_compatible_server_needs_no_key(
    start_app: Callable[..., Any], llm: FakeLLMServer, no_provider_keys: None
) -> None:
    """Was: "Missing credentials ... set the OPENAI_API_KEY" until a dummy LLM_API_KEY was set. The app `serve` runs,
    in this process: what is tested is the key LiteLLM is given, not the process."""
    backend = start_app(LLM_API_KEY="", LLM_API_BASE=llm.base_url)
    body = {"label_config": ALL_CONTROLS_CONFIG, "tasks": [{"id": 1, "data": {"text": "Ada met Bob."}}]}
    [result] = requests.post(f"{backend.url}/predict", json=body, timeout=60).json()["results"]
    assert "result" in result, result
    assert {request["_authorization"] for request in llm.requests} == {"Bearer no-key-required"}
    log = _wait_for(backend, "startup checks passed")
    assert _errors(log) == [] and "startup checks passed: LLM_MODEL=openai/test-model" in log


def test_the_demo_model_needs_no_key_no_server_and_says_it_is_a_demo(
    start_backend: Callable[..., BackendProcess], llm: FakeLLMServer, no_provider_keys: None
) -> None:
    backend = start_backend(LLM_MODEL="demo", LLM_API_KEY="", LLM_API_BASE="")
    assert requests.get(f"{backend.url}/health", timeout=30).json()["model_ready"] is True
    tasks = [{"id": i, "data": {"text": f"Ada Lovelace wrote to Charles Babbage, note {i}."}} for i in (1, 2)]
    answer = requests.post(f"{backend.url}/predict", json={"label_config": ALL_CONTROLS_CONFIG, "tasks": tasks},
                           timeout=60).json()
    assert answer["model_version"].startswith("demo-")
    for result in answer["results"]:
        assert result["model_version"] == answer["model_version"]
        assert {region["from_name"] for region in result["result"]} == {
            "sentiment", "topics", "ner", "summary", "quality", "year", "category"}
    assert llm.calls == 0
    log = backend.log()
    assert "WARNING llm_backend.services" in log and "the demo model answers from simple rules, not a language " \
        "model: its predictions show how the backend works, not what a model would say (model_version starts " \
        "with 'demo-')" in log
    assert "LiteLLM" not in log and _errors(log) == []


def _problems(settings: Settings) -> list[Any]:
    services = build_services(settings)
    services.warm_up()
    assert services.startup.wait(30)
    return services.startup.problems


def test_the_problems_stay_on_services_for_a_status_page(
    make_settings: Callable[..., Settings], no_provider_keys: None
) -> None:
    [problem] = _problems(make_settings(llm_model="llama3", llm_api_base=None))
    assert problem.check == "provider"
    assert problem.message.startswith("LLM_MODEL=llama3: LiteLLM knows no provider for 'llama3'; write it as "
                                      "provider/model, e.g. openai/gpt-4o-mini")
    assert _problems(make_settings()) == []
    assert _problems(make_settings(llm_model="demo", llm_api_base=None, llm_api_key=None)) == []


def test_keys_are_checked_per_routing_deployment(
    make_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("MY_OPENAI_KEY", "sk-from-the-environment")
    route = tmp_path / "router.yaml"
    route.write_text("model_list:\n"
                     "  - model_name: gpt\n    litellm_params:\n      model: openai/gpt-4o-mini\n"
                     "      api_key: os.environ/MY_OPENAI_KEY\n"
                     "  - model_name: claude\n    litellm_params:\n      model: anthropic/claude-3-5-haiku-latest\n"
                     "  - model_name: local\n    litellm_params:\n      model: hosted_vllm/qwen\n"
                     "      api_base: http://127.0.0.1:9/v1\n")
    settings = make_settings(llm_model="gpt", llm_router_config=route)
    targets = model_targets(settings, load_routing(settings))
    assert [(t.model, t.api_key, t.api_base) for t in targets] == [
        ("openai/gpt-4o-mini", "sk-from-the-environment", None), ("anthropic/claude-3-5-haiku-latest", None, None),
        ("hosted_vllm/qwen", None, "http://127.0.0.1:9/v1")]
    from llm_backend.models.client import load_litellm

    [problem] = key_problems(load_litellm(), targets)
    assert problem.message == (
        "router.yaml model_list[1] (claude: anthropic/claude-3-5-haiku-latest) needs ANTHROPIC_API_KEY, which is not "
        "set: set api_key in its litellm_params (e.g. api_key: os.environ/OPENAI_API_KEY) or export "
        "ANTHROPIC_API_KEY; every prediction fails until then")


def test_no_key_is_needed_at_your_own_base_url_but_is_at_openais(no_provider_keys: None) -> None:
    from llm_backend.models.client import load_litellm

    def target(base: str | None) -> ModelTarget:
        return ModelTarget("LLM_MODEL=openai/m", "openai/m", None, base, "set LLM_API_KEY")

    litellm = load_litellm()
    assert key_problems(litellm, [target("http://gpu-box:8000/v1")]) == []
    assert [p.check for p in key_problems(litellm, [target("https://api.openai.com/v1"), target(None)])] == \
        ["api_key", "api_key"]


def test_a_routing_deployment_at_your_own_server_needs_no_key_either(
    make_settings: Callable[..., Settings], llm: FakeLLMServer, tmp_path: Path, no_provider_keys: None
) -> None:
    route = tmp_path / "router.yaml"
    route.write_text(f"model_list:\n  - model_name: local\n    litellm_params:\n      model: openai/test-model\n"
                     f"      api_base: {llm.base_url}\n")
    settings = make_settings(llm_model="local", llm_router_config=route, llm_api_key=None, llm_api_base=None)
    assert _problems(settings) == []
    client = create_app(settings).test_client()
    body = {"label_config": ALL_CONTROLS_CONFIG, "tasks": [{"id": 1, "data": {"text": "Ada met Bob."}}]}
    [result] = client.post("/predict", json=body).get_json()["results"]
    assert "result" in result, result
    assert {request["_authorization"] for request in llm.requests} == {"Bearer no-key-required"}

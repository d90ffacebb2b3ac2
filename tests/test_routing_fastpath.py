"""A routing file's calls on the fast path (models/routed.py) against the same calls through `acompletion`
(LLM_FAST_PATH=off), over real HTTP to test LLM servers behind LiteLLM's Router: the requests on the wire, the
parsed replies (cost included), the failures, fallbacks and cooldowns, and least-busy's count of calls in flight
are the same; only the client that sent them differs (aiohttp's, not the OpenAI SDK's)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from llm_backend.errors import LLMError
from llm_backend.models.client import LLMRequest
from llm_backend.models.fastpath import FAST, LITELLM
from llm_backend.models.router import RouterClient, load_routing
from llm_backend.settings import Settings
from testkit.llm_server import FakeLLMServer, Reply
from tests.test_fastpath_contract import FAILURES, REPLIES, SCHEMA, _failure, _parsed

Servers = tuple[FakeLLMServer, FakeLLMServer]
PRICE = {"input_cost_per_token": 0.000001, "output_cost_per_token": 0.000002}


@pytest.fixture(scope="module")
def pair() -> Iterator[Servers]:
    servers = (FakeLLMServer().start(), FakeLLMServer().start())
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
def servers(pair: Servers) -> Servers:
    for server in pair:
        server.reset()
        server.latency = 0.0
    return pair


@pytest.fixture
def router_client(make_settings: Callable[..., Settings], tmp_path: Path) -> Callable[..., RouterClient]:
    """A RouterClient over deployments (model_name, server, extra litellm_params), fast path on or off."""

    def make(deployments: list[tuple[str, FakeLLMServer, dict[str, Any]]], fast: bool, **router_settings: Any
             ) -> RouterClient:
        model_list = [{"model_name": name, "litellm_params": {"model": f"openai/route-{name}", "api_base":
                                                              server.base_url, "api_key": "sk-route", **extra}}
                      for name, server, extra in deployments]
        path = tmp_path / f"router-{fast}.yaml"
        path.write_text(yaml.safe_dump({"model_list": model_list, "router_settings": router_settings}))
        settings = make_settings(llm_model=deployments[0][0], llm_router_config=path, llm_api_base=None,
                                 llm_fast_path="on" if fast else "off", llm_retry_max_wait=0.1, llm_max_retries=0)
        client = load_routing(settings).client(settings)
        assert isinstance(client, RouterClient)
        return client

    return make


def _request(model: str, case: str) -> LLMRequest:
    return LLMRequest(model, ({"role": "system", "content": "Answer in JSON."},
                              {"role": "user", "content": f"Is this {case}? Reply yes or no."}),
                      response_format=SCHEMA, max_tokens=64, logprobs=case == "logprobs")


def _wire(servers: Servers) -> tuple[list[dict[str, Any]], set[str]]:
    """Each request the servers received (JSON body, path, Authorization; by server), and the clients that sent
    them."""
    kept = ("_path", "_authorization")
    sent = [{"server": index, **{key: value for key, value in record.items() if not key.startswith("_") or
                                 key in kept}} for index, server in enumerate(servers) for record in server.requests]
    agents = {str(record.get("_user_agent")).split("/")[0] for server in servers for record in server.requests}
    return sent, agents


def _run(make: Callable[..., RouterClient], servers: Servers, deployments: list[Any], fast: bool,
         requests: list[LLMRequest], prepare: Callable[[FakeLLMServer], None], **router_settings: Any
         ) -> tuple[list[Any], list[dict[str, Any]], set[str]]:
    """Each request's parsed reply or failure, the requests on the wire and the clients that sent them; `prepare`
    scripts each server after it was reset."""
    for server in servers:
        server.reset()
        prepare(server)
    client = make(deployments, fast, **router_settings)
    assert client.path_of(requests[0]).path == (FAST if fast else LITELLM)
    outcomes: list[Any] = []
    for request in requests:
        try:
            outcomes.append(_parsed(client.complete(request)))
        except LLMError as exc:
            outcomes.append(_failure(exc))
    return (outcomes, *_wire(servers))


@pytest.mark.parametrize("case", list(REPLIES))
def test_routed_replies_are_identical_on_both_paths(router_client: Callable[..., RouterClient], servers: Servers,
                                                   case: str) -> None:
    deployments = [("local", servers[0], {}), ("big", servers[1], PRICE)]
    requests = [_request("local", case), _request("big", case)]

    def script(server: FakeLLMServer) -> None:
        server.add_rule(f"Is this {case}?", REPLIES[case])

    read_slow, sent_slow, agents_slow = _run(router_client, servers, deployments, False, requests, script)
    read_fast, sent_fast, agents_fast = _run(router_client, servers, deployments, True, requests, script)
    assert len(sent_fast) == 2 and sent_fast == sent_slow
    assert read_fast == read_slow
    assert agents_slow == {"AsyncOpenAI"} and agents_fast == {"Python"}  # aiohttp's "Python/3.x aiohttp/..."
    assert read_fast[0]["model"] == "local" and read_fast[0]["cost"] is None  # no price known: unknown, not $0
    assert read_fast[1]["model"] == "big" and read_fast[1]["cost"] == pytest.approx(
        read_fast[1]["prompt_tokens"] * 1e-6 + read_fast[1]["completion_tokens"] * 2e-6, rel=1e-12)


@pytest.mark.parametrize("case", list(FAILURES))
def test_routed_failures_are_identical_on_both_paths(router_client: Callable[..., RouterClient], servers: Servers,
                                                    case: str) -> None:
    deployments = [("local", servers[0], {})]
    results = [_run(router_client, servers, deployments, fast, [_request("local", case)],
                    lambda server: server.set_default(FAILURES[case])) for fast in (False, True)]
    (failed_slow, sent_slow, _), (failed_fast, sent_fast, _) = results
    assert sent_fast == sent_slow
    assert failed_fast == failed_slow


def test_fallbacks_and_cooldowns_are_the_same_on_the_fast_path(router_client: Callable[..., RouterClient],
                                                                servers: Servers) -> None:
    """`local` answers 500s: its first call fails and falls back to `big`, then it is cooled down."""
    deployments = [("local", servers[0], {}), ("big", servers[1], PRICE)]
    requests = [_request("local", f"fallback {i}") for i in range(3)]
    def script(server: FakeLLMServer) -> None:
        if server is servers[0]:
            server.set_default(Reply(status=500, error_message="GPU fell off the bus"))

    results = [_run(router_client, servers, deployments, fast, requests, script, fallbacks=[{"local": ["big"]}],
                    cooldown_time=60) for fast in (False, True)]
    (read_slow, sent_slow, _), (read_fast, sent_fast, _) = results
    assert sent_fast == sent_slow and read_fast == read_slow
    assert [sent["server"] for sent in sent_fast] == [0, 1, 1, 1]  # a failed call, then `big` only
    assert [read["attempts"] for read in read_fast] == [2, 1, 1] and {read["model"] for read in read_fast} == {"big"}


def test_a_429_with_retry_after_is_retried_on_both_paths(router_client: Callable[..., RouterClient],
                                                         servers: Servers) -> None:
    results = []
    for fast in (False, True):
        servers[0].reset()
        servers[0].add_rule("Is this busy?", Reply(status=429, headers={"Retry-After": "0"}), times=1)
        client = router_client([("local", servers[0], {})], fast)
        client.max_retries = 2
        completion = client.complete(_request("local", "busy"))
        results.append((completion.attempts, servers[0].calls, _wire(servers)[0]))
    assert results[0] == results[1] and results[1][:2] == (2, 2)


def test_least_busy_counts_calls_in_flight(router_client: Callable[..., RouterClient], servers: Servers) -> None:
    """While one call is in flight at one deployment, least-busy sends the next calls to the other; after it
    ended (counted as ended), the same again: a count that never went down would send them to the first.
    (Through `acompletion` the end of a call is counted by LiteLLM's logging, which may run after the reply was
    returned, so there a next call can still see it counted: seen in one of three runs here. The fast path counts
    the end before it returns.)"""
    deployments = [("local", servers[0], {}), ("local", servers[1], {})]
    client = router_client(deployments, True, routing_strategy="least-busy")
    for server in servers:
        server.add_rule("Is this held", Reply(json={"label": "yes"}, delay=6.0))
    for round_ in range(2):
        held = threading.Thread(target=client.complete, args=(_request("local", f"held {round_}"),))
        held.start()
        deadline = time.monotonic() + 30
        while not any(server.in_flight for server in servers) and time.monotonic() < deadline:
            time.sleep(0.01)
        busy = next(index for index, server in enumerate(servers) if server.in_flight)
        for i in range(3):
            client.complete(_request("local", f"quick {round_} {i}"))
        assert held.is_alive()  # the held call was in flight the whole time (it is held 6 s)
        quick = [sum(f"quick {round_}" in str(record["messages"]) for record in server.requests) for server in servers]
        assert (quick[busy], quick[1 - busy]) == (0, 3)
        held.join(30)
        assert not held.is_alive()


def test_doctor_and_the_strategies_that_stay_litellm_calls(router_client: Callable[..., RouterClient],
                                                            servers: Servers) -> None:
    request = _request("local", "path")
    shuffled = router_client([("local", servers[0], {})], True).path_of(request)
    assert shuffled.path == FAST and shuffled.why.startswith("through LiteLLM's Router: openai at")
    usage = router_client([("local", servers[0], {})], True, routing_strategy="usage-based-routing-v2")
    assert usage.path_of(request).path == LITELLM and "usage-based-routing-v2" in usage.path_of(request).why
    completion = usage.complete(request)
    assert completion.content and {record["_user_agent"].split("/")[0] for record in servers[0].requests} == {
        "AsyncOpenAI"}
    lmstudio = router_client([("local", servers[0], {"model": "lm_studio/route-local"})], True)
    assert lmstudio.path_of(request).path == LITELLM and "lm_studio" in lmstudio.path_of(request).why

"""Tests for the fake OpenAI-compatible server, driven through real LiteLLM calls over HTTP.

Besides proving the server works, the LiteLLM tests pin down how this LiteLLM version
maps HTTP failures to exceptions, which the backend's retry logic depends on; an
upgrade that changes the mapping fails here first.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import jsonschema
import pytest
import requests

from testkit.llm_server import FakeLLMServer, LLMServerControl, Reply, schema_instance

REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS = ["openai/test-model", "hosted_vllm/test-model"]

SPAN = {
    "type": "object",
    "properties": {
        "start": {"type": "integer", "minimum": 0},
        "end": {"type": "integer"},
        "label": {"type": "string", "enum": ["PER", "ORG"]},
        "text": {"type": "string"},
    },
    "required": ["start", "end", "label", "text"],
    "additionalProperties": False,
}

# Shaped like what the backend sends: strict-mode compatible, $defs/$ref, nullable via anyOf.
SCHEMA: dict[str, Any] = {
    "type": "object",
    "$defs": {"Span": SPAN},
    "properties": {
        "spans": {"type": "array", "items": {"$ref": "#/$defs/Span"}},
        "sentiment": {"type": "string", "enum": ["positive", "negative"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "summary": {"anyOf": [{"type": "null"}, {"type": "string", "minLength": 3}]},
        "meta": {
            "type": "object",
            "properties": {
                "flag": {"type": "boolean"},
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            },
            "required": ["flag", "tags"],
            "additionalProperties": False,
        },
        "primary": {"$ref": "#/$defs/Span"},
    },
    "required": ["spans", "sentiment", "confidence", "summary", "meta", "primary"],
    "additionalProperties": False,
}

SCHEMA_DEFAULT = {
    "spans": [],
    "sentiment": "positive",
    "confidence": 0,
    "summary": "xxx",
    "meta": {"flag": False, "tags": [""]},
    "primary": {"start": 0, "end": 0, "label": "PER", "text": ""},
}


@pytest.fixture(scope="module")
def litellm() -> Iterator[ModuleType]:
    # Without this LiteLLM tries to download its price map at import time; there is no network in CI.
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    import litellm as module

    previous = module.suppress_debug_info
    # Every mapped exception otherwise prints a "Give Feedback" banner to stdout.
    module.suppress_debug_info = True
    yield module
    module.suppress_debug_info = previous


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        yield fake


def complete(
    litellm: ModuleType,
    server: FakeLLMServer | str,
    text: str = "Label this text.",
    *,
    model: str = "openai/test-model",
    schema: dict[str, Any] | None = SCHEMA,
    **kwargs: Any,
) -> Any:
    api_base = server.base_url if isinstance(server, FakeLLMServer) else server
    if schema is not None:
        kwargs.setdefault(
            "response_format",
            {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}},
        )
    kwargs.setdefault("timeout", 10)
    kwargs.setdefault("num_retries", 0)
    return litellm.completion(
        model=model,
        api_base=api_base,
        api_key="sk-test",
        messages=[{"role": "system", "content": "You label data."}, {"role": "user", "content": text}],
        **kwargs,
    )


def content_of(response: Any) -> str:
    return response.choices[0].message.content


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- through LiteLLM


@pytest.mark.parametrize("model", MODELS)
def test_schema_driven_default_is_a_valid_instance(litellm: ModuleType, server: FakeLLMServer, model: str) -> None:
    response = complete(litellm, server, model=model)

    answer = json.loads(content_of(response))
    jsonschema.validate(answer, SCHEMA)
    assert answer == SCHEMA_DEFAULT
    assert response.model.endswith("test-model")
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens > 0


def test_hosted_vllm_forwards_response_format(litellm: ModuleType, server: FakeLLMServer) -> None:
    complete(litellm, server, model="hosted_vllm/test-model")

    (body,) = server.requests
    assert body["model"] == "test-model"
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == SCHEMA
    assert body["_path"] == "/v1/chat/completions"
    assert body["_status"] == 200


@pytest.mark.parametrize("response_format", [{"type": "json_object"}, None])
def test_default_without_schema_is_empty_object(
    litellm: ModuleType, server: FakeLLMServer, response_format: dict[str, str] | None
) -> None:
    kwargs = {"response_format": response_format} if response_format else {}
    assert content_of(complete(litellm, server, schema=None, **kwargs)) == "{}"


def test_rule_answers_chosen_json(litellm: ModuleType, server: FakeLLMServer) -> None:
    server.add_rule("Paris", Reply(json={"sentiment": "negative"}))

    assert json.loads(content_of(complete(litellm, server, "I left Paris."))) == {"sentiment": "negative"}
    # Rules match the text of any message; an unrelated request still gets the default.
    assert json.loads(content_of(complete(litellm, server, "Berlin"))) == SCHEMA_DEFAULT
    assert server.count(200) == 2


@pytest.mark.parametrize(
    "content",
    [
        '```json\n{"label": "PER"}\n```',
        'Sure! Here is the answer: {"label": "PER"} Hope that helps.',
        '{"label": "PER",',
        "not json at all",
    ],
)
def test_rule_content_is_returned_verbatim(litellm: ModuleType, server: FakeLLMServer, content: str) -> None:
    server.add_rule("Label", Reply(content=content))
    assert content_of(complete(litellm, server)) == content


def test_rule_reply_list_is_consumed_in_order_and_last_repeats(litellm: ModuleType, server: FakeLLMServer) -> None:
    server.add_rule("flaky", [Reply(status=429), Reply(status=500), Reply(json={"ok": True})])

    with pytest.raises(litellm.RateLimitError):
        complete(litellm, server, "flaky")
    with pytest.raises(litellm.InternalServerError):
        complete(litellm, server, "flaky")
    for _ in range(2):
        assert json.loads(content_of(complete(litellm, server, "flaky"))) == {"ok": True}
    assert [r["_status"] for r in server.requests] == [429, 500, 200, 200]


def test_rule_times_limits_how_often_it_applies(litellm: ModuleType, server: FakeLLMServer) -> None:
    server.add_rule("x", Reply(json={"first": 1}), times=1)
    server.add_rule("x", Reply(json={"second": 2}))

    assert json.loads(content_of(complete(litellm, server, "x"))) == {"first": 1}
    assert json.loads(content_of(complete(litellm, server, "x"))) == {"second": 2}


def test_default_factory_sees_request_body(litellm: ModuleType, server: FakeLLMServer) -> None:
    server.set_default(lambda body: Reply(json={"n_messages": len(body["messages"])}, usage={"prompt_tokens": 7}))

    response = complete(litellm, server)
    assert json.loads(content_of(response)) == {"n_messages": 2}
    assert response.usage.prompt_tokens == 7


@pytest.mark.parametrize("model", MODELS)
def test_429_retry_after_is_exposed_on_the_exception(litellm: ModuleType, server: FakeLLMServer, model: str) -> None:
    server.set_default(Reply(status=429, headers={"Retry-After": "1"}, error_message="slow down"))

    with pytest.raises(litellm.RateLimitError) as info:
        complete(litellm, server, model=model)

    error = info.value
    assert error.status_code == 429
    assert "slow down" in str(error)
    headers = error.litellm_response_headers
    # Only the lower-case key works for both providers: openai/ keeps httpx's
    # case-insensitive Headers, hosted_vllm/ flattens them into a plain dict.
    assert headers["retry-after"] == "1"
    if model.startswith("openai/"):
        assert isinstance(headers, httpx.Headers)
        assert headers["Retry-After"] == "1"
        assert error.response.headers["retry-after"] == "1"
    else:
        assert type(headers) is dict
        assert "Retry-After" not in headers
        assert "retry-after" not in error.response.headers
    # num_retries=0 must mean one HTTP call, otherwise backend retry accounting is off.
    assert server.calls == 1


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(
    ("status", "exception_name"),
    [
        (400, "BadRequestError"),
        (401, "AuthenticationError"),
        (404, "NotFoundError"),
        (500, "InternalServerError"),
        (502, "BadGatewayError"),
        (503, "ServiceUnavailableError"),
    ],
)
def test_http_status_maps_to_litellm_exception(
    litellm: ModuleType, server: FakeLLMServer, model: str, status: int, exception_name: str
) -> None:
    server.set_default(Reply(status=status, error_message=f"scripted {status}"))

    with pytest.raises(getattr(litellm, exception_name)) as info:
        complete(litellm, server, model=model)

    assert type(info.value) is getattr(litellm, exception_name)
    assert info.value.status_code == status
    assert f"scripted {status}" in str(info.value)


@pytest.mark.parametrize(("model", "exception_name"), [(MODELS[0], "APIError"), (MODELS[1], "BadRequestError")])
def test_403_maps_differently_per_provider(
    litellm: ModuleType, server: FakeLLMServer, model: str, exception_name: str
) -> None:
    server.set_default(Reply(status=403))
    with pytest.raises(getattr(litellm, exception_name)) as info:
        complete(litellm, server, model=model)
    assert type(info.value) is getattr(litellm, exception_name)


@pytest.mark.parametrize("model", MODELS)
def test_connection_refused_is_internal_server_error(litellm: ModuleType, model: str) -> None:
    # Not APIConnectionError, as one might expect: both providers surface a refused
    # connection as InternalServerError (status 500), so retry-on-5xx covers it.
    with pytest.raises(litellm.InternalServerError) as info:
        complete(litellm, f"http://127.0.0.1:{free_port()}/v1", model=model)
    assert type(info.value) is litellm.InternalServerError
    assert not isinstance(info.value, litellm.APIConnectionError)


@pytest.mark.parametrize("model", MODELS)
def test_slow_answer_raises_timeout(litellm: ModuleType, server: FakeLLMServer, model: str) -> None:
    server.set_default(Reply(delay=30))  # an answer that comes far later than any load can delay the timeout

    started = time.monotonic()
    with pytest.raises(litellm.Timeout) as info:
        complete(litellm, server, model=model, timeout=0.3)

    assert time.monotonic() - started < 15  # the client gave up; it did not wait for the answer
    assert type(info.value) is litellm.Timeout
    assert server.calls == 1


def test_openai_sdk_retries_unless_num_retries_is_zero(litellm: ModuleType, server: FakeLLMServer) -> None:
    # Documents a trap: for openai/ models the OpenAI SDK itself retries twice on 429
    # unless LiteLLM is told num_retries=0 (or max_retries=0); hosted_vllm/ never does.
    server.set_default(Reply(status=429, headers={"Retry-After": "0"}))

    with pytest.raises(litellm.RateLimitError):
        complete(litellm, server, num_retries=None)
    assert server.calls == 3

    server.reset()
    server.set_default(Reply(status=429, headers={"Retry-After": "0"}))
    with pytest.raises(litellm.RateLimitError):
        complete(litellm, server, model="hosted_vllm/test-model", num_retries=None)
    assert server.calls == 1


@pytest.mark.parametrize("model", MODELS)
def test_streaming_and_logprobs(litellm: ModuleType, server: FakeLLMServer, model: str) -> None:
    logprobs = [{"token": "{", "logprob": -0.01, "bytes": [123], "top_logprobs": []}]
    server.add_rule("Label", Reply(json={"label": "PER"}, logprobs=logprobs))

    response = complete(litellm, server, model=model, logprobs=True)
    assert response.choices[0].logprobs.content[0].logprob == pytest.approx(-0.01)

    chunks = complete(litellm, server, model=model, stream=True)
    assert json.loads("".join(c.choices[0].delta.content or "" for c in chunks)) == {"label": "PER"}


def test_sequential_calls_reuse_one_keep_alive_connection(litellm: ModuleType, server: FakeLLMServer) -> None:
    for _ in range(20):
        complete(litellm, server)
    assert server.count(200) == 20
    assert len({r["_client"] for r in server.requests}) == 1


def test_max_concurrent_queues_requests(litellm: ModuleType) -> None:
    with FakeLLMServer(latency=0.2, max_concurrent=2) as server:
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda i: complete(litellm, server, f"item {i}"), range(6)))

        assert all(json.loads(content_of(r)) == SCHEMA_DEFAULT for r in results)
        assert server.max_in_flight_seen <= 2
        answered = sorted(r["_answered_at"] for r in server.requests)
        # Three waves of two: the last answer comes at least two latencies after the first.
        assert answered[-1] - answered[0] >= 0.35


def test_without_limit_requests_run_concurrently(litellm: ModuleType) -> None:
    with FakeLLMServer() as server, ThreadPoolExecutor(6) as pool:
        server.set_default(Reply(gate=6))  # each answer waits until all six are in flight (or 5 s)
        list(pool.map(lambda i: complete(litellm, server, f"item {i}"), range(6)))
        assert server.max_in_flight_seen == 6


# --------------------------------------------------------------------------- HTTP level


def chat(session: requests.Session | ModuleType, server: FakeLLMServer, text: str = "hi") -> requests.Response:
    return session.post(
        f"{server.base_url}/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": text}]},
        timeout=10,
    )


def test_injected_failure_rates_roughly_hold_and_are_seeded(server: FakeLLMServer) -> None:
    server.add_rule("hi", Reply(json={"rule": True}))
    server.inject_failures(rate_429=0.2, rate_500=0.1, retry_after=1.5, seed=42)

    with requests.Session() as session:
        responses = [chat(session, server) for _ in range(200)]
    statuses = [r.status_code for r in responses]

    assert 25 <= statuses.count(429) <= 55
    assert 8 <= statuses.count(500) <= 35
    assert statuses.count(200) == 200 - statuses.count(429) - statuses.count(500)
    assert server.count(429) == statuses.count(429)
    assert all(r.headers["Retry-After"] == "1.5" for r in responses if r.status_code == 429)
    assert all("Retry-After" not in r.headers for r in responses if r.status_code != 429)
    # Failures come before rules; successes still get the rule's answer.
    assert all(json.loads(r.json()["choices"][0]["message"]["content"]) == {"rule": True} for r in responses if r.ok)
    error_types = {r.status_code: r.json()["error"]["type"] for r in responses if not r.ok}
    assert error_types == {429: "requests", 500: "server_error"}

    server.reset()
    server.inject_failures(rate_429=0.2, rate_500=0.1, retry_after=None, seed=42)
    with requests.Session() as session:
        again = [chat(session, server) for _ in range(200)]
    assert [r.status_code for r in again] == statuses
    assert all("Retry-After" not in r.headers for r in again)


def test_full_failure_rate_overrides_rules(server: FakeLLMServer) -> None:
    server.add_rule("hi", Reply(json={}))
    server.inject_failures(rate_429=1.0)
    with requests.Session() as session:
        assert {chat(session, server).status_code for _ in range(10)} == {429}


def test_64_concurrent_clients_are_all_served(server: FakeLLMServer) -> None:
    server.latency = 0.05
    server.set_default(Reply(gate=16))  # the first answers wait until 16 clients are in flight at once

    def client(i: int) -> list[int]:
        with requests.Session() as session:
            return [chat(session, server, f"client {i}").status_code for _ in range(3)]

    with ThreadPoolExecutor(64) as pool:
        statuses = [s for batch in pool.map(client, range(64)) for s in batch]

    assert statuses == [200] * 192
    assert server.calls == 192
    assert server.max_in_flight_seen >= 16


def test_raising_max_concurrent_releases_queued_requests(server: FakeLLMServer) -> None:
    """Three requests queue behind one that holds the only slot for 3 s; raising the limit lets them in while it
    still holds it (all four in flight at once), not one by one as it ends."""
    server.max_concurrent = 1
    server.latency = 3.0
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(chat, requests, server) for _ in range(4)]
        deadline = time.monotonic() + 10
        while not (server.calls == 4 and server.in_flight == 1):  # three queued behind the first
            assert time.monotonic() < deadline, (server.calls, server.in_flight)
            time.sleep(0.01)
        server.max_concurrent = None
        assert [f.result().status_code for f in futures] == [200] * 4
    assert server.max_in_flight_seen == 4


def test_error_body_has_openai_shape(server: FakeLLMServer) -> None:
    server.set_default(Reply(status=503, error_message="overloaded", headers={"X-Extra": "y"}))
    response = chat(requests, server)
    assert response.status_code == 503
    assert response.headers["X-Extra"] == "y"
    error = response.json()["error"]
    assert error["message"] == "overloaded"
    assert {"type", "code"} <= error.keys()


def test_response_shape_and_models(server: FakeLLMServer) -> None:
    body = chat(requests, server, "some words here").json()
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int)
    assert body["model"] == "m"
    (choice,) = body["choices"]
    assert choice == {
        "index": 0,
        "message": {"role": "assistant", "content": "{}"},
        "finish_reason": "stop",
        "logprobs": None,
    }
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    models = requests.get(f"{server.base_url}/models", timeout=5).json()
    assert [m["id"] for m in models["data"]] == ["test-model"]


def test_bad_requests_get_json_400_and_server_survives(server: FakeLLMServer) -> None:
    url = f"{server.base_url}/chat/completions"
    bad = [
        requests.post(url, data=b"{not json", timeout=5),
        requests.post(url, data=b"\xff\xfe", timeout=5),
        requests.post(url, json=[1, 2], timeout=5),
        requests.post(url, json={"model": "m"}, timeout=5),
        requests.post(f"{server.url}/_control/rule", json={"contains": 1}, timeout=5),
        requests.post(f"{server.url}/_control/rule", json={"contains": "a", "reply": {"bogus": 1}}, timeout=5),
        requests.post(f"{server.url}/_control/latency", json={"latency": -1}, timeout=5),
        requests.post(f"{server.url}/_control/failures", json={"rate_429": 0.8, "rate_500": 0.8}, timeout=5),
    ]
    for response in bad:
        assert response.status_code == 400, response.text
        assert "message" in response.json()["error"]

    missing = requests.get(f"{server.url}/nope", timeout=5)
    assert missing.status_code == 404
    assert missing.json()["error"]["message"]
    assert requests.patch(url, timeout=5).json()["error"]["code"] == "501"

    raw = raw_exchange(server, b"GET /a b HTTP/1.1\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400")
    assert json.loads(raw.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "400"
    # A bare word is an HTTP/0.9 request, answered with just a body.
    assert json.loads(raw_exchange(server, b"GARBAGE\r\n\r\n"))["error"]["code"] == "400"

    # A chunked upload (no Content-Length) is still understood.
    chunked = requests.post(url, data=iter([b'{"model": "m", "messages":', b" []}"]), timeout=5)
    assert chunked.status_code == 200
    assert chat(requests, server).status_code == 200
    assert [r["_status"] for r in server.requests] == [400, 400, 400, 400, 200, 200]


def raw_exchange(server: FakeLLMServer, request: bytes) -> bytes:
    """Send raw bytes and read until the server closes, as it does after a malformed request."""
    chunks: list[bytes] = []
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request)
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_stop_cuts_keep_alive_connections() -> None:
    server = FakeLLMServer().start()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    connection.request("GET", "/v1/models")
    response = connection.getresponse()
    assert response.status == 200
    response.read()
    assert connection.sock is not None
    server.stop()
    # A pooled client connection must not keep talking to a stopped server.
    assert connection.sock.recv(1) == b""
    connection.close()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.base_url}/models", timeout=2)


def test_stop_wakes_delayed_requests(server: FakeLLMServer) -> None:
    server.set_default(Reply(delay=30))
    worker = threading.Thread(target=_ignore_errors, args=(server,))
    worker.start()
    deadline = time.monotonic() + 10
    while server.calls == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.stop()
    worker.join(15)  # well before the 30 s delay would have answered: stop woke the request
    assert not worker.is_alive()


def _ignore_errors(server: FakeLLMServer) -> None:
    # The server is stopped under this request on purpose; only the thread's end matters.
    with contextlib.suppress(requests.RequestException):
        chat(requests, server)


# --------------------------------------------------------------------------- control API


def test_control_endpoints_drive_the_server(server: FakeLLMServer) -> None:
    control = LLMServerControl(server.base_url)
    assert control.url == server.url

    control.add_rule("alpha", {"json": {"a": 1}})
    control.add_rule("beta", [{"status": 429, "headers": {"Retry-After": "2"}}, Reply(content="ok")], times=2)
    assert chat(requests, server, "alpha").json()["choices"][0]["message"]["content"] == '{"a": 1}'
    limited = chat(requests, server, "beta")
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "2")
    assert chat(requests, server, "beta").json()["choices"][0]["message"]["content"] == "ok"
    assert chat(requests, server, "beta").json()["choices"][0]["message"]["content"] == "{}"

    control.set_default(Reply(json={"d": True}))
    assert chat(requests, server).json()["choices"][0]["message"]["content"] == '{"d": true}'
    control.set_default(None)
    assert chat(requests, server).json()["choices"][0]["message"]["content"] == "{}"

    stats = control.stats()
    assert stats["calls"] == 6
    assert stats["by_status"] == {"200": 5, "429": 1}
    # The tokens billed: what the five answered calls' `usage` said.
    assert stats["usage"]["prompt_tokens"] == sum(r["_usage"]["prompt_tokens"] for r in server.requests
                                                  if r["_status"] == 200) > 0
    assert stats["requests"][0]["messages"][0]["content"] == "alpha"

    control.inject_failures(rate_500=1.0)
    assert chat(requests, server).status_code == 500
    control.inject_failures()
    assert chat(requests, server).status_code == 200

    assert control.set_latency(0.05, max_concurrent=3) == {"ok": True, "latency": 0.05, "max_concurrent": 3}
    assert (server.latency, server.max_concurrent) == (0.05, 3)
    # Leaving max_concurrent out keeps it; passing None lifts the limit.
    assert control.set_latency(0.0)["max_concurrent"] == 3
    assert control.set_latency(max_concurrent=None) == {"ok": True, "latency": 0.0, "max_concurrent": None}

    control.reset()
    assert control.stats() == {"calls": 0, "by_status": {}, "max_in_flight_seen": 0, "in_flight": 0, "requests": [],
                               "usage": {"prompt_tokens": 0, "completion_tokens": 0}, "batches": []}
    control.close()


def test_standalone_process_serves_litellm(litellm: ModuleType) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "testkit.llm_server", "--port", str(port), "--latency", "0.01", "--max-concurrent", "4"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert f"127.0.0.1:{port}/v1" in process.stdout.readline()
        control = LLMServerControl(f"http://127.0.0.1:{port}")
        control.wait_ready()
        control.add_rule("Label", {"json": {"from": "subprocess"}})

        response = complete(litellm, control.base_url)

        assert json.loads(content_of(response)) == {"from": "subprocess"}
        assert control.stats()["by_status"] == {"200": 1}
        assert control.set_latency()["max_concurrent"] == 4
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


# --------------------------------------------------------------------------- context limit, gazetteer


def test_a_prompt_over_the_context_limit_is_refused_as_openai_does(litellm: ModuleType) -> None:
    with FakeLLMServer(context_tokens=100, latency=30.0) as server:
        started = time.monotonic()
        raw = requests.post(f"{server.base_url}/chat/completions", timeout=40, json={
            "model": "m", "messages": [{"role": "user", "content": "word " * 100}]})
        assert time.monotonic() - started < 15  # refused long before its latency, as a provider's validation is
        assert raw.status_code == 400 and raw.json()["error"]["code"] == "context_length_exceeded"
        # 100 words and the trailing space (101), 3 tokens of framing for the message, 3 priming the reply.
        assert raw.json()["error"]["message"].startswith("This model's maximum context length is 100 tokens. "
                                                         "However, you requested 107 tokens.")
        server.latency = 0.0
        with pytest.raises(litellm.ContextWindowExceededError, match="maximum context length is 100 tokens"):
            complete(litellm, server, "東京" * 60)  # one token a CJK character: 120 of them do not fit
        assert json.loads(content_of(complete(litellm, server, "short", schema=None))) == {}
        # max_tokens is part of what a request asks of the window.
        with pytest.raises(litellm.ContextWindowExceededError):
            complete(litellm, server, "short", schema=None, max_tokens=90)
        assert server.stats()["by_status"] == {"400": 3, "200": 1}


def test_the_gazetteer_quotes_the_entities_a_request_shows() -> None:
    from testkit.gazetteer import Gazetteer

    gazetteer = Gazetteer("ner", [("Anna Berg", "Person"), ("Anna Bergman", "Person"), ("Oslo", "Location")],
                          cut_edges=True)
    shown = "Oslo. Anna Bergman met Anna Berg in 東京でOslo, not Oslofjord; then Anna Be"
    prompt = f"<text>\n{shown}\n</text>"
    answer = json.loads(gazetteer.answer(prompt, '{"sentiment": "Positive", "ner": []}') or "")
    assert answer == {"sentiment": "Positive", "ner": [
        {"text": "Oslo", "label": "Location"}, {"text": "Anna Bergman", "label": "Person"},
        {"text": "Anna Berg", "label": "Person"}, {"text": "Oslo", "label": "Location"},
        {"text": "Anna Be", "label": "Person"}]}
    assert gazetteer.answer("no text tags here", "{}") is None


def test_context_limit_and_gazetteer_through_the_control_endpoints() -> None:
    from testkit.gazetteer import Gazetteer

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "testkit.llm_server", "--port", str(port),
                                "--context-tokens", "50"], cwd=REPO_ROOT, stdout=subprocess.DEVNULL)
    control = LLMServerControl(f"http://127.0.0.1:{port}")
    try:
        control.wait_ready()
        control.set_gazetteer(Gazetteer("ner", [("Oslo", "Location")]))
        body = {"model": "m", "messages": [{"role": "user", "content": "<text>\nIn Oslo.\n</text>"}]}
        reply = requests.post(f"{control.base_url}/chat/completions", json=body, timeout=10).json()
        assert json.loads(reply["choices"][0]["message"]["content"]) == {"ner": [{"text": "Oslo", "label": "Location"}]}
        long = {"model": "m", "messages": [{"role": "user", "content": "x" * 400}]}
        assert requests.post(f"{control.base_url}/chat/completions", json=long, timeout=10).status_code == 400
        assert control.set_context(None) == {"ok": True, "context_tokens": None}
        assert requests.post(f"{control.base_url}/chat/completions", json=long, timeout=10).status_code == 200
        control.reset()  # the gazetteer is scripting, so reset clears it
        reply = requests.post(f"{control.base_url}/chat/completions", json=body, timeout=10).json()
        assert reply["choices"][0]["message"]["content"] == "{}"
    finally:
        control.close()
        process.terminate()
        process.wait(timeout=10)


# --------------------------------------------------------------------------- schema instances


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({}, None),
        ({"type": "string", "minLength": 2}, "xx"),
        ({"type": ["null", "integer"], "maximum": -3}, -3),
        ({"type": "integer", "exclusiveMinimum": 5}, 6),
        ({"type": "integer", "minimum": 1.5}, 2),
        ({"type": "number", "exclusiveMaximum": 0}, -0.5),
        ({"enum": [3, 4]}, 3),
        ({"const": {"k": 1}}, {"k": 1}),
        ({"oneOf": [{"type": "string", "enum": ["z"]}, {"type": "integer"}]}, "z"),
        ({"type": "array", "prefixItems": [{"type": "string"}, {"type": "boolean"}], "minItems": 2}, ["", False]),
        ({"properties": {"a": {"type": "null"}}}, {"a": None}),
        (
            {
                "definitions": {"A": {"type": "object", "properties": {"a": {"const": "k"}}, "required": ["a"]}},
                "allOf": [
                    {"$ref": "#/definitions/A"},
                    {"type": "object", "properties": {"b": {"type": "integer", "exclusiveMinimum": 5}}},
                ],
            },
            {"a": "k", "b": 6},
        ),
    ],
)
def test_schema_instance_cases(schema: dict[str, Any], expected: Any) -> None:
    value = schema_instance(schema)
    assert value == expected
    jsonschema.validate(value, schema)


def test_schema_instance_terminates_on_recursive_schema() -> None:
    schema = {
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "child": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                },
                "required": ["name", "child", "children"],
            }
        },
        "$ref": "#/$defs/Node",
    }
    value = schema_instance(schema)
    jsonschema.validate(value, schema)
    assert value["child"]["child"]["name"] == ""


def test_reply_from_dict_rejects_unknown_fields() -> None:
    assert Reply.from_dict({"status": 429, "headers": {"Retry-After": 1}}).headers == {"Retry-After": "1"}
    with pytest.raises(ValueError, match="unknown reply field"):
        Reply.from_dict({"stauts": 429})
    with pytest.raises(ValueError, match="invalid status"):
        Reply.from_dict({"status": 99})


# --------------------------------------------------------------------------- reply styles


def test_reply_styles_dress_the_answer_like_real_models(litellm: ModuleType, server: FakeLLMServer) -> None:
    answer = {"label": "yes", "items": ["a"]}
    server.set_default(Reply(json=answer, style="think+trailing_commas"))
    message = complete(litellm, server, schema=None).choices[0].message
    assert message.content.strip().endswith('"a",\n  ],\n}')
    assert '{"label": "?", "items": "?"}' in message.reasoning_content  # LiteLLM splits a leading <think> off
    server.set_default(Reply(json=answer, style="refusal"))
    response = complete(litellm, server, schema=None)
    assert response.choices[0].message.refusal == "I'm sorry, but I can't help with that request."
    server.set_default(Reply(json=answer, style="cut_off"))
    response = complete(litellm, server, schema=None)
    assert response.choices[0].finish_reason == "length" and response.choices[0].message.content == '{"label": "yes",'
    with pytest.raises(ValueError, match="unknown reply style"):
        Reply(style="sloppy")
    with pytest.raises(ValueError, match="at most one serialiser"):
        Reply(style="single_quotes+trailing_commas")
    bad = requests.post(f"{server.url}/_control/default", json={"style": "sloppy"}, timeout=5)
    assert bad.status_code == 400 and "unknown reply style" in bad.json()["error"]["message"]


def test_ollama_native_chat(litellm: ModuleType, server: FakeLLMServer) -> None:
    response = complete(litellm, server.url, model="ollama_chat/qwen3", schema=SCHEMA)
    assert json.loads(content_of(response)) == SCHEMA_DEFAULT
    [sent] = server.requests
    assert sent["_path"] == "/api/chat" and sent["format"] == SCHEMA
    server.set_default(Reply(json={"a": 1}, reasoning_content="thinking"))
    message = complete(litellm, server.url, model="ollama_chat/qwen3", schema=None).choices[0].message
    assert message.reasoning_content == "thinking" and json.loads(message.content) == {"a": 1}

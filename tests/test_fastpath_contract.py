"""The fast path against `litellm.acompletion`, over real HTTP to the test LLM server: for OpenAI, vLLM
(`hosted_vllm/`), Ollama (`ollama_chat/`) and a provider that falls back, the requests on the wire and the
parsed replies (content, finish_reason, refusal, reasoning, logprobs, usage, cost) are identical, and each
failure maps to the same type with the same retry-after, context window and refused parameter."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from llm_backend.errors import LLMError
from llm_backend.models.client import Completion, LiteLLMClient, LLMRequest
from llm_backend.models.fastpath import FAST, LITELLM, FastPath
from testkit.llm_server import FakeLLMServer, Reply

SCHEMA = {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": {
    "type": "object", "properties": {"label": {"type": "string", "enum": ["yes", "no"]}},
    "required": ["label"], "additionalProperties": False}}}
# (model, whether the fast path takes it): OpenAI with a price in LiteLLM's map, one without, vLLM, Ollama,
# and LM Studio, which LiteLLM reaches as an OpenAI-compatible server but the fast path leaves to acompletion.
MODELS = [("openai/gpt-4o-mini", True), ("openai/test-model", True), ("hosted_vllm/test-model", True),
          ("ollama_chat/test-model", True), ("lm_studio/test-model", False)]
PIXEL = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA"
         "60e6kgAAAABJRU5ErkJggg==")
LOGPROBS = [{"token": "yes", "logprob": -0.01, "bytes": [121, 101, 115], "top_logprobs": []}]
REPLIES = {
    "json": Reply(json={"label": "yes"}),
    "refusal": Reply(content="", refusal="I can't help with that."),
    "reasoning": Reply(json={"label": "no"}, reasoning_content="The text says no."),
    "logprobs": Reply(json={"label": "yes"}, logprobs=LOGPROBS),
    "cut off": Reply(content='{"label": "y', finish_reason="length"),
    "image": Reply(json={"label": "no"}),
    "usage": Reply(json={"label": "yes"}, usage={"prompt_tokens": 1234, "completion_tokens": 56, "total_tokens": 1290}),
    # `n` answers in one call (the samples confidence signal): the other choices are read too
    "samples": Reply(json={"label": "yes"},
                     more_choices=[{"content": '{"label": "no"}'}, {"content": '{"label": "yes"}'}]),
}
FAILURES = {
    "429 with Retry-After": Reply(status=429, headers={"Retry-After": "3"}),
    "503": Reply(status=503, error_message="overloaded"),
    "401": Reply(status=401, error_message="Incorrect API key provided"),
    "context window": Reply(status=400, error_message="This model's maximum context length is 4096 tokens. However, "
                                                      "you requested 5000 tokens. Please reduce the length."),
    "output limit": Reply(status=400, error_message="Could not finish the message because max_tokens or model output "
                                                     "limit was reached. Please try again with higher max_tokens."),
    "refused parameter": Reply(status=400, error_message="Unsupported parameter: 'temperature' is not supported "
                                                         "with this model."),
}


def _base(llm: FakeLLMServer, model: str) -> str:
    return llm.url if model.startswith("ollama_chat/") else llm.base_url


def _client(fast: bool) -> LiteLLMClient:
    return LiteLLMClient(api_key="sk-test", timeout=10, max_retries=0, fast=FastPath(enabled=fast))


def _request(llm: FakeLLMServer, model: str, case: str) -> LLMRequest:
    question: Any = f"Is this {case}? Reply yes or no."
    if case == "image":
        question = [{"type": "text", "text": question}, {"type": "image_url", "image_url": {"url": PIXEL}}]
    return LLMRequest(model, ({"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": question}),
                      response_format=SCHEMA, max_tokens=64, api_base=_base(llm, model), logprobs=case == "logprobs",
                      n=3 if case == "samples" else 1)


def _on_the_wire(llm: FakeLLMServer) -> list[dict[str, Any]]:
    """Each request the server received: its JSON body, path and Authorization header."""
    kept = ("_path", "_authorization")
    return [{key: value for key, value in record.items() if not key.startswith("_") or key in kept}
            for record in llm.requests]


def _parsed(completion: Completion) -> dict[str, Any]:
    return {"content": completion.content, "finish_reason": completion.finish_reason, "refusal": completion.refusal,
            "reasoning": completion.reasoning, "logprobs": completion.logprobs, "model": completion.model,
            "prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens,
            "cost": completion.cost, "attempts": completion.attempts, "alternatives": completion.alternatives}


def _run(llm: FakeLLMServer, model: str, case: str, reply: Reply, fast: bool) -> tuple[list[dict[str, Any]], Any]:
    llm.reset()
    llm.add_rule(f"Is this {case}?", reply)
    client = _client(fast)
    request = _request(llm, model, case)
    assert client.path_of(request).path == (FAST if fast and dict(MODELS)[model] else LITELLM)
    try:
        outcome: Any = _parsed(client.complete(request))
    except LLMError as exc:
        outcome = _failure(exc)
    return _on_the_wire(llm), outcome


def _failure(exc: LLMError) -> dict[str, Any]:
    return {"type": type(exc).__name__, "retry_after": getattr(exc, "retry_after", None),
            "window": getattr(exc, "window", None), "calls": exc.usage.calls, "message": exc.message}


@pytest.mark.parametrize("model", [model for model, _ in MODELS])
@pytest.mark.parametrize("case", list(REPLIES))
def test_replies_are_identical_on_both_paths(llm: FakeLLMServer, model: str, case: str) -> None:
    sent_by_litellm, read_by_litellm = _run(llm, model, case, REPLIES[case], fast=False)
    sent_fast, read_fast = _run(llm, model, case, REPLIES[case], fast=True)
    assert len(sent_fast) == 1 and sent_fast == sent_by_litellm
    assert read_fast == read_by_litellm


def test_the_replies_carry_what_was_scripted(llm: FakeLLMServer) -> None:
    """The comparison above compares something: the fast path reads each field the server sent."""
    read = {case: _run(llm, "openai/gpt-4o-mini", case, reply, fast=True)[1] for case, reply in REPLIES.items()}
    assert read["json"]["content"] == '{"label": "yes"}' and read["json"]["finish_reason"] == "stop"
    assert read["refusal"]["refusal"] == "I can't help with that."
    assert read["reasoning"]["reasoning"] == "The text says no."
    assert read["logprobs"]["logprobs"] == [{"token": "yes", "logprob": -0.01}]
    assert read["cut off"]["finish_reason"] == "length"
    assert (read["usage"]["prompt_tokens"], read["usage"]["completion_tokens"]) == (1234, 56)
    assert read["samples"]["alternatives"] == ('{"label": "no"}', '{"label": "yes"}')
    # gpt-4o-mini's price in LiteLLM's map, to the cent and below
    assert read["usage"]["cost"] == pytest.approx(1234 * 0.15e-6 + 56 * 0.6e-6, rel=1e-12)


@pytest.mark.parametrize("model", [model for model, _ in MODELS])
@pytest.mark.parametrize("case", list(FAILURES))
def test_failures_map_to_the_same_errors(llm: FakeLLMServer, model: str, case: str) -> None:
    sent_by_litellm, failed_by_litellm = _run(llm, model, case, FAILURES[case], fast=False)
    sent_fast, failed_fast = _run(llm, model, case, FAILURES[case], fast=True)
    assert sent_fast == sent_by_litellm
    assert failed_fast == failed_by_litellm


def test_failure_types_are_the_ones_the_engine_acts_on(llm: FakeLLMServer) -> None:
    failed = {case: _run(llm, "hosted_vllm/test-model", case, reply, fast=True)[1] for case, reply in FAILURES.items()}
    assert failed["429 with Retry-After"]["type"] == "TransientLLMError"
    assert failed["429 with Retry-After"]["retry_after"] == 3.0
    assert failed["503"]["type"] == "TransientLLMError"
    assert failed["401"]["type"] == "PermanentLLMError"
    assert (failed["context window"]["type"], failed["context window"]["window"]) == ("ContextWindowError", 4096)
    # dropped and asked again without it (this server refuses every request): two calls
    assert (failed["refused parameter"]["type"], failed["refused parameter"]["calls"]) == ("PermanentLLMError", 2)


def test_a_refused_parameter_is_dropped_alike(llm: FakeLLMServer) -> None:
    sent = {}
    for fast in (False, True):
        llm.reset()
        llm.add_rule("Is this refused?", FAILURES["refused parameter"], times=1)
        client = _client(fast)
        completion = client.complete(_request(llm, "openai/test-model", "refused"))
        sent[fast] = _on_the_wire(llm)
        assert completion.attempts == 2 and "temperature" not in sent[fast][1]
    assert sent[True] == sent[False]


def test_a_server_that_is_not_there_is_named_alike() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the calls: nothing listens there
    messages = {}
    for fast in (False, True):
        request = LLMRequest("hosted_vllm/test-model", ({"role": "user", "content": "hi"},),
                             api_base=f"http://127.0.0.1:{port}/v1")
        with pytest.raises(LLMError) as caught:
            _client(fast).complete(request)
        messages[fast] = (type(caught.value).__name__, caught.value.message)
    assert messages[True] == messages[False]
    assert messages[True][0] == "LLMConnectionError" and "connection refused" in messages[True][1]


@pytest.mark.parametrize(("model", "why"), [
    ("bedrock/anthropic.claude-3-haiku-20240307-v1:0", "bedrock"),
    ("vertex_ai/gemini-1.5-pro", "vertex_ai"),
    ("azure/my-deployment", "azure"),
    ("anthropic/claude-3-5-haiku-latest", "anthropic"),
    ("no-provider-model-xyz", "mapping raised"),
])
def test_providers_the_fast_path_leaves_to_litellm(model: str, why: str) -> None:
    choice = _client(True).path_of(LLMRequest(model, ({"role": "user", "content": "hi"},)))
    assert choice.path == LITELLM and why in choice.why and choice.route is None


def test_switched_off_or_with_parameters_it_does_not_map(llm: FakeLLMServer) -> None:
    request = _request(llm, "openai/test-model", "json")
    assert _client(False).path_of(request).path == LITELLM
    extra = LiteLLMClient(api_key="sk-test", extra={"top_p": 0.5})
    assert extra.path_of(request).path == LITELLM and "top_p" in extra.path_of(request).why


def test_doctor_names_the_path(llm: FakeLLMServer, make_settings: Any) -> None:
    from llm_backend.offline.doctor import check_llm

    for model, path in (("openai/test-model", "fast path"), ("lm_studio/test-model", "LiteLLM call")):
        checks = {check.name: check for check in check_llm(make_settings(llm_model=model))}
        assert checks["model calls"].status == "pass" and checks["model calls"].detail.startswith(path)
    off = {check.name: check for check in check_llm(make_settings(llm_fast_path="off"))}
    assert off["model calls"].detail.startswith("LiteLLM call: the fast path is off")


def test_openais_output_limit_refusal_reads_as_a_reply_cut_off(llm: FakeLLMServer) -> None:
    """OpenAI's 400 for an output budget too small for one token is, on both paths, the empty reply cut off at the
    limit (so the exchange asks again with more room); other providers report the 400 as it is."""
    read = _run(llm, "openai/test-model", "output limit", FAILURES["output limit"], fast=True)[1]
    assert (read["content"], read["finish_reason"], read["completion_tokens"]) == ("", "length", 0)
    assert read["prompt_tokens"] > 0
    assert _run(llm, "hosted_vllm/test-model", "output limit", FAILURES["output limit"], fast=True)[1]["type"] == \
        "PermanentLLMError"

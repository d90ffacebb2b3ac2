"""Transient failures are retried for as long as the request's deadline allows (a `/predict`), or
LLM_MAX_RETRIES times where there is no deadline (offline commands). Real HTTP throughout."""

from __future__ import annotations

import collections
import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from llm_backend.errors import TransientLLMError
from llm_backend.models.client import LiteLLMClient, LLMRequest
from llm_backend.models.loader import load_litellm
from testkit.llm_server import FakeLLMServer, Reply
from tests.conftest import CHOICES_CONFIG

LABELS = ("Positive", "Negative", "Neutral")


def _tasks(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "data": {"text": f"Review number {i}."}} for i in range(n)]


def test_sixty_tasks_with_30pc_429s_and_10pc_500s_all_answer_in_the_first_predict(
        make_client: Callable[..., Any], llm: FakeLLMServer) -> None:
    for i in range(60):
        llm.add_rule(f"Review number {i}.", Reply(json={"sentiment": LABELS[i % 3]}))
    llm.inject_failures(rate_429=0.3, rate_500=0.1, retry_after=1, seed=15)
    # Retries are the engine's, the same in a gunicorn worker: an app in this process (no second LiteLLM import).
    # LLM_MAX_RETRIES: the default; it no longer bounds a /predict (the deadline does: a task past it has no result).
    client = make_client(llm_max_retries=4, llm_retry_max_wait=30)
    body = {"label_config": CHOICES_CONFIG, "project": "15.2", "tasks": _tasks(60)}
    started = time.monotonic()
    first = client.post("/predict", json=body).get_json()["results"]
    seconds = time.monotonic() - started
    assert [r.get("result", [{}])[0].get("value") for r in first] == [
        {"choices": [LABELS[i % 3]]} for i in range(60)]
    assert llm.count(429) > 0 and llm.count(500) > 0 and llm.count(200) == 60
    attempts = collections.Counter(re.search(r"Review number (\d+)\.", r["messages"][-1]["content"]).group(1)
                                   for r in llm.requests)
    print(f"\n60 tasks, 30% 429 + 10% 500: {seconds:.1f} s, {llm.calls} calls "
          f"({llm.count(429)} x 429, {llm.count(500)} x 500), most attempts for one task: {max(attempts.values())}")

    calls = llm.calls
    second = client.post("/predict", json=body).get_json()["results"]
    assert llm.calls == calls  # every answer came from the cache
    assert second == first


@pytest.fixture
def always_failing(llm: FakeLLMServer) -> FakeLLMServer:
    llm.set_default(Reply(status=503, error_message="overloaded"))
    return llm


def _request(llm: FakeLLMServer) -> LLMRequest:
    return LLMRequest("openai/test-model", ({"role": "user", "content": "hello"},), api_base=llm.base_url)


def test_without_a_deadline_llm_max_retries_is_the_cap(always_failing: FakeLLMServer) -> None:
    client = LiteLLMClient(api_key="sk-test", timeout=5, max_retries=2, retry_max_wait=0.05)
    with pytest.raises(TransientLLMError) as failure:
        client.complete(_request(always_failing))
    assert always_failing.calls == 3
    assert failure.value.message.endswith("(gave up after 3 attempts: LLM_MAX_RETRIES=2)")
    assert failure.value.usage.calls == 3 and failure.value.usage.retries == 2


def test_with_a_deadline_retries_go_on_until_it_and_stop_before_it(always_failing: FakeLLMServer) -> None:
    client = LiteLLMClient(api_key="sk-test", timeout=5, max_retries=2, retry_max_wait=0.05)
    # One answer that takes 1 s: the client expects each attempt to take as long as its typical call, and starts none
    # that could not end before the deadline. Failing attempts take milliseconds, so the last error comes about a
    # second before the deadline, which a loaded machine does not use up (against 0.25 s with no typical call).
    load_litellm()  # imported before the call is timed (a `serve` worker's warm-up does it)
    always_failing.add_rule("a slow success", Reply(json={"ok": True}, delay=1), times=1)
    client.complete(LLMRequest("openai/test-model", ({"role": "user", "content": "a slow success"},),
                               api_base=always_failing.base_url))
    deadline = time.time() + 3  # deadlines are on the wall clock (the job ledger shares them between hosts)
    with pytest.raises(TransientLLMError) as failure:
        client.complete(_request(always_failing), deadline=deadline)
    assert time.time() < deadline  # the caller gets the error in time to report it
    failed = always_failing.calls - 1
    assert failed > 3  # LLM_MAX_RETRIES does not bound a request that has a deadline
    assert failure.value.message.endswith(f"(gave up after {failed} attempts: the request's deadline)")


def test_loading_litellm_is_not_taken_for_how_long_a_call_takes(always_failing: FakeLLMServer,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # A process's first call imports LiteLLM (seconds). Counted as the typical call, it made a deadline-bound
    # request stop retrying that long before its deadline: here it would give up after one attempt.
    import llm_backend.models.client as client_module

    loaded: list[bool] = []

    def slow_first_load() -> Any:
        if not loaded:
            loaded.append(True)
            time.sleep(2)  # as long as a first `import litellm` on a loaded machine
        return load_litellm()

    monkeypatch.setattr(client_module, "load_litellm", slow_first_load)
    client = LiteLLMClient(api_key="sk-test", timeout=5, max_retries=2, retry_max_wait=0.05)
    always_failing.add_rule("the first call", Reply(json={"ok": True}), times=1)
    client.complete(LLMRequest("openai/test-model", ({"role": "user", "content": "the first call"},),
                               api_base=always_failing.base_url))
    with pytest.raises(TransientLLMError):
        client.complete(_request(always_failing), deadline=time.time() + 1.5)
    assert always_failing.calls - 1 > 3  # retried until near the deadline, not given up at once


def test_past_the_deadline_only_llm_max_retries_go_on(llm: FakeLLMServer) -> None:
    # A task the request stopped waiting for goes on in the background as far as an offline one would.
    llm.set_default(Reply(status=429, headers={"Retry-After": "1"}, error_message="slow down"))
    client = LiteLLMClient(api_key="sk-test", timeout=5, max_retries=1, retry_max_wait=30)
    started = time.time()
    with pytest.raises(TransientLLMError) as failure:
        client.complete(_request(llm), deadline=started + 0.5)
    assert llm.calls == 2 and time.time() - started >= 1.0
    assert failure.value.message.endswith("(gave up after 2 attempts: LLM_MAX_RETRIES=1, past the request's deadline)")
